#!/usr/bin/env python3
"""WebSocket clients that stop answering: each opens /v1/ws, reads up to its `ready` frame, then never
reads again, so it never answers the server's close frame (a client whose event loop is blocked).

Prints `conn <id>` for each socket (the conn of its `ready` frame), then `ready N`, then holds the
sockets open without reading until --hold seconds have passed or it is killed. Used by
ShutdownTests: `presence serve` must still stop within its --shutdown-timeout.

    .venv/bin/python tools/checks/mute_clients.py --port 8080 --token TOKEN --clients 20
"""
import argparse
import base64
import json
import os
import socket
import sys
import time


def read_exact(sock, buffer, count):
    """`count` bytes from `buffer` then the socket; returns (bytes, rest)."""
    while len(buffer) < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the socket before the ready frame")
        buffer += chunk
    return buffer[:count], buffer[count:]


def read_frame(sock, buffer):
    """One unmasked server frame: (opcode, payload, rest)."""
    head, buffer = read_exact(sock, buffer, 2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        extended, buffer = read_exact(sock, buffer, 2)
        length = int.from_bytes(extended, "big")
    elif length == 127:
        extended, buffer = read_exact(sock, buffer, 8)
        length = int.from_bytes(extended, "big")
    payload, buffer = read_exact(sock, buffer, length)
    return opcode, payload, buffer


def open_socket(port, token, timeout):
    """Connects, upgrades, reads until `ready`; returns (socket, conn)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the socket during the handshake")
        buffer += chunk
    head, buffer = buffer.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        raise ConnectionError(f"no upgrade: {status.decode(errors='replace')}")
    while True:
        opcode, payload, buffer = read_frame(sock, buffer)
        if opcode == 0x8:
            raise ConnectionError(f"closed before ready: {payload!r}")
        if opcode == 0x1:
            frame = json.loads(payload)
            if frame.get("type") == "ready":
                return sock, frame["conn"]
            raise ConnectionError(f"expected ready, got {payload!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True, help="a user token (presence token --dev --user ...)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--hold", type=float, default=120, help="seconds to hold the sockets, at most")
    parser.add_argument("--timeout", type=float, default=30, help="seconds each socket may take to get ready")
    args = parser.parse_args()
    sockets = []
    for _ in range(args.clients):
        sock, conn = open_socket(args.port, args.token, args.timeout)
        sockets.append(sock)
        print(f"conn {conn}", flush=True)
    print(f"ready {len(sockets)}", flush=True)
    # Nothing reads from here on: the server's close frame stays unanswered in the kernel's buffer.
    time.sleep(args.hold)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError) as error:
        print(f"mute_clients.py: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
