#!/usr/bin/env python3
"""The soak (issue 18): `presence serve` under mixed load, killed with SIGKILL at random moments and
started again, then checked against what its clients were told.

Run it with the .venv Python (scripts/setup.sh --python installs `websockets`):
    swift build -c release --product presence && .venv/bin/python tools/soak.py --duration 1800
    .venv/bin/python tools/soak.py --bin .build/debug/presence --duration 120 --kill-every 8-20   # CI's

The load, all against one `presence serve` on 127.0.0.1 (its own data folder and secret):
- gateways (--gateways) POST batches of 1-20 connect/disconnect events for --users users, each event
  with an id; a device's connection id is reused after it disconnects, now and then a fresh one. A
  batch that is not acknowledged (the server was killed, refused connection, 5xx) is sent again, the
  same bytes, until it is: the event ids make the retry a repeat if the first try was written.
- chat clients (--clients): each holds a WebSocket with its own conversation open (itself and three of
  the gateways' users, so every peer it watches changes only through the gateways), follows the
  presence pushes into a view of its peers, and sends a message every 0.2-1 s with a client id,
  sending it again after a reconnect until it is acknowledged. A closed socket is reopened with the
  client's presence cursor.
- a reader GETs conversation snapshots and inboxes over HTTP.
- a killer SIGKILLs the server every --kill-every MIN-MAX seconds and starts it again on the same port
  and data folder.

At the end the load stops (unacknowledged writes are still retried until acknowledged, bounded) and:
1. every client's view of each peer equals what the live server answers for that peer;
2. the clients close their sockets; the live state of every user equals `presence state
   --no-checkpoint` (a fresh fold of the log) after a SIGTERM, which must exit 0;
3. every client's view equals that fold too;
4. every acknowledged event is in the log (`presence dump --offsets`) at the offset its
   acknowledgement gave, and every acknowledged message is at its seq (`presence messages`), with the
   seqs of each conversation running 1, 2, 3, ...;
5. `presence audit` exits 0.

Prints a progress line every 10 s on standard error, then one line a figure and a "passed: ..." line a
check; exits 1 if any check failed (the data folder and server.log are then kept and named).
"""
import argparse
import asyncio
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from loadkit import FAILED, Server, check, mint, progress

warnings.filterwarnings("ignore", category=DeprecationWarning)


class Unexpected(Exception):
    """An answer no retry can fix (a 400, a 403): the soak found a defect."""


def request(port, method, path, token, body=None, timeout=15):
    """One HTTP request on a fresh connection: (status, body bytes). Raises OSError and HTTPException."""
    link = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": "Bearer " + token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        link.request(method, path, body=body, headers=headers)
        reply = link.getresponse()
        return reply.status, reply.read()
    finally:
        link.close()


def until_acknowledged(port, method, path, token, body, give_up, ok=(200, 201)):
    """Sends the same request until it is answered with a status in `ok`: (the body's JSON, how many tries).
    A refused or broken connection, a timeout or a 5xx (the server killed or restarting) is retried after
    a pause; anything else raises Unexpected; past `give_up()` (a time), TimeoutError."""
    tries = 0
    while True:
        tries += 1
        try:
            status, answer = request(port, method, path, token, body)
            if status in ok:
                return json.loads(answer), tries
            if status < 500:
                raise Unexpected(f"{method} {path}: {status} {answer[:300]!r}")
        except (OSError, http.client.HTTPException):
            pass
        if time.time() > give_up():
            raise TimeoutError(f"{method} {path} not acknowledged in time")
        time.sleep(random.uniform(0.05, 0.2))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.events = 0
        self.batches = 0
        self.retried = 0
        self.repeats = 0
        self.resent = 0
        self.messages = 0
        self.reconnects = 0
        self.reads = 0
        self.read_errors = []
        self.kills = 0
        self.restarts = []


class Gateway(threading.Thread):
    """One gateway: batches of its devices' connects and disconnects, each sent until acknowledged."""

    def __init__(self, index, port, secret, users, seed, stats, stopping, give_up):
        super().__init__(daemon=True)
        self.gateway = f"gw-{index}"
        self.port, self.users, self.stats = port, users, stats
        self.token = mint(secret, self.gateway, "gateway")
        self.random = random.Random(seed)
        self.stopping, self.give_up = stopping, give_up
        self.open = {}        # conn -> user, the sessions this gateway has open
        self.fresh = 0
        self.sequence = 0
        self.last_ts = 0
        self.acknowledged = {}  # event id -> offset its acknowledgement gave
        self.error = None

    def device(self, user):
        """A connection id for a new session of `user`: one of its two devices (reused), or now and
        then a fresh one (a gateway that names sockets, not devices)."""
        if self.random.random() < 0.2:
            self.fresh += 1
            return f"{self.gateway}-{user}-s{self.fresh}"
        return f"{self.gateway}-{user}-d{self.random.randint(0, 1)}"

    def batch(self):
        lines, ids = [], []
        for _ in range(self.random.randint(1, 20)):
            user = self.random.choice(self.users)
            mine = [conn for conn, owner in self.open.items() if owner == user]
            if mine and self.random.random() < 0.5:
                conn, kind = self.random.choice(mine), "disconnect"
                del self.open[conn]
            else:
                conn = self.device(user)
                if conn in self.open:
                    continue
                kind = "connect"
                self.open[conn] = user
            self.last_ts = max(int(time.time() * 1000), self.last_ts + 1)
            self.sequence += 1
            event_id = f"{self.gateway}-e{self.sequence}"
            lines.append(json.dumps({"type": kind, "user": user, "conn": conn, "gateway": self.gateway,
                                     "ts": self.last_ts, "id": event_id}, separators=(",", ":")))
            ids.append(event_id)
        return "".join(line + "\n" for line in lines), ids

    def run(self):
        try:
            while not self.stopping.is_set():
                body, ids = self.batch()
                if not ids:
                    continue
                answer, tries = until_acknowledged(self.port, "POST", "/v1/events", self.token, body.encode(),
                                            lambda: self.give_up[0])
                # Written lines take first_offset, first_offset + 1, ... in line order; a repeat names its own.
                repeats = {entry["line"]: entry["offset"] for entry in answer.get("repeats", [])}
                offset = answer.get("first_offset")
                for line_number, event_id in enumerate(ids, start=1):
                    if line_number in repeats:
                        self.acknowledged[event_id] = repeats[line_number]
                    else:
                        self.acknowledged[event_id] = offset
                        offset += 1
                with self.stats.lock:
                    self.stats.events += len(ids)
                    self.stats.batches += 1
                    self.stats.retried += tries > 1
                    self.stats.repeats += len(repeats)
                time.sleep(self.random.uniform(0.02, 0.1))
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            self.error = error


class ChatClient:
    """A user with its conversation open over a WebSocket: a view of its peers from the pushes, and
    messages sent with client ids until acknowledged."""

    def __init__(self, user, conversation, peers, token, seed, stats):
        self.user, self.conversation, self.peers, self.token = user, conversation, peers, token
        self.random = random.Random(seed)
        self.stats = stats
        self.view = {}          # peer -> {"online", "last_seen"}
        self.cursor = None
        self.pending = None     # (client_id, content) sent and not acknowledged yet
        self.counter = 0
        self.acknowledged = {}  # client_id -> (seq, content)
        self.problems = []
        self.sending = True
        self.closing = False

    def apply(self, frame, floor):
        kind = frame.get("type")
        if kind == "opened":
            if frame.get("resumed") is not True:
                self.view = {user: {"online": state["online"], "last_seen": state.get("last_seen")}
                             for user, state in frame["presence"].items() if user in self.peers}
                self.cursor = frame["presence_cursor"]
            else:
                self.cursor = max(self.cursor or 0, frame["presence_cursor"])
        elif kind == "presence":
            if floor is not None and frame["offset"] < floor:
                self.problems.append(f"push at offset {frame['offset']} before the cursor {floor} it opened with")
            if frame["user"] in self.peers:
                before = self.view.get(frame["user"], {})
                self.view[frame["user"]] = {"online": frame["online"],
                                            "last_seen": frame.get("last_seen", before.get("last_seen"))}
            self.cursor = max(self.cursor or 0, frame["offset"] + 1)
        elif kind == "sent":
            client_id = frame.get("client_id")
            if self.pending and client_id == self.pending[0]:
                first = self.acknowledged.get(client_id)
                if first and first[0] != frame["seq"]:
                    self.problems.append(f"client id {client_id} acknowledged with seq {first[0]} and {frame['seq']}")
                self.acknowledged[client_id] = (frame["seq"], self.pending[1])
                self.pending = None
                with self.stats.lock:
                    self.stats.messages += 1
        elif kind == "error":
            self.problems.append(f"error frame: {frame}")

    async def session(self, url):
        """One socket: open the conversation (with the cursor), resend what is pending, then read and send."""
        async with connect(url, additional_headers={"Authorization": "Bearer " + self.token},
                           open_timeout=15, close_timeout=5, ping_interval=None, max_queue=None) as ws:
            ready = json.loads(await asyncio.wait_for(ws.recv(), 15))
            if ready.get("type") != "ready":
                raise RuntimeError(f"first frame is not ready: {ready}")
            request = {"op": "open", "conversation": self.conversation}
            if self.cursor is not None:
                request["presence_cursor"] = self.cursor
            floor = self.cursor
            await ws.send(json.dumps(request))
            opened = False
            next_send = time.time()
            while not self.closing:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.1))
                    self.apply(frame, floor)
                    if frame.get("type") == "opened":
                        opened = True
                        if self.pending:
                            with self.stats.lock:
                                self.stats.resent += 1
                            await ws.send(self.send_frame())
                except TimeoutError:
                    pass
                if opened and self.pending is None and self.sending and time.time() >= next_send:
                    self.counter += 1
                    self.pending = (f"{self.user}-m{self.counter}", f"{self.user} message {self.counter}")
                    await ws.send(self.send_frame())
                    next_send = time.time() + self.random.uniform(0.2, 1.0)
            await ws.close()

    def send_frame(self):
        client_id, content = self.pending
        return json.dumps({"op": "send", "conversation": self.conversation, "content": content, "client_id": client_id})

    async def run(self, url, give_up):
        first = True
        while not self.closing:
            if not first:
                with self.stats.lock:
                    self.stats.reconnects += 1
            first = False
            try:
                await self.session(url)
            except (OSError, ConnectionClosed, WebSocketException, TimeoutError, asyncio.TimeoutError):
                pass  # the server was killed or is starting: open again, with the cursor
            except Exception as error:  # noqa: BLE001
                self.problems.append(f"socket: {error!r}")
            if time.time() > give_up[0]:
                self.problems.append("could not reconnect before the end")
                return
            if not self.closing:
                await asyncio.sleep(self.random.uniform(0.1, 0.3))


def reader(port, secret, conversations, stats, stopping):
    """Snapshots and inboxes over HTTP while everything else goes on; counts what is not a 200."""
    rng = random.Random(7)
    while not stopping.is_set():
        user, conversation = rng.choice(conversations)
        path = f"/v1/conversations/{conversation}" if rng.random() < 0.7 else "/v1/me/conversations"
        try:
            status, answer = request(port, "GET", path, mint(secret, user))
            with stats.lock:
                stats.reads += 1
                if status != 200:
                    stats.read_errors.append(f"GET {path}: {status} {answer[:200]!r}")
        except (OSError, http.client.HTTPException):
            pass  # the server is down (killed) or starting
        time.sleep(0.05)


def presence_cli(binary, *arguments):
    result = subprocess.run([binary, *arguments], capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


async def soak(args):
    low, high = float(args.kill_every.split("-")[0]), float(args.kill_every.split("-")[-1])
    server = Server(args.bin, "soak-", log=True)
    stats = Stats()
    rng = random.Random(args.seed)
    kept = False
    try:
        server.start(args.timeout)
        port = server.port
        users = [f"u{i}" for i in range(args.users)]
        # Setup: each client's conversation with three gateway users.
        clients = []
        for index in range(args.clients):
            user = f"c{index}"
            peers = rng.sample(users, 3)
            answer, _ = until_acknowledged(port, "POST", "/v1/conversations", mint(server.secret, user),
                                        json.dumps({"members": [user, *peers]}).encode(), lambda: time.time() + 60)
            clients.append(ChatClient(user, answer["id"], set(peers), mint(server.secret, user), rng.random(), stats))
        progress(f"soak: server on port {port}, data {server.data}; {args.gateways} gateways, {args.users} users, "
                 f"{len(clients)} chat clients; {args.duration:.0f} s, a SIGKILL every {args.kill_every} s")

        began = time.time()
        ends = began + args.duration
        give_up = [ends + args.timeout]  # the writers' retries end here (moved on once the load stops)
        stopping = threading.Event()
        gateways = [Gateway(i, port, server.secret, users, rng.random(), stats, stopping, give_up)
                    for i in range(args.gateways)]
        for gateway in gateways:
            gateway.start()
        reading = threading.Thread(target=reader, args=(port, server.secret, [(c.user, c.conversation) for c in clients],
                                                         stats, stopping), daemon=True)
        reading.start()
        url = f"ws://127.0.0.1:{port}/v1/ws"
        tasks = [asyncio.create_task(client.run(url, give_up)) for client in clients]

        async def killer():
            while True:
                pause = rng.uniform(low, high)
                if time.time() + pause > ends - 2:
                    return
                await asyncio.sleep(pause)
                server.process.kill()
                await asyncio.to_thread(server.process.wait)
                started = time.perf_counter()
                await asyncio.to_thread(server.start, args.timeout)
                with stats.lock:
                    stats.kills += 1
                    stats.restarts.append(time.perf_counter() - started)

        async def report():
            while True:
                await asyncio.sleep(10)
                with stats.lock:
                    progress(f"soak: {time.time() - began:.0f} s, {stats.kills} kills, {stats.events} events and "
                             f"{stats.messages} messages acknowledged, {stats.reconnects} reconnects, {stats.reads} reads")

        killing = asyncio.create_task(killer())
        reporting = asyncio.create_task(report())
        await asyncio.sleep(max(0.0, ends - time.time()))
        await killing

        # The load stops: gateways finish their batch, clients their message (retried until acknowledged).
        stopping.set()
        give_up[0] = time.time() + args.timeout
        for client in clients:
            client.sending = False
        for gateway in gateways:
            await asyncio.to_thread(gateway.join, args.timeout + 10)
        deadline = time.time() + args.timeout
        while any(c.pending for c in clients) and time.time() < deadline:
            await asyncio.sleep(0.1)
        reporting.cancel()
        elapsed = time.time() - began
        for gateway in gateways:
            check(gateway.error is None, f"{gateway.gateway}: every batch acknowledged", repr(gateway.error))
        check(not any(c.pending for c in clients), "every client's last message acknowledged",
              ", ".join(c.user for c in clients if c.pending))

        # 1. Each client's view of its peers settles on what the live server answers it (bounded).
        def live(user, token):
            status, answer = request(port, "GET", f"/v1/users/{user}/presence", token)
            if status != 200:
                raise Unexpected(f"GET /v1/users/{user}/presence: {status} {answer[:200]!r}")
            state = json.loads(answer)
            return {"online": state["online"], "last_seen": state.get("last_seen"), "connections": state.get("connections")}

        def differences(user, view, truth):
            """Where `view` (a client's peers) differs from `truth`: online, and last seen when offline (a push
            saying online carries no last seen)."""
            wrong = []
            for peer, real in sorted(truth.items()):
                seen = view.get(peer)
                if seen is None or seen["online"] != real["online"] or (not real["online"] and seen["last_seen"] != real["last_seen"]):
                    wrong.append(f"{user} sees {peer} as {seen}, the truth is {real}")
            return wrong

        settle_deadline = time.time() + 30
        while True:
            truth = {c.user: {peer: live(peer, c.token) for peer in c.peers} for c in clients}
            wrong = [line for c in clients for line in differences(c.user, c.view, truth[c.user])]
            if not wrong or time.time() > settle_deadline:
                break
            await asyncio.sleep(0.5)
        check(not wrong, f"every client's view of its peers equals the live server's answer ({len(clients)} clients, "
                         f"{sum(len(c.peers) for c in clients)} peers)", "; ".join(wrong[:5]))
        views = {c.user: dict(c.view) for c in clients}

        # 2. The clients close; the live state of every user equals a fresh fold after SIGTERM.
        for client in clients:
            client.closing = True
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), args.timeout)
        every_user = users + [c.user for c in clients]
        tokens = {user: mint(server.secret, user) for user in every_user}
        offline_deadline = time.time() + 30
        while True:
            state = {user: live(user, tokens[user]) for user in every_user}
            still = [c.user for c in clients if state[c.user]["online"]]
            if not still or time.time() > offline_deadline:
                break
            await asyncio.sleep(0.2)
        check(not still, "every chat client is offline once its socket closed", ", ".join(still[:5]))
        rss = server.rss()
        status = await asyncio.to_thread(server.stop, signal.SIGTERM, args.timeout)
        check(status == 0, "the server exits 0 on SIGTERM at the end", f"status {status}")

        code, out, err = presence_cli(args.bin, "state", "--data", server.data, "--format", "json", "--no-checkpoint")
        folded = {}
        for line in out.splitlines():
            row = json.loads(line)
            folded[row["user"]] = {"online": row["online"], "last_seen": row.get("last_seen"), "connections": row.get("connections")}
        never = {"online": False, "last_seen": None, "connections": 0}
        unequal = [f"{user}: live {state[user]}, fold {folded.get(user, never)}" for user in every_user
                   if state[user] != folded.get(user, never)]
        check(code == 0 and not unequal, f"the live state of all {len(every_user)} users equals a fresh fold of the log",
              err.strip()[:300] + "; ".join(unequal[:5]))

        # 3. The clients' views equal the fold.
        wrong = [line for c in clients
                 for line in differences(c.user, views[c.user], {peer: folded.get(peer, never) for peer in c.peers})]
        check(not wrong, "every client's view of its peers after its last push equals `presence state`", "; ".join(wrong[:5]))

        # 4. Every acknowledged write is where its acknowledgement said.
        code, out, err = presence_cli(args.bin, "dump", "--data", server.data, "--offsets")
        logged = {}
        for line in out.splitlines():
            row = json.loads(line)
            if "id" in row:
                logged[(row["gateway"], row["id"])] = row.get("offset")
        acknowledged = {(g.gateway, event_id): offset for g in gateways for event_id, offset in g.acknowledged.items()}
        missing = [key for key in acknowledged if key not in logged]
        moved = [f"{key}: acknowledged at {offset}, logged at {logged[key]}" for key, offset in acknowledged.items()
                 if key in logged and logged[key] != offset]
        check(code == 0 and not missing and not moved,
              f"every one of {len(acknowledged)} acknowledged events is in the log at the offset it was acknowledged with",
              f"{len(missing)} missing {missing[:5]}, {len(moved)} elsewhere {moved[:5]} {err.strip()[:300]}")
        lost, gaps, total = [], [], 0
        for client in clients:
            code, out, err = presence_cli(args.bin, "messages", "--data", server.data, "--conversation", client.conversation,
                                          "--after-seq", "0", "--limit", "1000000")
            stored = [json.loads(line) for line in out.splitlines()]
            by_seq = {m["seq"]: m["content"] for m in stored}
            if [m["seq"] for m in stored] != list(range(1, len(stored) + 1)):
                gaps.append(client.conversation)
            for client_id, (seq, content) in client.acknowledged.items():
                total += 1
                if by_seq.get(seq) != content:
                    lost.append(f"{client_id} (seq {seq})")
        check(not lost and not gaps, f"every one of {total} acknowledged messages is at its seq, seqs without gaps",
              f"{len(lost)} not at their seq {lost[:5]}, gaps in {gaps[:5]}")

        # 5. The audit.
        code, out, err = presence_cli(args.bin, "audit", "--data", server.data)
        check(code == 0, "`presence audit` exits 0", f"exit {code}: {out[-1500:]}{err[-500:]}")

        problems = [f"{c.user}: {p}" for c in clients for p in c.problems]
        check(not problems, "no client saw an error frame, a push before its cursor or a seq change", "; ".join(problems[:5]))
        check(not stats.read_errors, f"every one of {stats.reads} HTTP reads answered 200 (or found the server down)",
              "; ".join(stats.read_errors[:5]))
        check(stats.kills >= args.min_kills, f"at least {args.min_kills} SIGKILLs ({stats.kills})")

        print(f"soak: {elapsed:.0f} s of load, {stats.kills} SIGKILLs and restarts "
              f"(restart to listening: max {max(stats.restarts or [0]):.2f} s)")
        print(f"soak: {len(acknowledged)} events in {stats.batches} acknowledged batches from {args.gateways} gateways "
              f"({stats.retried} batches sent more than once, {stats.repeats} events acknowledged as repeats of a write "
              f"the kill cut off from its answer)")
        print(f"soak: {total} messages from {len(clients)} clients ({stats.resent} sent again after a reconnect), "
              f"{stats.reconnects} reconnects, {stats.reads} HTTP reads")
        print(f"soak: server RSS at the end {rss:.0f} MiB")
        if FAILED:
            kept = True
            print(f"soak.py: {len(FAILED)} checks failed; kept {server.dir} (data, server.log)")
        else:
            print("soak.py: every check passed")
    finally:
        if kept or args.keep:
            server.stop(signal.SIGKILL)
        else:
            server.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--bin", default=".build/release/presence", help="the presence binary")
    parser.add_argument("--duration", type=float, default=120, help="seconds of load (default 120)")
    parser.add_argument("--kill-every", default="8-20", help="seconds between SIGKILLs: MIN-MAX, or one number (default 8-20)")
    parser.add_argument("--min-kills", type=int, default=1, help="fail unless at least this many kills happened")
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--users", type=int, default=40, help="users the gateways connect and disconnect")
    parser.add_argument("--clients", type=int, default=20, help="chat clients holding sockets")
    parser.add_argument("--seed", type=int, default=None, help="the random seed (printed; default random)")
    parser.add_argument("--timeout", type=float, default=120, help="bound on each wait (start, drain, settle)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder even when every check passes")
    args = parser.parse_args()
    try:
        parts = args.kill_every.split("-")
        low, high = float(parts[0]), float(parts[-1])
        if len(parts) > 2 or not 0 < low <= high:
            raise ValueError
    except ValueError:
        parser.error(f"--kill-every wants MIN-MAX seconds with 0 < MIN <= MAX, not {args.kill_every!r}")
    if not os.path.exists(args.bin):
        parser.error(f"no presence binary at {args.bin} (swift build -c release --product presence, or --bin)")
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print(f"soak: seed {args.seed}", flush=True)
    random.seed(args.seed)
    asyncio.run(soak(args))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
