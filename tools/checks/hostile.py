#!/usr/bin/env python3
"""Hostile requests against a running `presence serve --dev` (issue 18), with real clients: a plain
socket for HTTP/1.1 spoken byte for byte, Python `websockets` for the socket. Each scenario checks that
the attack is refused with the right status or close code and that a well-behaved client on another
connection is still served at once.

    hostile.py SCENARIO --port P --conversation ID --alice TOKEN --bob TOKEN [--carol TOKEN]

Scenarios: `tokens` (JWT algorithm confusion), `http` (oversized and repeated headers, Content-Length
with Transfer-Encoding), `frames` (fragmented and huge WebSocket messages), `missing` (many opens of
conversations that do not exist). Exits 1 with the reason at the first failure; prints "ok: ..." lines.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ws_scenarios import Client, RawHTTP, check, ok  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

# `presence serve --dev` signs and verifies with this secret (HS256).
DEV_SECRET = b"presencelog-development-secret-do-not-use-in-production"


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(header, subject, key=DEV_SECRET, signature=None):
    """A JWT with `header`, a valid body for `subject`, signed with HMAC-SHA256 of `key` unless
    `signature` (raw bytes) is given."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps({"sub": subject, "exp": int(time.time()) + 3600, "role": "user"}).encode())
    if signature is None:
        signature = hmac.new(key, (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64(signature)


def snapshot_request(args, token, extra=""):
    return (f"GET /v1/conversations/{args.conversation} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\n{extra}\r\n").encode()


def still_served(args, what):
    """A well-behaved client on a new connection is answered at once."""
    connection = RawHTTP(args, timeout=5)
    connection.send(snapshot_request(args, args.alice))
    status, _, body = connection.response()
    connection.close()
    check(status == 200 and args.conversation.encode() in body, f"after {what}, Alice's snapshot: {status} {body[:200]!r}")


def closed_after(connection, what):
    """The server closes `connection` (after any answer already read)."""
    try:
        while True:
            chunk = connection.sock.recv(65536)
            if not chunk:
                return
            connection.buffer += chunk
    except (ConnectionResetError, TimeoutError, OSError):
        return
    finally:
        check(b"HTTP/1.1 200" not in connection.buffer, f"{what}: answered a request after the refusal: {connection.buffer[:300]!r}")


def scenario_tokens(args):
    """JWT algorithm confusion: each forged token refused (401 over HTTP, on the fast path's route as on
    the codec's; error frame and close 4401 on the socket), none ever read as the user it names."""
    tokens = {
        "alg none, no signature": forged({"alg": "none", "typ": "JWT"}, "alice", signature=b""),
        "alg none, HS256's signature": forged({"alg": "none", "typ": "JWT"}, "alice"),
        "alg None (case)": forged({"alg": "None", "typ": "JWT"}, "alice", signature=b""),
        "RS256 header, HMAC with the HS256 secret": forged({"alg": "RS256", "typ": "JWT"}, "alice"),
        "HS512 header, HMAC-SHA256 signature": forged({"alg": "HS512", "typ": "JWT"}, "alice"),
        "HS256 signed with another secret": forged({"alg": "HS256", "typ": "JWT"}, "alice", key=b"x" * 48),
        "no alg": forged({"typ": "JWT"}, "alice"),
        "alg not a string": forged({"alg": 256, "typ": "JWT"}, "alice"),
    }
    for name, token in tokens.items():
        # Twice on one connection: the second request would be the fast path's if the first had
        # verified the token.
        connection = RawHTTP(args)
        connection.send(snapshot_request(args, token) * 2)
        for attempt in range(2):
            status, _, body = connection.response()
            check(status == 401 and b'"code":"unauthorized"' in body, f"{name} (request {attempt + 1}): {status} {body!r}")
        connection.close()
        connection = RawHTTP(args)
        connection.send(b"GET /v1/me/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n")
        status, _, body = connection.response()
        check(status == 401, f"{name} on /v1/me/conversations: {status} {body!r}")
        connection.close()
        socket = connect(f"ws://127.0.0.1:{args.port}/v1/ws", additional_headers={"Authorization": "Bearer " + token})
        frame = json.loads(socket.recv(timeout=5))
        check(frame.get("type") == "error" and frame["error"]["code"] == "unauthorized", f"{name} on the socket: {frame}")
        try:
            socket.recv(timeout=5)
            check(False, f"{name}: the socket stays open")
        except ConnectionClosed as closed:
            check(closed.rcvd is not None and closed.rcvd.code == 4401, f"{name}: closed with {closed.rcvd}")
        ok(f"{name}: 401 twice on one connection, 401 on /v1/me/conversations, close 4401 on the socket")
    still_served(args, "forged tokens")
    ok("the real token is served")


def scenario_http(args):
    """Oversized and repeated headers, and both body headers (request smuggling): refused with the
    status NIO's decoder gives, the connection closed, nothing after the refusal answered as a request."""
    smuggled = snapshot_request(args, args.alice)
    cases = [
        ("a header of 100 KiB", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n", (400, 431)),
        ("2,000 headers", b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(2000)) + b"\r\n", (400, 431)),
        ("two Content-Lengths", b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: "
         + str(len(smuggled) + 4).encode() + b"\r\n\r\nabcd" + smuggled, (400,)),
        ("Content-Length with Transfer-Encoding: chunked", b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, (400,)),
        ("Transfer-Encoding twice", b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, (400,)),
        ("a Content-Length that is not a number", b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd" + smuggled, (400,)),
    ]
    for name, data, statuses in cases:
        connection = RawHTTP(args)
        connection.send(data)
        status, _, body = connection.response()
        check(status in statuses, f"{name}: {status} {body[:200]!r}")
        closed_after(connection, name)
        connection.close()
        still_served(args, name)
        ok(f"{name}: {status}, connection closed, no smuggled request answered")
    # Two Authorization headers are one field of two values to the route (swift-http-types joins
    # them), which is no token: refused, whichever comes first, and never read as either user.
    for first, second in [(args.carol, args.alice), (args.alice, args.carol)]:
        connection = RawHTTP(args)
        connection.send(snapshot_request(args, first, extra=f"Authorization: Bearer {second}\r\n"))
        status, _, body = connection.response()
        check(status == 401 and b'"code":"unauthorized"' in body, f"two Authorization headers: {status} {body[:200]!r}")
        connection.close()
    ok("two Authorization headers, in either order: 401")


def scenario_frames(args):
    """A message in fragments is read whole; fragments adding up past 16 KiB close with 1009; the other
    sockets are not affected."""
    bob = Client(args, args.bob)
    bob.ready()
    bob.send({"op": "open", "conversation": args.conversation})
    check(bob.recv().get("type") == "opened", "Bob opens the conversation")

    alice = Client(args, args.alice)
    alice.ready()
    text = json.dumps({"op": "open", "conversation": args.conversation})
    alice.ws.send([text[i:i + 3] for i in range(0, len(text), 3)])
    frame = alice.recv()
    check(frame.get("type") == "opened", f"an open in {len(text) // 3 + 1} fragments: {frame}")
    ok("a message in fragments is read as one")

    # A message of 20 KiB in 1 KiB fragments: over the 16 KiB limit once assembled.
    hostile = Client(args, args.alice)
    hostile.ready()
    hostile.ws.send(["x" * 1024 for _ in range(20)])
    try:
        while True:
            hostile.ws.recv(timeout=5)
    except ConnectionClosed as closed:
        check(closed.rcvd is not None and closed.rcvd.code == 1009, f"closed with 1009 (too big): {closed.rcvd}")
    except TimeoutError:
        check(False, "20 KiB in fragments: the socket was not closed")
    ok("20 KiB in 1 KiB fragments: close 1009")

    # Alice's other socket and Bob's still work: Bob's message reaches Alice.
    bob.send({"op": "send", "conversation": args.conversation, "content": "still here", "client_id": "c1"})
    seen = set()
    deadline = time.time() + 5
    while seen != {"sent", "message"} and time.time() < deadline:
        for client, expect in [(bob, "sent"), (alice, "message")]:
            if expect not in seen:
                frame = client.recv()
                if frame.get("type") == expect:
                    seen.add(expect)
    check(seen == {"sent", "message"}, f"after the hostile socket: {seen}")
    ok("the other sockets are not affected: Bob's message is sent and pushed to Alice")
    still_served(args, "hostile frames")


def scenario_missing(args, count=20000):
    """Many opens of conversations that do not exist, on one socket: each refused (not_found), the
    socket stays usable, the server's memory does not grow with them, others are served."""
    carol = Client(args, args.carol)
    carol.ready()
    batch = 500
    for start in range(0, count, batch):
        for i in range(start, start + batch):
            carol.ws.send(json.dumps({"op": "open", "conversation": f"conv_missing_{i}"}))
        for i in range(start, start + batch):
            frame = carol.recv()
            check(frame.get("type") == "error" and frame["error"]["code"] == "not_found"
                  and frame.get("conversation") == f"conv_missing_{i}", f"open {i}: {frame}")
    ok(f"{count} opens of missing conversations: each not_found, in order")
    carol.send({"op": "open", "conversation": args.conversation})
    frame = carol.recv()
    check(frame.get("type") == "error" and frame["error"]["code"] == "forbidden", f"then a real one, not hers: {frame}")
    alice = Client(args, args.alice)
    alice.ready()
    alice.send({"op": "open", "conversation": args.conversation})
    check(alice.recv().get("type") == "opened", "Alice opens her conversation")
    still_served(args, f"{count} missing opens")
    ok("the socket and the server go on")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["tokens", "http", "frames", "missing"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conversation", default="")
    parser.add_argument("--count", type=int, default=20000)
    for name in ["alice", "bob", "carol", "gateway", "expired"]:
        parser.add_argument("--" + name, default="")
    args = parser.parse_args()
    if args.scenario == "missing":
        scenario_missing(args, args.count)
    else:
        globals()["scenario_" + args.scenario](args)
    print("passed: " + args.scenario, flush=True)


if __name__ == "__main__":
    main()
