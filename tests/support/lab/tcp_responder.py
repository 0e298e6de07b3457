#!/usr/bin/env python3
"""Minimal HTTP/TCP responder with a per-listener answer delay.

Runs inside the lab's `net` namespace:

    tcp_responder.py --listen 198.19.0.1:80=0.020 --listen [fd00:19::1]:80=0.020

Each connection: read the request head (and a Content-Length body), wait the delay, answer
`200 OK` with `Connection: close`. A client that sends nothing within 2 s is just closed.
Stdlib only. Prints "ready" once every listener is bound.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import threading
import time

READ_TIMEOUT_S = 2.0
MAX_HEAD = 64 * 1024


def parse_listen(spec: str) -> tuple[str, int, float]:
    hostport, sep, delay = spec.rpartition("=")
    if not sep:
        raise SystemExit(f"--listen must be HOST:PORT=DELAY_S, got {spec!r}")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    ipaddress.ip_address(host)  # literals only: never resolve names
    return host, int(port), float(delay)


def read_request(conn: socket.socket) -> bytes | None:
    """Return the request head, or None if the client sent no complete head in time."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEAD:
                return None
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        # Drain a request body so that closing the socket sends FIN, not RST (unread data
        # would make the kernel reset the connection and the client could lose our answer).
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head
    except (OSError, ValueError):
        return None


def handle(conn: socket.socket, delay_s: float) -> None:
    with conn:
        conn.settimeout(READ_TIMEOUT_S)
        head = read_request(conn)
        if head is None:
            return
        time.sleep(delay_s)
        method = head.split(b" ", 1)[0]
        local = conn.getsockname()[0]
        body = f"unhindered lab target {local}\n".encode()
        response = (
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            + f"Content-Length: {len(body)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
            + (b"" if method == b"HEAD" else body)
        )
        try:
            conn.sendall(response)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(listener: socket.socket, delay_s: float) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            print(f"tcp_responder: accept failed: {exc}", file=sys.stderr)
            time.sleep(0.1)
            continue
        threading.Thread(target=handle, args=(conn, delay_s), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", default=[], metavar="HOST:PORT=DELAY_S")
    args = parser.parse_args(argv)

    threads = []
    for spec in args.listen:
        host, port, delay_s = parse_listen(spec)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(256)
        threads.append(threading.Thread(target=serve, args=(listener, delay_s), daemon=True))
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()
    if not threads:
        threading.Event().wait()


if __name__ == "__main__":
    main()
