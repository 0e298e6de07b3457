#!/usr/bin/env python3
"""HTTP and HTTPS responder for the http check's lab tests. Stdlib only.

Runs inside the lab's `net` namespace, on IP literals only:

    https_responder.py --listen 198.19.0.1:8080 \
        --listen-tls 198.19.0.1:8443,valid.pem,valid.key

Every answer carries `Connection: close`. Routes (GET and HEAD; HEAD gets no body):

    /ok                           200, Content-Length, body "unhindered documents: ok"
    /status/CODE                  that status, short body
    /slow?delay=S                 waits S seconds before the status line, then as /ok
    /chunked?chunks=N&delay=S     200, chunked, N chunks S seconds apart
    /close?bytes=N                200, no length: N bytes then close (default 1000)
    /big?bytes=N                  200, Content-Length N
    /headers                      200, the request head as the body
    /redirect?status=C&to=URL     status C (302 by default) with Location: URL, verbatim
    /no-location                  302 without a Location
    anything else                 404

Prints "ready" once every listener is bound.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import ssl
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

READ_TIMEOUT_S = 5.0
MAX_HEAD = 64 * 1024
OK_BODY = b"unhindered documents: ok\n"
REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 303: "See Other",
           307: "Temporary Redirect", 308: "Permanent Redirect", 404: "Not Found",
           503: "Service Unavailable"}


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    ipaddress.ip_address(host)  # literals only: never resolve names
    return host, int(port)


def read_head(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data.partition(b"\r\n\r\n")[0]


def head_bytes(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
             *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def simple(status: int, body: bytes, extra: list[tuple[str, str]] | None = None) -> bytes:
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
               *(extra or [])]
    return head_bytes(status, headers) + body


def answer(conn: socket.socket, method: str, target: str, head: bytes) -> None:
    parts = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    path = parts.path
    send_body = method != "HEAD"

    def send(data: bytes) -> None:
        if not send_body:
            data = data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
        conn.sendall(data)

    if path == "/ok":
        send(simple(200, OK_BODY))
    elif path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        send(simple(code, f"status {code}\n".encode()))
    elif path == "/slow":
        time.sleep(float(query.get("delay", "1")))
        send(simple(200, OK_BODY))
    elif path == "/chunked":
        conn.sendall(head_bytes(200, [("Content-Type", "text/plain"),
                                      ("Transfer-Encoding", "chunked")]))
        if send_body:
            for i in range(int(query.get("chunks", "3"))):
                if i:
                    time.sleep(float(query.get("delay", "0")))
                data = f"chunk {i}\n".encode()
                conn.sendall(f"{len(data):x};n={i}\r\n".encode() + data + b"\r\n")
            conn.sendall(b"0\r\nX-Trailer: done\r\n\r\n")
    elif path == "/close":
        send(head_bytes(200, [("Content-Type", "text/plain")])
             + b"x" * int(query.get("bytes", "1000")))
    elif path == "/big":
        send(simple(200, b"b" * int(query.get("bytes", "100000"))))
    elif path == "/headers":
        send(simple(200, head + b"\r\n"))
    elif path == "/redirect":
        location = query.get("to", "/ok")
        send(simple(int(query.get("status", "302")), b"", [("Location", location)]))
    elif path == "/no-location":
        send(simple(302, b""))
    else:
        send(simple(404, b"not found\n"))


def handle(conn: socket.socket, context: ssl.SSLContext | None) -> None:
    try:
        conn.settimeout(READ_TIMEOUT_S)
        if context is not None:
            conn = context.wrap_socket(conn, server_side=True)  # handshake here
        head = read_head(conn)
        if head is None:
            return
        method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        answer(conn, method, target, head)
        if isinstance(conn, ssl.SSLSocket):
            conn = conn.unwrap()  # close_notify: a close-delimited body ends cleanly
        conn.shutdown(socket.SHUT_WR)
    except (OSError, ValueError):
        pass  # the client gave up, or rejected our certificate: nothing to answer
    finally:
        conn.close()


def serve(listener: socket.socket, context: ssl.SSLContext | None) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            print(f"https_responder: accept failed: {exc}", file=sys.stderr)
            time.sleep(0.1)
            continue
        threading.Thread(target=handle, args=(conn, context), daemon=True).start()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(256)
    return listener


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--listen-tls", action="append", default=[],
                        metavar="HOST:PORT,CERT_FILE,KEY_FILE")
    args = parser.parse_args(argv)

    servers: list[tuple[socket.socket, ssl.SSLContext | None]] = []
    for spec in args.listen:
        servers.append((bind(*parse_hostport(spec)), None))
    for spec in args.listen_tls:
        hostport, cert_file, key_file = spec.split(",")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        servers.append((bind(*parse_hostport(hostport)), context))
    for listener, context in servers:
        threading.Thread(target=serve, args=(listener, context), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
