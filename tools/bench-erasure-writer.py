#!/usr/bin/env python3
"""A gateway posting one event every 5 ms to a running `presence serve` until stopped (SIGTERM), for
tools/bench-erasure.sh: prints how many posts were acknowledged and the longest and median wait, the
time writes stall behind an online erasure.

    bench-erasure-writer.py --port P --token GATEWAY_TOKEN   (the token's gateway is "gw-bench")
"""
import argparse
import json
import signal
import statistics
import time
import urllib.request


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    # A background job of a script ignores SIGINT: the script stops the writer with SIGTERM.
    def stop(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    waits, n = [], 0
    try:
        while True:
            kind = "connect" if n % 2 == 0 else "disconnect"
            line = json.dumps({"type": kind, "user": f"bench-writer-{n // 2 % 100}", "conn": f"c{n // 2}", "gateway": "gw-bench",
                               "ts": int(time.time() * 1000)})
            request = urllib.request.Request(f"http://127.0.0.1:{args.port}/v1/events", method="POST", data=(line + "\n").encode(),
                                             headers={"Authorization": "Bearer " + args.token})
            start = time.monotonic()
            with urllib.request.urlopen(request, timeout=120) as reply:
                reply.read()
            waits.append(time.monotonic() - start)
            n += 1
            time.sleep(0.005)
    except KeyboardInterrupt:
        pass
    if waits:
        print(f"{len(waits)} posts acknowledged; longest wait {max(waits) * 1000:.0f} ms, median {statistics.median(waits) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
