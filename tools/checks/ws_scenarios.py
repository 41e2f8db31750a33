#!/usr/bin/env python3
"""WebSocket (and raw HTTP/1.1) scenarios against a running `presence serve`, with real clients
(Python `websockets`, and a plain socket for pipelined requests).

The end-to-end tests (Tests/EndToEndTests/WebSocketTests.swift) start the server, mint the tokens and
create the conversation, then run one scenario:

    ws_scenarios.py SCENARIO --port P --conversation ID --alice TOKEN --bob TOKEN [--carol TOKEN]
                    [--gateway TOKEN] [--expired TOKEN]

Each scenario asserts what a chat client relies on and exits 1 with the reason on the first failure;
it prints "ok: ..." lines as it goes. `hold` connects as Bob, prints the ready frame and waits to be
killed (for the kill -9 test).
"""
import argparse
import json
import sys
import time
import urllib.request
import warnings

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from report import check, fail, ok  # the same directory

# The clients here close their sockets explicitly; newer websockets releases warn about that style.
warnings.filterwarnings("ignore", category=DeprecationWarning)

QUIET = 0.4  # seconds of silence that count as "nothing was pushed"


class Client:
    def __init__(self, args, token, use_header=True):
        url = f"ws://127.0.0.1:{args.port}/v1/ws"
        if use_header:
            self.ws = connect(url, additional_headers={"Authorization": "Bearer " + token})
        else:
            self.ws = connect(url + "?token=" + token)

    def recv(self, timeout=5.0):
        try:
            return json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            fail(f"no frame within {timeout}s")

    def nothing(self, what):
        try:
            frame = self.ws.recv(timeout=QUIET)
        except TimeoutError:
            ok(what)
            return
        fail(f"{what}: but got {frame}")

    def send(self, obj):
        self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    def ready(self):
        frame = self.recv()
        check(frame.get("type") == "ready", f"first frame is ready: {frame}")
        return frame

    def close(self):
        self.ws.close()


def http(args, method, path, token, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{args.port}{path}", method=method,
                                     data=body.encode() if body is not None else None,
                                     headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def post_events(args, lines):
    return http(args, "POST", "/v1/events", args.gateway, "\n".join(json.dumps(line) for line in lines) + "\n")


def now_ms():
    return int(time.time() * 1000)


def scenario_push(args):
    """Bob's first device coming and his last going are pushed; the middle one is not."""
    alice = Client(args, args.alice)
    alice.ready()
    alice.send({"op": "open", "conversation": args.conversation})
    opened = alice.recv()
    check(opened.get("type") == "opened" and opened.get("conversation") == args.conversation, f"opened: {opened}")
    check(opened["presence"]["bob"]["online"] is False, f"bob starts offline: {opened}")
    check("alice" not in opened["presence"], "the snapshot leaves out the caller")
    cursor = opened["presence_cursor"]
    check(opened.get("last_seq") == 0, f"no message yet: {opened}")
    ok(f"opened the conversation at presence_cursor {cursor}")

    posted = http(args, "POST", f"/v1/conversations/{args.conversation}/messages", args.bob, json.dumps({"content": "hey \"alice\""}))
    message = alice.recv()
    check(message == {"type": "message", "conversation": args.conversation, "seq": posted["seq"], "sender": "bob",
                      "content": "hey \"alice\"", "ts": posted["ts"]}, f"bob's message is pushed once durable: {message}")
    ok("a new message is pushed to the members that have the conversation open")

    phone = Client(args, args.bob, use_header=False)
    phone_ready = phone.ready()
    push = alice.recv()
    check(push == {"type": "presence", "user": "bob", "online": True, "offset": phone_ready["offset"]},
          f"push for bob's first device, at his connect's offset {phone_ready['offset']}: {push}")
    check(push["offset"] >= cursor, "the push continues from the cursor")
    ok("bob's first device: online pushed at the connect's offset")

    laptop = Client(args, args.bob)
    laptop.ready()
    alice.nothing("bob's second device coming: nothing pushed")
    laptop.close()
    alice.nothing("bob's second device leaving: nothing pushed")

    phone.close()
    push = alice.recv()
    check(push.get("type") == "presence" and push.get("user") == "bob" and push.get("online") is False,
          f"push for bob's last device leaving: {push}")
    check(isinstance(push.get("last_seen"), str) and push["last_seen"].endswith("Z"), f"last_seen is ISO-8601: {push}")
    state = http(args, "GET", f"/v1/users/bob/presence", args.alice)
    check(state["online"] is False and state["last_seen"] == push["last_seen"], f"the push agrees with GET presence: {state}")
    check(push["offset"] < state["presence_cursor"], "the push's offset is inside the state GET presence reflects")
    ok("bob's last device leaving: offline pushed with last_seen")

    alice.send({"op": "close", "conversation": args.conversation})
    check(alice.recv() == {"type": "closed", "conversation": args.conversation}, "closed")
    again = Client(args, args.bob)
    again.ready()
    alice.nothing("after close: nothing pushed")
    again.close()
    alice.close()


def scenario_cursor(args):
    """Pushes continue from the snapshot's cursor: increasing offsets, each the event that changed Bob."""
    snapshot = http(args, "GET", f"/v1/conversations/{args.conversation}", args.alice)
    alice = Client(args, args.alice)
    alice.ready()
    alice.send({"op": "open", "conversation": args.conversation})
    opened = alice.recv()
    check(opened["type"] == "opened" and opened["presence_cursor"] >= snapshot["presence_cursor"],
          f"opened cursor {opened.get('presence_cursor')} >= snapshot cursor {snapshot['presence_cursor']}")
    base = now_ms()
    expected = []  # (offset, online) of each change of Bob's shown state
    online = opened["presence"]["bob"]["online"]
    for round in range(6):
        ts = base + round * 10
        # Other users' events around Bob's, in the same requests.
        lines = [{"type": "connect", "user": f"other{round}", "conn": "c", "gateway": "gw-9", "ts": ts},
                 {"type": "connect", "user": "bob", "conn": f"d{round}", "gateway": "gw-9", "ts": ts + 1},
                 {"type": "connect", "user": "bob", "conn": f"e{round}", "gateway": "gw-9", "ts": ts + 2}]
        reply = post_events(args, lines)
        expected.append((reply["first_offset"] + 2, True))  # the batch's last bob event (one push per commit)
        lines = [{"type": "disconnect", "user": "bob", "conn": f"d{round}", "gateway": "gw-9", "ts": ts + 3},
                 {"type": "disconnect", "user": f"other{round}", "conn": "c", "gateway": "gw-9", "ts": ts + 4}]
        reply = post_events(args, lines)
        # Bob keeps device e open: nothing to push.
        reply = post_events(args, [{"type": "disconnect", "user": "bob", "conn": f"e{round}", "gateway": "gw-9", "ts": ts + 5}])
        expected.append((reply["first_offset"], False))
    check(online is False, "bob starts offline")
    seen = []
    for offset, online in expected:
        push = alice.recv()
        check(push.get("type") == "presence" and push.get("user") == "bob", f"a push for bob: {push}")
        check(push["offset"] == offset and push["online"] == online,
              f"push {len(seen) + 1}: expected offset {offset} online {online}, got {push}")
        seen.append(push["offset"])
    check(seen == sorted(set(seen)), f"offsets increase with no duplicate: {seen}")
    check(seen[0] >= opened["presence_cursor"], "the first push is at or after the cursor")
    alice.nothing("no push beyond the changes")
    alice.close()
    ok(f"{len(seen)} pushes at the offsets of the events that changed bob, in log order, from cursor {opened['presence_cursor']}")


def expect_refused(args, client, code, close_code):
    frame = client.recv()
    check(frame.get("type") == "error" and frame["error"]["code"] == code, f"error frame {code}: {frame}")
    try:
        client.ws.recv(timeout=5)
        fail("the socket stays open")
    except ConnectionClosed as closed:
        check(closed.rcvd is not None and closed.rcvd.code == close_code, f"closed with {close_code}: {closed.rcvd}")
    except TimeoutError:
        fail("the socket was not closed")


def scenario_refused(args):
    """Tokens and bad frames."""
    url = f"ws://127.0.0.1:{args.port}/v1/ws"
    for name, make in [("no token", lambda: connect(url)),
                       ("a bad token", lambda: connect(url + "?token=not.a.token")),
                       ("an expired token", lambda: connect(url, additional_headers={"Authorization": "Bearer " + args.expired}))]:
        client = Client.__new__(Client)
        client.ws = make()
        expect_refused(args, client, "unauthorized", 4401)
        ok(f"{name}: error frame, close 4401")
    client = Client.__new__(Client)
    client.ws = connect(url + "?token=" + args.gateway)
    expect_refused(args, client, "forbidden", 4403)
    ok("a gateway token: error frame, close 4403")

    carol = Client(args, args.carol)
    carol.ready()
    carol.send({"op": "open", "conversation": args.conversation})
    frame = carol.recv()
    check(frame.get("type") == "error" and frame["error"]["code"] == "forbidden", f"non-member: {frame}")
    ok("a non-member opening the conversation: forbidden")
    for bad, code in [("{not json", "invalid_json"), ("[1,2]", "invalid_json"),
                      (json.dumps({"op": "open"}), "invalid_request"),
                      (json.dumps({"op": "open", "conversation": 7}), "invalid_request"),
                      (json.dumps({"op": "subscribe", "conversation": args.conversation}), "invalid_request"),
                      (json.dumps({"op": "open", "conversation": "conv_nope"}), "not_found"),
                      (b"\x00\x01", "invalid_frame")]:
        carol.send(bad)
        frame = carol.recv()
        check(frame.get("type") == "error" and frame["error"]["code"] == code, f"{bad!r}: expected {code}, got {frame}")
    carol.send(json.dumps({"op": "teleport"}))
    frame = carol.recv()
    check(frame.get("type") == "error" and "unknown op 'teleport'" in frame["error"]["message"], f"unknown op: {frame}")
    ok("malformed frames: error frames naming the problem, the socket stays open")
    carol.send("x" * (64 * 1024))
    try:
        carol.ws.recv(timeout=5)
        fail("an oversize frame closes the socket")
    except ConnectionClosed as closed:
        check(closed.rcvd is not None and closed.rcvd.code == 1009, f"closed with 1009 (too big): {closed.rcvd}")
    ok("an oversize frame: close 1009")


def scenario_slow(args):
    """A client that stops reading is cut off with 4008 once its queue is full, and the server goes on."""
    url = f"ws://127.0.0.1:{args.port}/v1/ws"
    alice = Client.__new__(Client)
    # max_queue=1: the client library stops reading the socket as soon as one frame waits unread.
    alice.ws = connect(url, additional_headers={"Authorization": "Bearer " + args.alice}, max_queue=1)
    alice.ready()
    alice.send({"op": "open", "conversation": args.conversation})
    check(alice.recv()["type"] == "opened", "opened")
    big = "x" * 16000
    for n in range(600):  # about 10 MB of pushes: more than the socket buffers hold
        http(args, "POST", f"/v1/conversations/{args.conversation}/messages", args.bob, json.dumps({"content": f"{n} {big}"}))
    received = 0
    try:
        while True:
            frame = json.loads(alice.ws.recv(timeout=10))
            check(frame["type"] == "message" and frame["seq"] == received + 1, f"messages in order, none skipped: {frame['type']} {frame.get('seq')}")
            received += 1
    except ConnectionClosed as closed:
        check(closed.rcvd is not None and closed.rcvd.code == 4008, f"closed with 4008: {closed.rcvd}")
    except TimeoutError:
        fail(f"never cut off ({received} messages read)")
    check(0 < received < 600, f"cut off part way: {received} of 600 messages")
    ok(f"a client that stopped reading got {received} messages in order, then close 4008")
    state = http(args, "GET", "/v1/users/bob/presence", args.alice)
    check("online" in state, "the server still answers")
    again = Client(args, args.alice)
    again.ready()
    again.send({"op": "open", "conversation": args.conversation})
    reopened = again.recv()
    check(reopened["type"] == "opened" and reopened["last_seq"] == 600, f"reconnecting gives the state to resume from: {reopened}")
    again.close()
    ok("after reconnecting, opened carries last_seq 600")


class RawHTTP:
    """One HTTP/1.1 connection spoken byte for byte, to see what the server makes of raw requests."""

    def __init__(self, args, timeout=10):
        import socket
        self.sock = socket.create_connection(("127.0.0.1", args.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.answered = 0

    def send(self, *pieces, pause=0):
        """Sends each piece as is, waiting `pause` seconds after each."""
        for piece in pieces:
            self.sock.sendall(piece)
            if pause:
                time.sleep(pause)

    def _more(self, why):
        chunk = self.sock.recv(65536)
        check(chunk, why)
        self.buffer += chunk

    def response(self):
        """Reads the next response: (status, headers, body)."""
        while b"\r\n\r\n" not in self.buffer:
            self._more(f"the server closed after {self.answered} responses")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._more("the server closed mid-body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        self.answered += 1
        return int(lines[0].split()[1]), headers, body

    def close(self):
        self.sock.close()


def raw_http(args, data, replies):
    """Sends `data` as is on one connection and reads `replies` HTTP responses: [(status, headers, body)]."""
    connection = RawHTTP(args)
    connection.send(data)
    answers = [connection.response() for _ in range(replies)]
    connection.close()
    return answers


def scenario_snapshot(args):
    """The snapshot answered on the event loop (a token verified before) equals the route's answer, and
    requests pipelined on one connection are answered in order."""
    get = lambda token, query="": (f"GET /v1/conversations/{args.conversation}{query} HTTP/1.1\r\nHost: x\r\n"
                                   f"Authorization: Bearer {token}\r\n\r\n").encode()
    def fast_path_count():
        request = urllib.request.Request(f"http://127.0.0.1:{args.port}/metrics", headers={"Authorization": "Bearer " + args.alice})
        text = urllib.request.urlopen(request, timeout=10).read().decode()
        return sum(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith("presence_snapshot_fast_path_total"))
    # The first use of a token goes through the router (and verifies it); later ones, one at a time on
    # a connection, are answered on the event loop.
    (s1, h1, b1), = raw_http(args, get(args.alice), 1)
    before = fast_path_count()
    (s2, h2, b2), = raw_http(args, get(args.alice), 1)
    (s3, h3, b3), = raw_http(args, get(args.alice, "?after_seq=0&limit=1"), 1)
    check(fast_path_count() == before + 2, f"the last two took the fast path ({before} -> {fast_path_count()})")
    check(s1 == s2 == s3 == 200, f"statuses {s1} {s2} {s3}")
    check(b1 == b2, f"same body both ways: {b1!r} vs {b2!r}")
    for name in ["content-type", "content-length", "date", "server"]:
        check(name in h1 and name in h2, f"{name} in both: {h1} / {h2}")
    check(h1["content-type"] == h2["content-type"] == "application/json", "JSON")
    check(json.loads(b3)["has_more"] is True and len(json.loads(b3)["messages"]) == 1, f"limit honoured: {b3!r}")
    ok("a snapshot answered on the event loop is the route's answer")
    # A POST and then a GET on one connection, sent together: the GET waits for the POST's answer and
    # sees its message.
    post_head = lambda length: (f"POST /v1/conversations/{args.conversation}/messages HTTP/1.1\r\nHost: x\r\n"
                                f"Authorization: Bearer {args.alice}\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {length}\r\n\r\n").encode()
    post_body = json.dumps({"content": "pipelined"}).encode()
    post = post_head(len(post_body)) + post_body
    (sp, _, bp), (sg, _, bg) = raw_http(args, post + get(args.alice), 2)
    check(sp == 201 and sg == 200, f"statuses {sp} {sg}")
    seq = json.loads(bp)["seq"]
    check(json.loads(bg)["messages"][-1]["seq"] == seq, f"the GET sees the POST before it: {bg!r}")
    ok("pipelined requests are answered in order")
    # Errors keep the route's form, whichever way the request would have gone.
    (s404, _, b404), (s403, _, b403), (s400, _, b400) = raw_http(args,
        get(args.alice).replace(args.conversation.encode(), b"conv_nope") + get(args.carol) + get(args.alice, "?limit=0"), 3)
    check(s404 == 404 and b"not_found" in b404, f"404: {s404} {b404!r}")
    check(s403 == 403 and b"forbidden" in b403, f"403: {s403} {b403!r}")
    check(s400 == 400 and b"invalid_request" in b400, f"400: {s400} {b400!r}")
    ok("unknown conversation, non-member and bad query answer as the route does")
    # The fast path reads raw bytes ahead of the HTTP codec: requests split anywhere, requests it does
    # not take, and bodies that look like requests must all come out as the codec would have them.
    request = get(args.alice)
    (_, _, current), = raw_http(args, request, 1)  # the snapshot now, with the pipelined message
    before = fast_path_count()
    split = RawHTTP(args)
    split.send(*[request[i:i + 1] for i in range(len(request))], pause=0.001)
    s, _, b = split.response()
    split.close()
    check(s == 200 and b == current and fast_path_count() == before + 1, f"byte by byte: {s} {b!r}, fast path {before} -> {fast_path_count()}")
    ok("a request that arrives a byte at a time is answered on the fast path")
    def codec_only(data):
        """Sends `data`, gives the server a moment, and returns what it answered, if anything."""
        connection = RawHTTP(args, timeout=1)
        connection.send(data)
        try:
            answer = connection.sock.recv(65536)
        except TimeoutError:
            answer = b""
        connection.close()
        return answer
    # Bare-LF line ends and garbage are the codec's to judge, and it refuses them: a 400 with the JSON
    # error body, then the connection closes (it used to hang, unanswered).
    def refused(data):
        connection = RawHTTP(args, timeout=5)
        connection.send(data)
        status, headers, body = connection.response()
        closed = connection.sock.recv(1) == b""
        connection.close()
        return status, headers, body, closed
    for name, data in [("bare-LF line ends", request.replace(b"\r\n", b"\n")), ("a request line that is not HTTP", b"GARBAGE\r\n\r\n"),
                       ("an unknown method", b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n"),
                       ("two Content-Lengths", request[:-2] + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef")]:
        before = fast_path_count()
        status, headers, body, closed = refused(data)
        check(status == 400 and json.loads(body)["error"]["code"] == "bad_request" and closed and fast_path_count() == before,
              f"{name}: {status} {body!r}, closed {closed}, fast path {before} -> {fast_path_count()}")
        ok(f"{name}: 400 ({json.loads(body)['error']['message']}) and the connection closes")
    # A request that declares a body over the limit is refused from its head, without waiting for a
    # body that may never come.
    started = time.time()
    status, _, body, closed = refused(post_head(1 << 40))
    check(status == 413 and json.loads(body)["error"]["code"] == "body_too_large" and closed and time.time() - started < 3,
          f"declared 1 TiB body: {status} {body!r}, closed {closed} after {time.time() - started:.1f} s")
    ok("a body declared over the limit: 413 at once, and the connection closes")
    before = fast_path_count()
    answer = codec_only(request[:-2] + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    check(not answer.startswith(b"HTTP/1.1 200") and fast_path_count() == before,
          f"Content-Length with Transfer-Encoding: {answer[:40]!r}, fast path {before} -> {fast_path_count()}")
    ok(f"Content-Length with Transfer-Encoding is left to the codec ({answer[:12]!r})")
    before = fast_path_count()
    smuggler = RawHTTP(args)
    smuggler.send(post_head(len(request)), request, pause=0.05)
    s, _, b = smuggler.response()
    smuggler.close()
    check(s == 400 and b"invalid" in b and fast_path_count() == before,
          f"a body that looks like a GET is a body: {s} {b!r}, fast path {before} -> {fast_path_count()}")
    ok("a request body that looks like a snapshot GET is the POST's body, not a request")
    upgrade = (f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {args.alice}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    upgrading = RawHTTP(args)
    upgrading.send(request)
    s, _, _ = upgrading.response()
    check(s == 200, f"snapshot first: {s}")
    upgrading.send(upgrade)
    s, _, _ = upgrading.response()
    check(s == 101, f"upgrade after a fast-path answer: {s}")
    upgrading.close()
    ok("a WebSocket upgrade after a fast-path answer on the same connection switches protocols")
    # A handshake NIO's upgrader would drop without a word (no key, a version other than 13) or accept
    # though RFC 6455 forbids it (a key that is not 16 bytes of base64) gets an answer, and the
    # connection closes.
    key, version = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "Sec-WebSocket-Version: 13\r\n"
    for name, headers, expected, code in [("no key", version, 400, "bad_request"),
                                          ("a key that is not 16 bytes of base64", "Sec-WebSocket-Key: not-base64!!\r\n" + version, 400, "bad_request"),
                                          ("two keys", key + key + version, 400, "bad_request"),
                                          ("no version", key, 426, "upgrade_required"),
                                          ("version 8", key + "Sec-WebSocket-Version: 8\r\n", 426, "upgrade_required")]:
        data = (f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {args.alice}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\n{headers}\r\n").encode()
        status, headers_back, body, closed = refused(data)
        check(status == expected and json.loads(body)["error"]["code"] == code and closed,
              f"{name}: {status} {body!r}, closed {closed}")
        if expected == 426:
            check(headers_back.get("sec-websocket-version") == "13", f"{name}: 426 without Sec-WebSocket-Version: 13: {headers_back}")
        ok(f"a WebSocket handshake with {name}: {status} and the connection closes")
    # A connection keeps its last snapshot; it must never answer it once a message or a presence
    # change has come after it.
    keep = RawHTTP(args)
    def again():
        keep.send(request)
        return json.loads(keep.response()[2])
    # The upgraded socket above was closed: its disconnect may still be on its way into the log.
    second = again()
    for _ in range(40):
        first, second = second, again()
        if first == second:
            break
        time.sleep(0.05)
    check(first == second, f"nothing changed: the same snapshot ({first} / {second})")
    posted = json.dumps({"content": "after the cache"}).encode()
    (sp, _, _), = raw_http(args, post_head(len(posted)) + posted, 1)
    check(sp == 201, f"posted: {sp}")
    third = again()
    check(third["messages"][-1]["content"] == "after the cache", f"a new message shows at once: {third['messages'][-1]}")
    bob = Client(args, args.bob)
    bob.ready()
    fourth = again()
    check(fourth["presence"]["bob"]["online"] is True and fourth["presence_cursor"] > third["presence_cursor"],
          f"Bob's connect shows at once: {fourth['presence']} cursor {third['presence_cursor']} -> {fourth['presence_cursor']}")
    bob.close()
    keep.close()
    ok("a connection's kept snapshot gives way to a new message and to a presence change at once")


def scenario_send(args):
    """Messages sent over the socket: answered with their seq once durable; a retried client_id is not
    posted twice, on the same socket or a new one."""
    alice = Client(args, args.alice)
    alice.ready()
    alice.send({"op": "send", "conversation": args.conversation, "content": "over the socket", "client_id": "c-1"})
    sent = alice.recv()
    check(sent.get("type") == "sent" and sent.get("conversation") == args.conversation and sent.get("client_id") == "c-1"
          and sent.get("seq") == 1 and str(sent.get("ts", "")).endswith("Z"), f"sent with its seq: {sent}")
    ok("a message sent over the socket: answered with seq 1")
    alice.send({"op": "send", "conversation": args.conversation, "content": "over the socket", "client_id": "c-1"})
    again = alice.recv()
    check(again == sent, f"the retry gets the first answer: {again} vs {sent}")
    alice.close()
    other = Client(args, args.alice)
    other.ready()
    other.send({"op": "send", "conversation": args.conversation, "content": "over the socket", "client_id": "c-1"})
    check(other.recv() == sent, "a retry on a new socket gets the first answer")
    other.send({"op": "send", "conversation": args.conversation, "content": "second"})
    second = other.recv()
    check(second.get("type") == "sent" and second.get("seq") == 2 and second.get("client_id") is None, f"without client_id: {second}")
    ok("a retried client_id is not posted twice, on the same socket or another")
    snapshot = http(args, "GET", f"/v1/conversations/{args.conversation}", args.bob)
    check([m["content"] for m in snapshot["messages"]] == ["over the socket", "second"], f"two messages in all: {snapshot}")
    for bad, code in [({"op": "send", "conversation": args.conversation}, "invalid_request"),
                      ({"op": "send", "conversation": args.conversation, "content": ""}, "invalid_request"),
                      ({"op": "send", "conversation": args.conversation, "content": "x", "client_id": 5}, "invalid_request"),
                      ({"op": "send", "conversation": "conv_nope", "content": "x"}, "not_found")]:
        other.send(bad)
        frame = other.recv()
        check(frame.get("type") == "error" and frame["error"]["code"] == code, f"{bad}: expected {code}, got {frame}")
    other.send('{"op":"send","conversation":"%s","content":"a","content":"b"}' % args.conversation)
    frame = other.recv()
    check(frame.get("type") == "error" and "appears twice" in frame["error"]["message"], f"duplicate field: {frame}")
    other.close()
    carol = Client(args, args.carol)
    carol.ready()
    carol.send({"op": "send", "conversation": args.conversation, "content": "let me in"})
    frame = carol.recv()
    check(frame.get("type") == "error" and frame["error"]["code"] == "forbidden", f"a non-member: {frame}")
    carol.close()
    snapshot = http(args, "GET", f"/v1/conversations/{args.conversation}", args.bob)
    check(len(snapshot["messages"]) == 2, f"nothing refused was posted: {snapshot}")
    ok("bad sends: error frames, nothing posted")


def scenario_hold(args):
    """Connects as Bob, prints the ready frame, and holds the socket until the server goes away."""
    bob = Client(args, args.bob)
    print(json.dumps(bob.ready()), flush=True)
    try:
        while True:
            bob.ws.recv(timeout=600)
    except (ConnectionClosed, TimeoutError):
        sys.exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["push", "cursor", "refused", "slow", "snapshot", "send", "hold"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conversation", default="")
    for name in ["alice", "bob", "carol", "gateway", "expired"]:
        parser.add_argument("--" + name, default="")
    args = parser.parse_args()
    globals()["scenario_" + args.scenario](args)
    print("passed: " + args.scenario, flush=True)


if __name__ == "__main__":
    main()
