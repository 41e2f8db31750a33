#!/usr/bin/env python3
"""What push fan-out costs the commit path (issue 14): with --watchers sockets each watching the same
--hot users, a gateway flips those users (every commit a push to every watcher), then flips as many
users nobody watches; phases in the order cold, hot, hot, cold, so drift shows as a difference between
the pairs.

Run it with the .venv Python (scripts/setup.sh --python installs `websockets`):
    swift build -c release --product presence && .venv/bin/python tools/load-fanout.py

It starts its own `presence serve` (release build by default, a fresh data folder and secret,
`--push-queue-limit` raised so no watcher is cut off), creates one conversation per watcher with the hot
users, opens them, then in each phase sends --posts POSTs of --hot events one after the other (each
POST flips every user of its set: all connect, then all disconnect). Per phase it prints:
- the POSTs' rate and latency (p50/p99): fsync, apply and fan-out, end to end;
- the time each commit held the node's lock (`presence_apply_seconds` from /metrics: its sum and
  count over the phase): what snapshots, opens and the next commit wait behind;
- the fan-out's time (`presence_fan_out_seconds`, where the server has it: the frames queued to every
  watcher, off the commit thread since issue 14) and how many fan-outs took it;
- the pushes queued (`presence_pushes_sent_total`; every hot POST makes one for each hot user and
  watcher) and how long until the clients had every frame;
- what a reader waits meanwhile: a probe GETs `/v1/users/hot0/presence` (read under the node's lock)
  every 20 ms through the phase, on its own connection; its p50/p99/max.
"""
import argparse
import asyncio
import http.client
import json
import re
import sys
import threading
import time

from websockets.asyncio.client import connect

from loadkit import Server, percentile, progress, raise_file_limit


def metrics(port, token):
    link = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    link.request("GET", "/metrics", headers={"Authorization": "Bearer " + token})
    text = link.getresponse().read().decode()
    link.close()

    def value(name):
        found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
        return float(found.group(1)) if found else 0.0
    return {"apply_sum": value("presence_apply_seconds_sum"), "apply_count": value("presence_apply_seconds_count"),
            "fan_out_sum": value("presence_fan_out_seconds_sum"), "fan_out_count": value("presence_fan_out_seconds_count"),
            "pushes": value("presence_pushes_sent_total")}


def probe(port, token, stop, latencies):
    """GET /v1/users/hot0/presence every 20 ms until `stop` is set, noting each answer's time (ms)."""
    link = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        t0 = time.perf_counter()
        link.request("GET", "/v1/users/hot0/presence", headers={"Authorization": "Bearer " + token})
        reply = link.getresponse()
        reply.read()
        if reply.status != 200:
            raise RuntimeError(f"GET /v1/users/hot0/presence: {reply.status}")
        latencies.append((time.perf_counter() - t0) * 1000)
        stop.wait(0.02)
    link.close()


def post_phase(port, token, users, posts, start_ts):
    """`posts` POSTs, one at a time on one keep-alive connection, each flipping every user of `users`."""
    link = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    ts = start_ts
    began = time.perf_counter()
    for n in range(posts):
        kind = "connect" if n % 2 == 0 else "disconnect"
        lines = []
        for user in users:
            ts += 1
            lines.append(json.dumps({"type": kind, "user": user, "conn": f"{user}-phone", "gateway": "gw-1", "ts": ts}))
        t0 = time.perf_counter()
        link.request("POST", "/v1/events", body="\n".join(lines) + "\n", headers={"Authorization": "Bearer " + token})
        reply = link.getresponse()
        answer = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"POST /v1/events: {reply.status} {answer[:300]!r}")
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - began
    link.close()
    return latencies, elapsed, ts


async def main(args):
    raise_file_limit()
    server = Server(args.bin, "load-fanout-", ["--push-queue-limit", "1000000", "--heartbeat-interval", "1h", "--lease", "2h"])
    try:
        server.start(120)
        port = server.port
        operator = server.token("ops", "operator")
        gateway = server.token("gw-1", "gateway")
        hot = [f"hot{i}" for i in range(args.hot)]
        cold = [f"cold{i}" for i in range(args.hot)]
        # One conversation a watcher, with every hot user.
        link = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conversations = []
        for i in range(args.watchers):
            link.request("POST", "/v1/conversations", body=json.dumps({"members": [f"w{i}", *hot]}),
                         headers={"Authorization": "Bearer " + server.token(f"w{i}")})
            reply = link.getresponse()
            conversations.append(json.loads(reply.read())["id"])
        link.close()
        received = [0]

        async def watcher(i):
            ws = await connect(f"ws://127.0.0.1:{port}/v1/ws", ping_interval=None, open_timeout=60, max_queue=None,
                               additional_headers={"Authorization": "Bearer " + server.token(f"w{i}")})
            await ws.recv()  # ready
            await ws.send(json.dumps({"op": "open", "conversation": conversations[i]}))
            opened = json.loads(await ws.recv())
            assert opened["type"] == "opened", opened
            return ws

        sockets = []
        for start in range(0, args.watchers, 200):
            sockets += await asyncio.gather(*(watcher(i) for i in range(start, min(args.watchers, start + 200))))
        progress(f"{len(sockets)} watchers, each watching {len(hot)} hot users")

        async def read(ws):
            async for text in ws:
                if text.startswith('{"type":"presence"'):
                    received[0] += 1
        readers = [] if args.no_read else [asyncio.create_task(read(ws)) for ws in sockets]

        ts = int(time.time() * 1000)
        for name in ["cold", "hot", "hot", "cold"]:
            before = metrics(port, operator)
            frames_before = received[0]
            began = time.perf_counter()
            stop, probed = threading.Event(), []
            prober = threading.Thread(target=probe, args=(port, server.token("w0"), stop, probed))
            prober.start()
            latencies, elapsed, ts = await asyncio.to_thread(post_phase, port, gateway, hot if name == "hot" else cold,
                                                             args.posts, ts)
            # The fan-out may still be queueing after the last acknowledgement.
            expected = args.posts * len(hot) * len(sockets) if name == "hot" else 0
            deadline = time.perf_counter() + 120
            while not args.no_read and received[0] - frames_before < expected and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            delivered = time.perf_counter()
            stop.set()
            await asyncio.to_thread(prober.join)
            await asyncio.sleep(0.5)
            after = metrics(port, operator)
            commits = after["apply_count"] - before["apply_count"]
            held = (after["apply_sum"] - before["apply_sum"]) / max(1, commits) * 1e6
            fan_outs = after["fan_out_count"] - before["fan_out_count"]
            fan_out = (after["fan_out_sum"] - before["fan_out_sum"]) / max(1, fan_outs) * 1e3
            print(f"{name:4}: {args.posts} POSTs of {len(hot)} events in {elapsed:.2f} s ({args.posts / elapsed:.0f}/s), "
                  f"latency p50 {percentile(latencies, 50):.2f} ms p99 {percentile(latencies, 99):.2f} ms; "
                  f"lock held {held:.0f} us a commit ({commits:.0f} commits); fan-out {fan_out:.2f} ms each ({fan_outs:.0f}); "
                  f"{int(after['pushes'] - before['pushes'])} pushes queued (expected {expected}), "
                  f"{received[0] - frames_before} received, the last {delivered - began:.2f} s after the first POST; "
                  f"a reader's GET p50 {percentile(probed, 50):.2f} ms p99 {percentile(probed, 99):.2f} ms "
                  f"max {max(probed):.2f} ms ({len(probed)} GETs)",
                  flush=True)
            await asyncio.sleep(1)
        for task in readers:
            task.cancel()
        for start in range(0, len(sockets), 500):
            await asyncio.gather(*(ws.close() for ws in sockets[start:start + 500]), return_exceptions=True)
    finally:
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--bin", default=".build/release/presence")
    parser.add_argument("--watchers", type=int, default=2000, help="sockets watching the hot users (default 2000)")
    parser.add_argument("--hot", type=int, default=10, help="users flipped by each POST (default 10)")
    parser.add_argument("--posts", type=int, default=200, help="POSTs a phase (default 200)")
    parser.add_argument("--no-read", action="store_true",
                        help="the watchers read nothing (their frames wait in the kernel's buffers and the server's "
                             "queues): the commit path without the clients' CPU beside it; keep --posts small")
    asyncio.run(main(parser.parse_args()))
