#!/usr/bin/env python3
"""A chat client's failover in cluster mode, with real WebSocket clients (Python `websockets`).

The end-to-end test (Tests/EndToEndTests/ClusterTests.swift) starts three `presence serve --cluster`
nodes with a short lease, creates a conversation of Alice, Bob and Carol, and runs:

    ws_failover.py --ports P0,P1,P2 --kill-pid PID0 --lease SECONDS --conversation ID
                   --alice TOKEN --bob TOKEN --carol TOKEN --gateway TOKEN

Alice and Carol hold sockets on node 0; Alice has the conversation open. Node 0 is killed (SIGKILL, by
this script, at a known moment). While Alice is away Bob's device goes offline and comes back through
node 1 and Bob posts a message through node 2. Alice reconnects to node 1 with the cursor she had
reached and must get every presence change she missed, in order, exactly once, then see the message;
Carol, whose socket died with node 0, must be shown offline within the lease and a margin.
Exits 1 with the reason on the first failure; prints "ok: ..." lines as it goes.
"""
import argparse
import json
import os
import signal
import time
import urllib.request
from types import SimpleNamespace

import ws_scenarios  # the same directory: the client and the check helpers are shared
from ws_scenarios import check, ok


def Client(port, token):
    """A WebSocket client of node `port` (ws_scenarios.py's)."""
    return ws_scenarios.Client(SimpleNamespace(port=port), token)


def http(port, method, path, token, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=body.encode() if body is not None else None,
                                     headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=40) as reply:
        return json.loads(reply.read())


def bob_event(port, gateway, kind, ts):
    line = {"type": kind, "user": "bob", "conn": "bob-phone", "gateway": "gw-1", "ts": ts}
    return http(port, "POST", "/v1/events", gateway, json.dumps(line) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", required=True)
    parser.add_argument("--kill-pid", type=int, required=True)
    parser.add_argument("--lease", type=float, required=True)
    for name in ["conversation", "alice", "bob", "carol", "gateway"]:
        parser.add_argument("--" + name, required=True)
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    conv = args.conversation

    carol = Client(ports[0], args.carol)
    carol.ready()
    alice = Client(ports[0], args.alice)
    alice.ready()
    alice.send({"op": "open", "conversation": conv})
    opened = alice.recv()
    check(opened.get("type") == "opened" and opened["presence"]["carol"]["online"], f"Carol is online: {opened}")
    cursor = opened["presence_cursor"]

    # Bob comes online through node 1: pushed to Alice on node 0 (the stream brings it there).
    start = int(time.time() * 1000)
    bob_event(ports[1], args.gateway, "connect", start)
    frame = alice.recv(timeout=10)
    check(frame.get("type") == "presence" and frame["user"] == "bob" and frame["online"], f"Bob online pushed: {frame}")
    cursor = frame["offset"] + 1
    ok(f"Bob's connect through node 1 pushed to Alice on node 0 (cursor now {cursor})")

    # Node 0 dies with Alice's and Carol's sockets.
    os.kill(args.kill_pid, signal.SIGKILL)
    killed = time.time()
    ok("node 0 killed")

    # While Alice is away: Bob's phone goes offline and back (two changes), and Bob writes.
    bob_event(ports[1], args.gateway, "disconnect", start + 1000)
    bob_event(ports[1], args.gateway, "connect", start + 2000)
    posted = http(ports[2], "POST", f"/v1/conversations/{conv}/messages", args.bob, json.dumps({"content": "are you there?"}))
    ok(f"while Alice was away: Bob offline and online again through node 1, message seq {posted['seq']} through node 2")

    # Alice comes back on node 1 with her cursor.
    alice = Client(ports[1], args.alice)
    alice.ready()
    alice.send({"op": "open", "conversation": conv, "presence_cursor": cursor})
    missed = []
    while True:
        frame = alice.recv(timeout=10)
        if frame.get("type") == "opened":
            break
        check(frame.get("type") == "presence", f"only presence frames before opened: {frame}")
        missed.append(frame)
    check(frame.get("resumed") is True, f"the resume was answered from the journal: {frame}")
    bobs = [(f["online"], f.get("last_seen")) for f in missed if f["user"] == "bob"]
    check(len(bobs) == 2 and bobs[0][0] is False and bobs[1][0] is True,
          f"Bob's two changes, in order, once each: {missed}")
    check(bobs[0][1] is not None and bobs[0][1].startswith(time.strftime("%Y-%m-%d", time.gmtime(start / 1000))),
          f"Bob's last seen is his disconnect's time: {bobs[0]}")
    offsets = [f["offset"] for f in missed]
    check(offsets == sorted(offsets) and all(o >= cursor for o in offsets), f"in log order, none before the cursor: {offsets}")
    check(frame["presence"]["bob"]["online"], f"the opened frame's view is current: {frame}")
    check(frame["last_seq"] == posted["seq"], f"the opened frame has Bob's message: {frame}")
    ok(f"resumed on node 1 from cursor {cursor}: {len(missed)} missed change(s), Bob's two in order")

    # The message Alice missed, read from node 1 (it came to it through the chat stream).
    snapshot = http(ports[1], "GET", f"/v1/conversations/{conv}", args.alice)
    check([m["content"] for m in snapshot["messages"]] == ["are you there?"], f"the message on node 1: {snapshot}")
    ok("Bob's message, posted through node 2, read on node 1")

    # Carol's socket died with node 0: when the lease runs out the other nodes end it (gateway_down).
    carol_offline = [f for f in missed if f["user"] == "carol" and not f["online"]]
    deadline = killed + args.lease + 15
    while not carol_offline and time.time() < deadline:
        try:
            frame = json.loads(alice.ws.recv(timeout=max(0.1, deadline - time.time())))
        except TimeoutError:
            break
        check(frame.get("type") == "presence", f"only presence frames: {frame}")
        check(frame["user"] == "carol", f"no frame of Bob again: {frame}")
        if not frame["online"]:
            carol_offline.append(frame)
    check(carol_offline, f"Carol shown offline within the lease ({args.lease} s) and 15 s after node 0 died")
    ok(f"Carol offline {time.time() - killed:.1f} s after node 0 died (lease {args.lease} s)")
    # Nothing of Bob comes again.
    try:
        extra = json.loads(alice.ws.recv(timeout=1.0))
        check(extra.get("user") != "bob", f"no change of Bob twice: {extra}")
    except TimeoutError:
        pass
    print("passed: failover", flush=True)


if __name__ == "__main__":
    main()
