#!/usr/bin/env python3
"""The privacy matrix against a running `presence serve`, with real clients (Python `websockets` and
HTTP keep-alive connections, so the snapshot's fast path answers too).

    privacy_matrix.py users                       prints the user ids, one a line (to mint tokens for)
    privacy_matrix.py run --port P --tokens FILE --gateway TOKEN

FILE is a JSON object {user: token}. Three subjects s0..s2 and 24 viewers cover, for each field
(last seen, online), every combination of the subject's rule (everyone/contacts/nobody) × the viewer
in the subject's exceptions × the viewer's own rule (reciprocity) × the subject in the viewer's
exceptions × contacts (a shared conversation) or not. The rule is restated here on its own (`shown`),
not taken from the server, and every answer is checked against it: GET /v1/users/{id}/presence for
every ordered pair of users, the snapshot's presence map for every pair of contacts (twice on one
connection, the second answered by the fast path), the `opened` frames, and the exact frames pushed
(a change to a hidden field pushes nothing) through presence changes, subjects' settings changes and
viewers' own settings changes while the conversations are open. Exits 1 with the reason on the first
failure; prints "ok: ..." lines as it goes and "passed: run" at the end.
"""
import argparse
import http.client
import itertools
import json
import sys
import time
import warnings

from websockets.sync.client import connect
from report import check, fail, ok  # the same directory

warnings.filterwarnings("ignore", category=DeprecationWarning)

WHO = ["everyone", "contacts", "nobody"]
SUBJECTS = [f"s{k}" for k in range(3)]
# A viewer: its own rule index w, in the subjects' exceptions (a), excepting the subjects itself (b),
# a contact of the subjects (c).
VIEWERS = {f"v{w}-a{a}-b{b}-c{c}": (w, a, b, c) for w, a, b, c in itertools.product(range(3), range(2), range(2), range(2))}
USERS = SUBJECTS + sorted(VIEWERS)


class Server:
    def __init__(self, port, tokens, gateway):
        self.port, self.tokens, self.gateway = port, tokens, gateway
        self.kept = {}  # user -> a keep-alive connection (the fast path's cache lives per connection)

    def request(self, method, path, token, body=None, keep=None):
        connection = self.kept.get(keep) if keep else None
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            if keep:
                self.kept[keep] = connection
        headers = {"Authorization": "Bearer " + token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=body, headers=headers)
        reply = connection.getresponse()
        data = reply.read()
        if not keep:
            connection.close()
        return reply.status, json.loads(data) if data else None

    def as_user(self, user, method, path, body=None, keep=None, status=200):
        got, answer = self.request(method, path, self.tokens[user], body, keep)
        check(got == status, f"{user} {method} {path}: status {got}, expected {status}: {answer}")
        return answer

    def events(self, lines):
        got, answer = self.request("POST", "/v1/events", self.gateway, "\n".join(json.dumps(line) for line in lines) + "\n")
        check(got == 200, f"events refused: {answer}")

    def fast_path_count(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        connection.request("GET", "/metrics", headers={"Authorization": "Bearer " + self.tokens["s0"]})
        text = connection.getresponse().read().decode()
        connection.close()
        return sum(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith("presence_snapshot_fast_path_total"))


class Model:
    """The settings, the contacts and the rule, restated independently of the server."""

    def __init__(self):
        self.settings = {user: {"last_seen": ("contacts", set()), "online": ("contacts", set())} for user in USERS}
        self.contacts = set()

    def are_contacts(self, a, b):
        return (min(a, b), max(a, b)) in self.contacts

    def allows(self, owner, field, other):
        who, excepted = self.settings[owner][field]
        if other in excepted:
            return False
        return who == "everyone" or (who == "contacts" and self.are_contacts(owner, other))

    def visible(self, subject, viewer, field):
        return subject == viewer or (self.allows(subject, field, viewer) and self.allows(viewer, field, subject))

    def shown(self, subject, viewer, raw):
        """`raw` ({online, last_seen, connections}) as `viewer` is shown it: hidden fields as never seen."""
        online = self.visible(subject, viewer, "online")
        return {"online": raw["online"] if online else False,
                "last_seen": raw["last_seen"] if self.visible(subject, viewer, "last_seen") else None,
                "connections": raw["connections"] if online else 0}


def pushed(before, after):
    """The frame a watcher is pushed when what it is shown goes from `before` to `after` (None: none)."""
    def key(state):
        return (state["online"], None if state["online"] else state["last_seen"])
    if key(before) == key(after):
        return None
    return {"online": True} if after["online"] else {"online": False, "last_seen": after["last_seen"]}


def truth(server, user):
    answer = server.as_user(user, "GET", f"/v1/users/{user}/presence")
    return {k: answer[k] for k in ("online", "last_seen", "connections")}


def put_settings(server, model, user, settings):
    body = {field: {"who": who, "except": sorted(excepted)} for field, (who, excepted) in settings.items()}
    answer = server.as_user(user, "PUT", "/v1/me/privacy", json.dumps(body))
    check(answer == body, f"{user}'s PUT answers the settings in force: {answer} vs {body}")
    model.settings[user] = {field: (who, set(excepted)) for field, (who, excepted) in settings.items()}


def check_user_endpoint(server, model, phase):
    raw = {user: truth(server, user) for user in USERS}
    for viewer, subject in itertools.product(USERS, USERS):
        answer = server.as_user(viewer, "GET", f"/v1/users/{subject}/presence")
        got = {k: answer.get(k) for k in ("online", "last_seen", "connections")}
        expected = model.shown(subject, viewer, raw[subject])
        check(answer.get("user") == subject and got == expected,
              f"{phase}: {viewer} asks about {subject}: {answer}, expected {expected} (raw {raw[subject]})")
    ok(f"{phase}: GET /v1/users/{{id}}/presence for all {len(USERS) ** 2} ordered pairs shows what the rule allows")
    return raw


def check_snapshots(server, model, conversations, raw, phase):
    before = server.fast_path_count()
    seconds = 0
    for (viewer, subject), conversation in sorted(conversations.items()):
        path = f"/v1/conversations/{conversation}"
        first = server.as_user(viewer, "GET", path, keep=viewer)
        second = server.as_user(viewer, "GET", path, keep=viewer)
        seconds += 1
        expected = model.shown(subject, viewer, raw[subject])
        check(first["presence"] == {subject: expected}, f"{phase}: {viewer}'s snapshot shows {subject} as {first['presence']}, expected {expected}")
        check(second == first, f"{phase}: the fast path's answer equals the route's: {second} vs {first}")
    served = server.fast_path_count() - before
    check(served >= seconds, f"{phase}: the fast path answered {served} of {seconds} repeated snapshots")
    # Each connection ends on its viewer's conversation with s0, the one the next phase asks first: a
    # settings change moves no cursor, so only the settings' version tells the fast path's cached
    # answer is stale.
    for (viewer, subject), conversation in sorted(conversations.items()):
        if subject == "s0":
            server.as_user(viewer, "GET", f"/v1/conversations/{conversation}", keep=viewer)
    ok(f"{phase}: {len(conversations)} snapshots (route and fast path) show what the rule allows")


class Watcher:
    def __init__(self, server, user):
        self.user = user
        self.ws = connect(f"ws://127.0.0.1:{server.port}/v1/ws", additional_headers={"Authorization": "Bearer " + server.tokens[user]})
        frame = self.recv()
        check(frame.get("type") == "ready", f"{user}: first frame is ready: {frame}")

    def recv(self, timeout=5.0):
        try:
            return json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            fail(f"{self.user}: no frame within {timeout}s")

    def drain(self, quiet=0.3):
        frames = []
        while True:
            try:
                frames.append(json.loads(self.ws.recv(timeout=quiet)))
            except TimeoutError:
                return frames


def expect_frames(watchers, expected, phase):
    """`expected`: {viewer: [(subject, frame without offset)]}, in order per subject."""
    time.sleep(0.5)
    frames_total = 0
    for viewer, watcher in watchers.items():
        got = watcher.drain()
        for frame in got:
            check(frame.get("type") == "presence" and isinstance(frame.get("offset"), int), f"{phase}: {viewer} got {frame}")
        simplified = [(f["user"], {k: v for k, v in f.items() if k not in ("type", "user", "offset")}) for f in got]
        for subject in SUBJECTS:
            mine = [frame for user, frame in simplified if user == subject]
            wanted = [frame for user, frame in expected.get(viewer, []) if user == subject]
            check(mine == wanted, f"{phase}: {viewer} was pushed {mine} about {subject}, expected {wanted}")
        check(all(user in SUBJECTS for user, _ in simplified), f"{phase}: {viewer} was pushed about others: {simplified}")
        frames_total += len(got)
    ok(f"{phase}: exactly the expected {frames_total} frames were pushed (none for a hidden change)")


def run(args):
    with open(args.tokens) as file:
        tokens = json.load(file)
    server = Server(args.port, tokens, args.gateway)
    model = Model()

    # The settings: subject k shows last seen to WHO[k] and online to WHO[k+1], except to the viewers
    # with a=1; a viewer (w, a, b, c) shows last seen to WHO[w] and online to WHO[w+2], except to
    # every subject when b=1. Each field thus meets every pair of rules.
    for k, subject in enumerate(SUBJECTS):
        excepted = {v for v, (_, a, _, _) in VIEWERS.items() if a}
        put_settings(server, model, subject, {"last_seen": (WHO[k], excepted), "online": (WHO[(k + 1) % 3], excepted)})
    for viewer, (w, a, b, c) in VIEWERS.items():
        excepted = set(SUBJECTS) if b else set()
        put_settings(server, model, viewer, {"last_seen": (WHO[w], excepted), "online": (WHO[(w + 2) % 3], excepted)})
    for user in USERS:
        answer = server.as_user(user, "GET", "/v1/me/privacy")
        check(answer == {f: {"who": who, "except": sorted(ex)} for f, (who, ex) in model.settings[user].items()},
              f"GET /v1/me/privacy for {user}: {answer}")
    ok(f"{len(USERS)} users' settings stored and read back")

    conversations = {}
    for viewer, (_, _, _, c) in VIEWERS.items():
        if not c:
            continue
        for subject in SUBJECTS:
            answer = server.as_user(viewer, "POST", "/v1/conversations", json.dumps({"members": [viewer, subject]}), status=201)
            conversations[(viewer, subject)] = answer["id"]
            model.contacts.add((min(viewer, subject), max(viewer, subject)))

    # Presence: s0 offline with a last seen, s1 online with a last seen, s2 online never having left.
    now = int(time.time() * 1000)
    def event(kind, user, conn, ago):
        return {"type": kind, "user": user, "conn": conn, "gateway": "gw-9", "ts": now - ago * 1000}
    server.events([event("connect", "s0", "a", 600), event("disconnect", "s0", "a", 500),
                   event("connect", "s1", "a", 400), event("connect", "s1", "b", 350), event("disconnect", "s1", "a", 300),
                   event("connect", "s2", "a", 200)])

    raw = check_user_endpoint(server, model, "start")
    check(raw["s0"]["last_seen"] is not None and raw["s1"]["online"] and raw["s1"]["last_seen"] is not None and raw["s2"]["online"],
          f"the subjects' presence is as posted: {raw}")
    check_snapshots(server, model, conversations, raw, "start")

    # Every contact viewer opens its conversations over a WebSocket.
    watchers = {}
    for viewer in sorted(v for v, (_, _, _, c) in VIEWERS.items() if c):
        watcher = Watcher(server, viewer)
        for subject in SUBJECTS:
            watcher.ws.send(json.dumps({"op": "open", "conversation": conversations[(viewer, subject)]}))
            opened = watcher.recv()
            expected = model.shown(subject, viewer, raw[subject])
            check(opened.get("type") == "opened" and opened["presence"] == {subject: expected},
                  f"{viewer} opens with {subject}: {opened}, expected {expected}")
        watchers[viewer] = watcher
    ok(f"{len(watchers)} sockets opened {len(conversations)} conversations; each opened frame shows what the rule allows")

    # Presence changes, one event at a time: each subject comes online or goes offline, and has a
    # second device come and leave while online (it stays online; only its last seen moves).
    steps = [("s0", "connect", "b"), ("s0", "connect", "c"), ("s0", "disconnect", "b"), ("s0", "disconnect", "c"),
             ("s1", "connect", "c"), ("s1", "disconnect", "c"), ("s1", "disconnect", "b"), ("s1", "connect", "d"),
             ("s2", "connect", "b"), ("s2", "disconnect", "b"), ("s2", "disconnect", "a")]
    steps = [(subject, event(kind, subject, conn, 100 - 5 * n)) for n, (subject, kind, conn) in enumerate(steps)]
    expected = {}
    for subject, line in steps:
        before = truth(server, subject)
        server.events([line])
        after = truth(server, subject)
        # A change of nothing shown to anyone (a device leaving while others stay) pushes nothing.
        if pushed(before, after) is None:
            continue
        for viewer in watchers:
            frame = pushed(model.shown(subject, viewer, before), model.shown(subject, viewer, after))
            if frame:
                expected.setdefault(viewer, []).append((subject, frame))
    expect_frames(watchers, expected, "presence changes")
    raw = check_user_endpoint(server, model, "after presence changes")
    check_snapshots(server, model, conversations, raw, "after presence changes")

    # Each subject changes its settings while the conversations are open: the rules move on by one and
    # the exceptions become the other viewers.
    expected = {}
    for k, subject in enumerate(SUBJECTS):
        was = {viewer: model.shown(subject, viewer, raw[subject]) for viewer in watchers}
        excepted = {v for v, (_, a, _, _) in VIEWERS.items() if not a}
        put_settings(server, model, subject, {"last_seen": (WHO[(k + 1) % 3], excepted), "online": (WHO[(k + 2) % 3], excepted)})
        for viewer in watchers:
            frame = pushed(was[viewer], model.shown(subject, viewer, raw[subject]))
            if frame:
                expected.setdefault(viewer, []).append((subject, frame))
    expect_frames(watchers, expected, "subjects' settings changed")
    check_user_endpoint(server, model, "after the subjects' settings changed")
    check_snapshots(server, model, conversations, raw, "after the subjects' settings changed")

    # Each watching viewer changes its own settings (reciprocity): what it is shown of the subjects moves.
    expected = {}
    for viewer in watchers:
        w, _, b, _ = VIEWERS[viewer]
        was = {subject: model.shown(subject, viewer, raw[subject]) for subject in SUBJECTS}
        excepted = set() if b else {"s1"}
        put_settings(server, model, viewer, {"last_seen": (WHO[(w + 1) % 3], excepted), "online": (WHO[w], excepted)})
        for subject in SUBJECTS:
            frame = pushed(was[subject], model.shown(subject, viewer, raw[subject]))
            if frame:
                expected.setdefault(viewer, []).append((subject, frame))
    expect_frames(watchers, expected, "viewers' own settings changed")
    check_user_endpoint(server, model, "after the viewers' settings changed")
    check_snapshots(server, model, conversations, raw, "after the viewers' settings changed")

    for watcher in watchers.values():
        watcher.ws.close()
    for connection in server.kept.values():
        connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["users", "run"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--tokens")
    parser.add_argument("--gateway", default="")
    args = parser.parse_args()
    if args.command == "users":
        print("\n".join(USERS))
        return
    run(args)
    print("passed: run", flush=True)


if __name__ == "__main__":
    main()
