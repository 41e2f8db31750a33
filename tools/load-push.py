#!/usr/bin/env python3
"""Push latency under load (issue 4): with N idle WebSocket clients connected, how long from Bob's
WebSocket opening until Alice, who has their conversation open, has the "online" push; and from Bob
closing it until she has the "offline" push. Also the server's RSS with the N clients held.

Usage: tools/load-push.py [--idle 10000] [--rounds 500] [--bin .build/release/presence]
Run it with the .venv Python (scripts/setup.sh --python installs `websockets`):
    swift build -c release --product presence && .venv/bin/python tools/load-push.py

It starts its own `presence serve` on a fresh data directory with a token secret of its own, mints the
tokens itself (HS256, as `presence token` does), and prints the figures:
    push p50/p99/max (ms) for online and offline, server RSS before and with the idle clients.
Latency is measured from the moment Bob's client starts connecting (TCP, handshake, the durable
connect append, the push) to the moment Alice's client has parsed the push.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect

import loadkit  # the same directory: tokens, RSS, percentiles
from loadkit import percentile, rss_mib

SECRET = "load-push-secret-" + os.urandom(8).hex()


def mint(user, role="user"):
    return loadkit.mint(SECRET, user, role)


async def main(args):
    loadkit.raise_file_limit()
    data = tempfile.mkdtemp(prefix="load-push-")
    secret_file = os.path.join(data, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET)
    server = subprocess.Popen([args.bin, "serve", "--data", os.path.join(data, "data"), "--port", "0",
                               "--secret-file", secret_file], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        port = int(line.strip().rsplit(":", 1)[1])
        base = f"http://127.0.0.1:{port}"
        url = f"ws://127.0.0.1:{port}/v1/ws"
        request = urllib.request.Request(base + "/v1/conversations", data=b'{"members":["alice","bob"]}',
                                         headers={"Authorization": "Bearer " + mint("alice")})
        conversation = json.loads(urllib.request.urlopen(request).read())["id"]
        rss_before = rss_mib(server.pid)

        print(f"connecting {args.idle} idle clients ...", file=sys.stderr, flush=True)
        idle = []
        started = time.time()
        for start in range(0, args.idle, 200):
            batch = [connect(url, additional_headers={"Authorization": "Bearer " + mint(f"idle-{i}")},
                             ping_interval=None, open_timeout=60, max_queue=4)
                     for i in range(start, min(args.idle, start + 200))]
            sockets = await asyncio.gather(*batch)
            await asyncio.gather(*(ws.recv() for ws in sockets))  # their ready frames
            idle.extend(sockets)
        print(f"{len(idle)} idle clients connected in {time.time() - started:.1f}s", file=sys.stderr, flush=True)
        await asyncio.sleep(1)
        rss_idle = rss_mib(server.pid)

        alice = await connect(url, additional_headers={"Authorization": "Bearer " + mint("alice")}, ping_interval=None)
        await alice.recv()
        await alice.send(json.dumps({"op": "open", "conversation": conversation}))
        opened = json.loads(await alice.recv())
        assert opened["type"] == "opened", opened
        bob_token = mint("bob")
        online, offline = [], []
        for round in range(args.rounds):
            t0 = time.perf_counter()
            bob = await connect(url, additional_headers={"Authorization": "Bearer " + bob_token}, ping_interval=None)
            push = json.loads(await alice.recv())
            online.append((time.perf_counter() - t0) * 1000)
            assert push["type"] == "presence" and push["online"] is True, push
            await bob.recv()
            t0 = time.perf_counter()
            await bob.close()
            push = json.loads(await alice.recv())
            offline.append((time.perf_counter() - t0) * 1000)
            assert push["type"] == "presence" and push["online"] is False, push
        rss_end = rss_mib(server.pid)
        print(f"idle clients: {len(idle)}; rounds: {args.rounds}")
        print(f"push latency, Bob's socket opens -> Alice has 'online':  p50 {percentile(online, 50):.2f} ms  "
              f"p99 {percentile(online, 99):.2f} ms  max {max(online):.2f} ms")
        print(f"push latency, Bob's socket closes -> Alice has 'offline': p50 {percentile(offline, 50):.2f} ms  "
              f"p99 {percentile(offline, 99):.2f} ms  max {max(offline):.2f} ms")
        print(f"server RSS: {rss_before:.0f} MiB before the clients, {rss_idle:.0f} MiB with {len(idle)} idle clients "
              f"({(rss_idle - rss_before) * 1024 / max(1, len(idle)):.1f} KiB each), {rss_end:.0f} MiB at the end")
        await alice.close()
        for start in range(0, len(idle), 500):
            await asyncio.gather(*(ws.close() for ws in idle[start:start + 500]))
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", data])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--bin", default=".build/release/presence")
    asyncio.run(main(parser.parse_args()))
