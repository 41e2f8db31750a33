#!/usr/bin/env python3
"""Clients that misbehave (issue 18): a reconnect storm after a server restart, and slow consumers.

Run it with the .venv Python (scripts/setup.sh --python installs `websockets`):
    swift build -c release --product presence && .venv/bin/python tools/storm.py
    .venv/bin/python tools/storm.py --bin .build/debug/presence --clients 300 --slow 100   # small

Each phase starts its own `presence serve` on 127.0.0.1 with a fresh data folder and secret, mints the
tokens itself (HS256, as `presence token` does), and is bounded in time (--timeout a step).

Reconnect storm (--clients N, default 10,000): the clients, in groups of --group that share a
conversation with a "pulse" user of the group, each open their conversation and keep the
`presence_cursor` they reached. The server is stopped (SIGTERM, or SIGKILL with --kill9) and started
again on the same port and data folder; then every client reconnects at a random moment within one
second (a refused or failed attempt is retried after 100-300 ms) and opens its conversation again with
its cursor. Figures: how long until every client had its `opened` frame, the handshake (TCP connect to
the 101) p50/p99/max, retries and failures, the server's RSS. Then each pulse user comes online (one
gateway POST): every client must get that push.

Slow consumers (--slow M, default 1,000): M clients, each in a conversation with --pulses users whose
presence a driver flips (one gateway POST flips them all: one push each), open it and then stop
reading (a 4 KiB receive buffer, the client library's queue of one frame). A reader client watching
the same users goes on reading. The driver flips --flips times; the server (`--push-queue-limit`)
must cut every slow client off with close code 4008, its resident memory sampled meanwhile (peak, and
per slow client). Then each slow client reads what reached it, reconnects with the cursor it got to,
and must have every change the driver made since it opened, in order, each once.

Prints one line a figure and a "passed: ..." line a check; exits 1 at the end if any check failed.
"""
import argparse
import asyncio
import base64
import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from loadkit import FAILED, Server, check, percentile, progress, raise_file_limit

warnings.filterwarnings("ignore", category=DeprecationWarning)


def create_conversations(server, groups, threads=8):
    """POSTs each group's conversation (its first member creates it); returns their ids in order."""
    def worker(chunk):
        link = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        ids = []
        for members in chunk:
            link.request("POST", "/v1/conversations", body=json.dumps({"members": members}),
                         headers={"Authorization": "Bearer " + server.token(members[0])})
            reply = link.getresponse()
            body = reply.read()
            if reply.status not in (200, 201):
                raise RuntimeError(f"creating a conversation: {reply.status} {body[:200]!r}")
            ids.append(json.loads(body)["id"])
        link.close()
        return ids
    size = max(1, (len(groups) + threads - 1) // threads)
    chunks = [groups[i:i + size] for i in range(0, len(groups), size)]
    with ThreadPoolExecutor(len(chunks)) as pool:
        return [cid for ids in pool.map(worker, chunks) for cid in ids]


def post_events(server, gateway_token, lines):
    link = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = "".join(json.dumps(line) + "\n" for line in lines)
    link.request("POST", "/v1/events", body=body, headers={"Authorization": "Bearer " + gateway_token})
    reply = link.getresponse()
    answer = reply.read()
    link.close()
    if reply.status != 200:
        raise RuntimeError(f"POST /v1/events: {reply.status} {answer[:300]!r}")
    return json.loads(answer)


class StormClient:
    """One user with a socket and its group's conversation open; follows its presence cursor."""

    def __init__(self, user, conversation, pulse, token):
        self.user, self.conversation, self.pulse, self.token = user, conversation, pulse, token
        self.cursor = None
        self.ws = None
        self.opened = None          # a future: the opened frame of the current socket
        self.pulse_online = None    # a future: the pulse user's "online" push
        self.handshake = None       # seconds, TCP connect to the 101 (of the attempt that worked)
        self.back_at = None
        self.retries = 0
        self.reader = None

    async def open(self, url, timeout, resume=False):
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self.ws = await connect(url, additional_headers={"Authorization": "Bearer " + self.token},
                                ping_interval=None, open_timeout=timeout, close_timeout=2, max_queue=64)
        self.handshake = time.perf_counter() - started
        ready = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if ready.get("type") != "ready":
            raise RuntimeError(f"first frame is not ready: {ready}")
        self.opened = loop.create_future()
        request = {"op": "open", "conversation": self.conversation}
        if resume and self.cursor is not None:
            request["presence_cursor"] = self.cursor
        await self.ws.send(json.dumps(request))
        self.reader = asyncio.create_task(self.read())
        return await asyncio.wait_for(asyncio.shield(self.opened), timeout)

    async def read(self):
        try:
            async for text in self.ws:
                frame = json.loads(text)
                kind = frame.get("type")
                if kind == "opened":
                    self.cursor = frame["presence_cursor"] if self.cursor is None or frame.get("resumed") is not True \
                        else max(self.cursor, frame["presence_cursor"])
                    if not self.opened.done():
                        self.opened.set_result(frame)
                elif kind == "presence":
                    self.cursor = max(self.cursor or 0, frame["offset"] + 1)
                    if frame["user"] == self.pulse and frame["online"] and self.pulse_online and not self.pulse_online.done():
                        self.pulse_online.set_result(time.perf_counter())
                elif kind == "error" and not self.opened.done():
                    self.opened.set_exception(RuntimeError(f"open refused: {frame}"))
        except ConnectionClosed:
            pass
        if not self.opened.done():
            self.opened.set_exception(RuntimeError("the socket closed before opened"))


async def in_batches(coroutines, size):
    results = []
    for start in range(0, len(coroutines), size):
        results += await asyncio.gather(*coroutines[start:start + size], return_exceptions=True)
    return results


async def storm(args):
    server = Server(args.bin, "storm-", ["--event-loops", str(args.event_loops)] if args.event_loops else [])
    try:
        server.start(args.timeout)
        url = f"ws://127.0.0.1:{server.port}/v1/ws"
        groups = []
        for g in range((args.clients + args.group - 1) // args.group):
            members = [f"c{i}" for i in range(g * args.group, min(args.clients, (g + 1) * args.group))]
            groups.append(members + [f"pulse{g}"])
        started = time.time()
        conversations = await asyncio.to_thread(create_conversations, server, groups)
        progress(f"storm: {len(conversations)} conversations created in {time.time() - started:.1f}s")
        clients = [StormClient(user, conversations[g], members[-1], server.token(user))
                   for g, members in enumerate(groups) for user in members[:-1]]
        rss_before = server.rss()
        started = time.time()
        results = await in_batches([c.open(url, args.timeout) for c in clients], 200)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            check(False, "every storm client connected and opened its conversation before the restart",
                  f"{len(failures)} failed, first: {failures[0]!r}")
            return
        progress(f"storm: {len(clients)} clients opened their conversations in {time.time() - started:.1f}s")
        await asyncio.sleep(1)
        rss_held = server.rss()

        how = "SIGKILL" if args.kill9 else "SIGTERM"
        stop_started = time.perf_counter()
        # In a thread: the clients must go on answering the server's close frames while it shuts down.
        status = await asyncio.to_thread(server.stop, signal.SIGKILL if args.kill9 else signal.SIGTERM, args.timeout)
        stopped = time.perf_counter() - stop_started
        if not args.kill9:
            check(status == 0, f"the server exits 0 on SIGTERM with {len(clients)} sockets open", f"status {status}")
        # Every client sees its socket end (bounded).
        await asyncio.wait_for(asyncio.gather(*(c.reader for c in clients)), args.timeout)
        cursors = [c.cursor for c in clients]
        restart_started = time.perf_counter()
        await asyncio.to_thread(server.start, args.timeout)
        restarted = time.perf_counter() - restart_started
        progress(f"storm: server stopped ({how}) in {stopped:.1f}s, listening again in {restarted:.1f}s; storm begins")

        release = time.perf_counter()
        cpu_start = server.cpu()
        rss_samples = []

        async def sample():
            while True:
                rss_samples.append(server.rss())
                await asyncio.sleep(0.2)

        async def come_back(client):
            await asyncio.sleep(random.uniform(0, 1.0))
            deadline = release + args.timeout
            client.first_try = time.perf_counter() - release
            while True:
                try:
                    opened = await client.open(url, max(1.0, deadline - time.perf_counter()), resume=True)
                    client.back_at = time.perf_counter() - release
                    return opened
                except Exception as error:  # refused, reset, timed out: retry like a client would
                    if client.ws is not None:
                        await client.ws.close()
                    if time.perf_counter() > deadline:
                        raise error
                    client.retries += 1
                    await asyncio.sleep(random.uniform(0.1, 0.3))

        sampler = asyncio.create_task(sample())
        results = await asyncio.gather(*(come_back(c) for c in clients), return_exceptions=True)
        sampler.cancel()
        cpu_storm = server.cpu() - cpu_start
        back = [c.back_at for c in clients if c.back_at is not None]
        failures = [r for r in results if isinstance(r, BaseException)]
        resumed = sum(1 for r in results if isinstance(r, dict) and r.get("resumed") is True)
        handshakes = [c.handshake * 1000 for c in clients if c.back_at is not None]
        retries = sum(c.retries for c in clients)
        print(f"storm: {len(clients)} clients in {len(groups)} groups of {args.group}, server stopped with {how}")
        print(f"storm: server stop {stopped:.2f} s, start again {restarted:.2f} s (the reconnects start after it listens)")
        if back:
            print(f"storm: every client back (opened) within {max(back):.2f} s of the storm's start "
                  f"(p50 {percentile(back, 50):.2f} s, p99 {percentile(back, 99):.2f} s); {len(back)} back, {len(failures)} failed")
            print(f"storm: first client back {min(back):.2f} s after the storm began; first attempts from "
                  f"{min(c.first_try for c in clients):.2f} s to {max(c.first_try for c in clients):.2f} s")
            print(f"storm: handshake (TCP connect to 101) p50 {percentile(handshakes, 50):.1f} ms  "
                  f"p99 {percentile(handshakes, 99):.1f} ms  max {max(handshakes):.1f} ms")
        print(f"storm: server CPU from the storm's start until every client was back: {cpu_storm:.1f} s "
              f"({cpu_storm * 1000 / len(clients):.2f} ms a client: handshake, connect appended, open answered)")
        print(f"storm: retries {retries} (by {sum(1 for c in clients if c.retries)} clients), "
              f"resumed from the journal {resumed}, given a fresh view {len(back) - resumed}")
        print(f"storm: server RSS {rss_before:.0f} MiB before the clients, {rss_held:.0f} MiB holding them, "
              f"peak {max(rss_samples or [0]):.0f} MiB during the storm, {server.rss():.0f} MiB after")
        check(server.alive(), "the server stays up through the storm")
        check(not failures, f"every one of {len(clients)} clients reconnected and opened its conversation with its cursor",
              f"{len(failures)} failed, first: {failures[0]!r}" if failures else "")
        check(all(isinstance(r, dict) and r.get("type") == "opened" and (r.get("resumed") is True or r["presence_cursor"] >= cursor)
                  for r, cursor in zip(results, cursors) if not isinstance(r, BaseException)),
              "every opened frame resumes from the client's cursor or is a fresh view at or past it")

        # After the storm: every pulse user comes online in one POST; every client must be told.
        loop = asyncio.get_running_loop()
        for c in clients:
            c.pulse_online = loop.create_future()
        gateway = server.token("storm-gw", "gateway")
        now = int(time.time() * 1000)
        sent = time.perf_counter()
        await asyncio.to_thread(post_events, server, gateway,
                                [{"type": "connect", "user": members[-1], "conn": "pulse", "gateway": "storm-gw", "ts": now}
                                 for members in groups])
        done, _ = await asyncio.wait([c.pulse_online for c in clients], timeout=args.timeout)
        told = [f.result() - sent for f in done]
        print(f"storm: after the storm {len(groups)} pulse users came online: {len(told)} of {len(clients)} watchers "
              f"got the push" + (f", the last {max(told) * 1000:.0f} ms after the POST was sent" if told else ""))
        check(len(told) == len(clients), "every client got the push after the storm", f"{len(clients) - len(told)} did not")
        await in_batches([c.ws.close() for c in clients], 500)
    finally:
        server.cleanup()


PRESENCE = re.compile(rb'"type":"presence"')
FIELD = {name: re.compile(rb'"%s":("[^"]*"|true|false|\d+)' % name.encode()) for name in ("user", "online", "offset")}


def mask(payload, opcode=1):
    """A client frame (FIN, masked, as RFC 6455 requires of clients)."""
    key = os.urandom(4)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class SlowClient:
    """A WebSocket client on a plain socket (so that nothing reads for it while it pauses): opens its
    conversation, then stops reading until `drain`. Keeps the (offset, user, online) of every presence
    frame it takes, over both of its sockets."""

    def __init__(self, user, conversation, token):
        self.user, self.conversation, self.token = user, conversation, token
        self.frames = []
        self.close_code = None
        self.start = None       # the cursor of the first opened frame
        self.buffer, self.at = bytearray(), 0

    async def open(self, port, timeout, cursor=None, small=True):
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, limit=1 << 16), timeout)
        self.buffer, self.at = bytearray(), 0
        if small:
            self.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write((f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Authorization: Bearer {self.token}\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no upgrade: {head[:100]!r}")
        ready = await asyncio.wait_for(self.frame(), timeout)
        if b'"ready"' not in ready:
            raise RuntimeError(f"first frame is not ready: {ready!r}")
        request = {"op": "open", "conversation": self.conversation}
        if cursor is not None:
            request["presence_cursor"] = cursor
        self.writer.write(mask(json.dumps(request).encode()))
        while True:
            payload = await asyncio.wait_for(self.frame(), timeout)
            if payload is None:
                raise RuntimeError(f"closed with {self.close_code} before opened")
            if not self.take(payload):
                frame = json.loads(payload)
                if frame["type"] == "opened":
                    self.start = frame["presence_cursor"] if self.start is None else self.start
                    if small:  # from now on nothing reads the socket: the kernel's buffers, then the server's, fill
                        self.writer.transport.pause_reading()
                    return frame
                raise RuntimeError(f"not opened: {frame}")

    async def frame(self):
        """The next text frame's payload, or None once a close frame came (its code kept)."""
        while True:
            buffer, at = self.buffer, self.at
            if len(buffer) - at >= 2:
                length, start = buffer[at + 1] & 0x7F, at + 2
                if length == 126:
                    length, start = (struct.unpack_from("!H", buffer, at + 2)[0], at + 4) if len(buffer) - at >= 4 else (None, 0)
                elif length == 127:
                    length, start = (struct.unpack_from("!Q", buffer, at + 2)[0], at + 10) if len(buffer) - at >= 10 else (None, 0)
                if length is not None and len(buffer) >= start + length:
                    opcode, payload = buffer[at] & 0x0F, bytes(buffer[start:start + length])
                    self.at = start + length
                    if opcode == 8:
                        self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                        return None
                    if opcode == 9:  # ping: answer, as any client library would once it reads again
                        self.writer.write(mask(payload, 10))
                    elif opcode == 1:
                        return payload
                    continue
            try:
                chunk = await self.reader.read(1 << 20)
            except ConnectionError:
                chunk, self.close_code = b"", self.close_code or "reset"
            if not chunk:
                self.close_code = self.close_code or "eof"
                return None
            del self.buffer[:self.at]
            self.at = 0
            self.buffer += chunk

    def take(self, payload):
        """Keeps a presence frame's (offset, user, online); false for any other frame."""
        if not PRESENCE.search(payload):
            return False
        user, online, offset = (FIELD[name].search(payload).group(1) for name in ("user", "online", "offset"))
        self.frames.append((int(offset), user.strip(b'"').decode(), online == b"true"))
        return True

    async def drain(self, quiet):
        """Reads until the close frame (answering it) or `quiet` seconds with nothing; returns the close code."""
        # A window of 4 KiB, closed for long, reopens slowly (the sender's zero-window probes back off):
        # a client that reads again takes a normal buffer.
        self.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.writer.transport.resume_reading()
        try:
            while True:
                payload = await asyncio.wait_for(self.frame(), quiet)
                if payload is None:
                    break
                self.take(payload)
        except asyncio.TimeoutError:
            return "open"
        if isinstance(self.close_code, int):
            self.writer.write(mask(struct.pack("!H", 1000), 8))
        self.writer.close()
        return self.close_code

    def cursor(self):
        return self.frames[-1][0] + 1 if self.frames else self.start

    def close(self):
        self.writer.close()


def tcp_memory_mib():
    """The kernel's TCP buffer memory (all sockets), from /proc/net/sockstat (pages)."""
    with open("/proc/net/sockstat") as stat:
        for line in stat:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * 4096 / (1 << 20)
    return 0.0


def pushes_queued(server, settle=0.2, timeout=30):
    """The server's presence_pushes_sent_total (frames queued to sessions), once the fan-out has queued
    what the last acknowledged commit changed: the fan-out runs after the acknowledgement, off the commit
    path, so the count is read until it stays the same for `settle` seconds (at most `timeout`)."""
    def read():
        link = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        link.request("GET", "/metrics", headers={"Authorization": "Bearer " + server.token("storm-metrics")})
        text = link.getresponse().read().decode()
        link.close()
        match = re.search(r"^presence_pushes_sent_total(?:\{[^}]*\})? (\d+)", text, re.M)
        return int(match.group(1)) if match else 0
    deadline = time.monotonic() + timeout
    count = read()
    while time.monotonic() < deadline:
        time.sleep(settle)
        now = read()
        if now == count:
            break
        count = now
    return count


def flips_to_overflow(user_bytes, pulses, limit):
    """Flips enough for a client that stopped reading to be cut off: the kernel takes up to tcp_wmem's
    largest send buffer (4 MiB here) of frames for a socket before the server's queue gets any."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
        send_buffer = int(wmem.read().split()[2])
    frame = user_bytes + 110  # a push's frame ({"type":"presence","user":..,"offset":..} and its header)
    return 3 * (int((send_buffer / frame + limit + 64 * 1024 / frame) / pulses) + 2)


async def slow(args):
    extra = ["--push-queue-limit", str(args.push_queue_limit)]
    if args.event_loops:
        extra += ["--event-loops", str(args.event_loops)]
    server = Server(args.bin, "storm-slow-", extra)
    try:
        server.start(args.timeout)
        # Long ids make long frames: fewer of them fill the kernel's buffers before the server's queue.
        pulses = [f"pulse{k}-" + "p" * 200 for k in range(args.pulses)]
        users = [f"slow{i}" for i in range(args.slow)] + ["reader"]
        conversations = await asyncio.to_thread(create_conversations, server, [[u] + pulses for u in users])
        clients = [SlowClient(u, cid, server.token(u)) for u, cid in zip(users, conversations)]
        slow_clients, reader = clients[:-1], clients[-1]
        rss_before = server.rss()
        results = await in_batches([c.open(server.port, args.timeout) for c in slow_clients], 200)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            check(False, "every slow client opened its conversation", f"{len(failures)} failed, first: {failures[0]!r}")
            return
        await reader.open(server.port, args.timeout, small=False)
        await asyncio.sleep(0.5)
        rss_open = server.rss()
        flips = args.flips or flips_to_overflow(len(pulses[0]), args.pulses, args.push_queue_limit)
        progress(f"slow: {len(slow_clients)} slow clients and a reader hold their conversations; flipping {args.pulses} "
                 f"users (at most {flips} times) until every slow client is cut off")

        reading = asyncio.create_task(reader.drain(10))  # "open" once 10 s pass with nothing to read
        samples, kernel = [], []
        stop_sampling = asyncio.Event()

        async def sample():
            while not stop_sampling.is_set():
                samples.append(server.rss())
                kernel.append(tcp_memory_mib())
                await asyncio.sleep(0.1)
        sampler = asyncio.create_task(sample())

        gateway = server.token("slow-gw", "gateway")
        expected = []  # (offset, user, online) of every change the driver made
        online = False
        base = int(time.time() * 1000)
        started = time.perf_counter()
        queued = pushes_queued(server)
        for flip in range(flips):
            online = not online
            kind = "connect" if online else "disconnect"
            lines = [{"type": kind, "user": p, "conn": "pulse", "gateway": "slow-gw", "ts": base + flip} for p in pulses]
            reply = await asyncio.to_thread(post_events, server, gateway, lines)
            expected += [(reply["first_offset"] + k, p, online) for k, p in enumerate(pulses)]
            # A session cut off is no longer pushed to: once a flip queues frames for the reader alone,
            # every slow client is cut off (unless --flips asks for a number of flips).
            now = pushes_queued(server)
            if not args.flips and flip >= 2 and now - queued <= len(pulses):
                break
            queued = now
            if time.perf_counter() - started > args.timeout:
                break
        drove = time.perf_counter() - started
        await asyncio.sleep(1)
        stop_sampling.set()
        await sampler
        peak = max(samples + [server.rss()])
        print(f"slow: {len(slow_clients)} clients stopped reading; the driver made {len(expected)} changes "
              f"({len(expected) // len(pulses)} POSTs) in {drove:.1f} s, --push-queue-limit {args.push_queue_limit}")
        print(f"slow: server RSS {rss_before:.0f} MiB before the clients, {rss_open:.0f} MiB with them open, "
              f"peak {peak:.0f} MiB while they did not read: {(peak - rss_before) * 1024 / len(slow_clients):.0f} KiB a slow client")
        print(f"slow: kernel TCP buffers (all sockets of the machine) {min(kernel):.0f} MiB before, peak {max(kernel):.0f} MiB")
        check(server.alive(), "the server stays up with slow clients")
        check((max(kernel) - min(kernel)) * 1024 < len(slow_clients) * 512 + 32 * 1024,
              "the kernel holds at most 512 KiB a slow client (with 32 MiB for the machine's other sockets)",
              f"{(max(kernel) - min(kernel)) * 1024 / len(slow_clients):.0f} KiB a slow client")
        check((peak - rss_open) * 1024 * 1024 < len(slow_clients) * args.push_queue_limit * 2048 + 64 * 1024 * 1024,
              "the server's memory stays within 2 KiB a queued frame (and 64 MiB)", f"peak {peak:.0f} MiB")
        # Let the reader take what is left, then the slow clients read what reached them.
        reader_code = await reading
        codes = await asyncio.gather(*(c.drain(args.quiet) for c in slow_clients))
        cut = sum(1 for code in codes if code == 4008)
        print(f"slow: {cut} of {len(slow_clients)} slow clients were cut off with 4008; others: "
              f"{sorted(set(str(c) for c in codes if c != 4008))}")
        check(cut == len(slow_clients), "every slow client was cut off with close code 4008")
        got = [(o, u, on) for o, u, on in reader.frames]
        check(reader_code == "open" and got == [e for e in expected if e[0] >= reader.start],
              "the client that kept reading got every change in order and stayed connected",
              f"{len(got)} of {len(expected)}, close {reader_code}")
        before = [len(c.frames) for c in slow_clients]
        print(f"slow: before the cut-off a slow client had {min(before)}-{max(before)} frames "
              f"(median {percentile(before, 50)})")
        missed = [sum(1 for e in expected if e[0] >= c.cursor()) for c in slow_clients]
        resumes = await in_batches([c.open(server.port, args.timeout, small=False, cursor=c.cursor()) for c in slow_clients], 100)
        failures = [r for r in resumes if isinstance(r, BaseException)]
        check(not failures, "every slow client reconnected with its cursor", f"{len(failures)} failed, first: {failures[0]!r}" if failures else "")
        final = {}
        for offset, user, shown in expected:
            final[user] = shown
        resumed, fresh, wrong = 0, 0, []
        for c, opened in zip(slow_clients, resumes):
            if isinstance(opened, BaseException):
                continue
            if opened.get("resumed") is True:
                resumed += 1
                if c.frames != [e for e in expected if e[0] >= c.start]:
                    wrong.append(c.user)
            else:
                # Missed more than its queue holds: a fresh view, current for every user; what came before
                # the cut-off is still every change from the start, in order, once.
                fresh += 1
                view = {user: state["online"] for user, state in opened["presence"].items()}
                if view != final or c.frames != [e for e in expected if e[0] >= c.start][:len(c.frames)]:
                    wrong.append(c.user)
        print(f"slow: reconnected with their cursors: {resumed} resumed from the journal, {fresh} given a fresh view "
              f"(missed {args.push_queue_limit} changes or more); missed {min(missed)}-{max(missed)} changes (median {percentile(missed, 50)})")
        check(resumed + fresh == len(slow_clients) and not wrong,
              "every slow client, after reconnecting, had every change the driver made since it opened, in order, once "
              "(or, past its queue's size, a fresh view equal to the driver's last state)",
              f"{len(wrong)} did not, e.g. {wrong[:3]}")
        for c in clients:
            c.close()
    finally:
        server.cleanup()


async def main(args):
    raise_file_limit()
    random.seed(args.seed)
    if args.phase in ("storm", "both"):
        await storm(args)
    if args.phase in ("slow", "both"):
        await slow(args)
    print("storm.py: " + (f"{len(FAILED)} check(s) FAILED" if FAILED else "every check passed"), flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=".build/release/presence", help="the presence binary (default: %(default)s)")
    parser.add_argument("--phase", choices=["storm", "slow", "both"], default="both")
    parser.add_argument("--clients", type=int, default=10000, help="storm clients (default: %(default)s)")
    parser.add_argument("--group", type=int, default=4, help="storm clients a conversation (default: %(default)s)")
    parser.add_argument("--kill9", action="store_true", help="stop the server with SIGKILL instead of SIGTERM")
    parser.add_argument("--slow", type=int, default=1000, help="slow consumers (default: %(default)s)")
    parser.add_argument("--pulses", type=int, default=128, help="users the slow phase's driver flips (default: %(default)s)")
    parser.add_argument("--flips", type=int, default=0,
                        help="driver POSTs, each flipping every pulse user: pulses x flips frames a client (default: just "
                             "enough to fill the kernel's largest send buffer and the queue)")
    parser.add_argument("--push-queue-limit", type=int, default=4096,
                        help="passed to the server: frames a client may fall behind (default: %(default)s)")
    parser.add_argument("--event-loops", type=int, default=0, help="passed to the server when set")
    parser.add_argument("--timeout", type=float, default=120, help="seconds each step may take (default: %(default)s)")
    parser.add_argument("--quiet", type=float, default=20, help="seconds of silence after which a slow client that reads "
                        "again counts as not cut off (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=18)
    sys.exit(asyncio.run(main(parser.parse_args())))
