#!/usr/bin/env python3
"""An erasure while the server serves (POST /v1/admin/forget), with real clients: Bob's socket, Alice
watching him in an open conversation, and a gateway writing other users' events all along.

The end-to-end test (Tests/EndToEndTests/ErasureTests.swift) starts the server, mints the tokens and
creates the conversation of Alice and Bob, then runs:

    online_erasure.py --port P --conversation ID --user BOB --alice T --bob T --gateway T --admin T --operator T

It asserts what the admin, Alice and Bob rely on, exits 1 at the first failure, and prints, last, one
line `acknowledged: N` (the writer's events the server acknowledged, for the test to find in the log).
"""
import argparse
import json
import threading
import time
import urllib.error
import urllib.request

from websockets.exceptions import ConnectionClosed
from report import check, fail, ok  # the same directory
from ws_scenarios import Client, http, now_ms


def post(args, path, token, body):
    """(status, JSON body) of a request whose refusal is expected too."""
    headers = {"Authorization": "Bearer " + token} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{args.port}{path}", method="POST", data=body.encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def code(body):
    return body.get("error", {}).get("code")


def message(body):
    return body.get("error", {}).get("message", "")


def event(kind, user, conn, event_id=None):
    line = {"type": kind, "user": user, "conn": conn, "gateway": "gw-erase", "ts": now_ms()}
    if event_id:
        line["id"] = event_id
    return json.dumps(line)


class Writer(threading.Thread):
    """Posts connects and disconnects of other users until stopped, counting what was acknowledged."""

    def __init__(self, args):
        super().__init__(daemon=True)
        self.args, self.stop, self.acknowledged, self.failures = args, threading.Event(), 0, []

    def run(self):
        n = 0
        while not self.stop.is_set():
            lines = [event("connect", f"writer-{n % 7}", f"w-{n}"), event("disconnect", f"writer-{n % 7}", f"w-{n}")]
            status, body = post(self.args, "/v1/events", self.args.gateway, "\n".join(lines) + "\n")
            if status == 200:
                self.acknowledged += body["last_offset"] - body["first_offset"] + 1
            else:
                self.failures.append((status, body))
            n += 1
            time.sleep(0.002)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    for name in ["conversation", "user", "alice", "bob", "gateway", "admin", "operator"]:
        parser.add_argument("--" + name, required=True)
    args = parser.parse_args()
    user = args.user

    # Bob: a socket, settings of his own, and a device of his reported by a gateway with an event id.
    bob = Client(args, args.bob)
    bob.ready()
    http(args, "PUT", "/v1/me/privacy", args.bob, json.dumps({"online": {"who": "everyone", "except": []}}))
    status, body = post(args, "/v1/events", args.gateway, event("connect", user, "bob-phone", "bob-event-1") + "\n")
    check(status == 200, f"the gateway's event for {user}: {status} {body}")
    alice = Client(args, args.alice)
    alice.ready()
    alice.send({"op": "open", "conversation": args.conversation})
    opened = alice.recv()
    check(opened.get("type") == "opened" and opened["presence"][user]["online"] is True, f"alice sees {user} online: {opened}")
    ok(f"{user} is online, with settings and a socket; alice watches him")

    writer = Writer(args)
    writer.start()
    time.sleep(0.3)

    # Refusals change nothing.
    good = json.dumps({"user": user})
    for token, status_wanted, what in [(None, 401, "no token"), (args.operator, 403, "an operator token"),
                                       (args.alice, 403, "a user token"), (args.gateway, 403, "a gateway token")]:
        status, body = post(args, "/v1/admin/forget", token, good)
        check(status == status_wanted and code(body) in ("unauthorized", "forbidden"), f"{what}: {status} {body}")
    for body_text, what in [("{", "malformed JSON"), ("{\"user\":\"\"}", "an empty user"), ("[]", "not an object"),
                            (json.dumps({"user": user, "dry_run": True}), "an unknown key"), ("{\"who\":\"x\"}", "no user")]:
        status, body = post(args, "/v1/admin/forget", args.admin, body_text)
        check(status == 400, f"{what}: 400, got {status} {body}")
    status, body = post(args, "/v1/admin/forget", args.admin, json.dumps({"user": "nobody-ever"}))
    check(status == 404 and code(body) == "unknown_user" and "nothing changed" in message(body), f"unknown user: {status} {body}")
    state = http(args, "GET", f"/v1/users/{user}/presence", args.alice)
    check(state["online"] is True, f"after the refusals {user} is still online: {state}")
    ok("no token, other roles, bad bodies and an unknown user are refused; nothing changed")

    # The erasure, with the writer going.
    status, report = post(args, "/v1/admin/forget", args.admin, good)
    check(status == 200, f"the erasure: {status} {report}")
    check(report["user"] == user and report["presence_records"] >= 2 and report["privacy_records"] == 1, f"records removed: {report}")
    check(report["sessions_ended"] == 1 and report["segments_rewritten"] >= 2 and report["completed_interrupted"] is False, f"report: {report}")
    cut = report["cut_offset"]
    ok(f"erased: {report['presence_records']} presence and 1 privacy record, cut at offset {cut}")

    # Bob's socket ends with 4410; Alice is told he is unknown now, at the cut.
    try:
        while True:
            frame = bob.ws.recv(timeout=10)
            check(json.loads(frame).get("type") in ("presence", "opened"), f"bob's socket: {frame}")
    except ConnectionClosed as closed:
        received = closed.rcvd.code if closed.rcvd else None
        check(received == 4410, f"bob's socket closes with 4410: {closed}")
    except TimeoutError:
        fail("bob's socket was not closed after the erasure")
    ok("bob's socket is closed with 4410")
    while True:
        push = alice.recv(timeout=10)
        if push.get("type") == "presence" and push.get("user") == user:
            break
    check(push == {"type": "presence", "user": user, "online": False, "last_seen": None, "offset": cut},
          f"alice is pushed {user} as never seen, at the cut: {push}")
    ok("alice is pushed bob as a user never seen")

    # Reads: unknown everywhere; his settings are the defaults; a second erasure finds nothing.
    state = http(args, "GET", f"/v1/users/{user}/presence", args.alice)
    check(state["online"] is False and state["last_seen"] is None and state["connections"] == 0, f"GET presence: {state}")
    snapshot = http(args, "GET", f"/v1/conversations/{args.conversation}", args.alice)
    shown = snapshot["presence"][user]
    check(shown["online"] is False and shown["last_seen"] is None, f"the conversation's snapshot: {snapshot}")
    settings = http(args, "GET", "/v1/me/privacy", args.bob)
    check(settings["online"]["who"] == "contacts", f"his settings are the defaults again: {settings}")
    status, body = post(args, "/v1/admin/forget", args.admin, good)
    check(status == 404 and "an erasure of this user completed at" in message(body), f"a second erasure: {status} {body}")
    ok("after the erasure bob reads as never seen, with default settings; a second erasure finds nothing")

    writer.stop.set()
    writer.join(timeout=30)
    check(not writer.failures, f"the writer's posts all succeeded through the erasure: {writer.failures[:3]}")
    check(writer.acknowledged > 0, "the writer wrote")
    alice.close()
    print("passed: online erasure", flush=True)
    print(f"acknowledged: {writer.acknowledged}", flush=True)


if __name__ == "__main__":
    main()
