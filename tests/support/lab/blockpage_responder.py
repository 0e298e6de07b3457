#!/usr/bin/env python3
"""A block page: what a censoring middlebox answers instead of the site. Stdlib only.

Runs inside a lab namespace, on IP literals only:

    blockpage_responder.py --listen 198.19.0.9:8081 [--status 403]
        [--listen-tls 198.19.0.9:8444,cert.pem,key.pem]

Every request, whatever its method, path or Host, is answered with the same page: the
given status (403 by default; some block pages say 200), the title BLOCK_TITLE and a body
of its own length, then `Connection: close`. Prints "ready" once every listener is bound.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import ssl
import sys
import threading
import time

READ_TIMEOUT_S = 5.0
MAX_HEAD = 64 * 1024
BLOCK_TITLE = "Access to this site is restricted"
BLOCK_PAGE = (f"<!DOCTYPE html><html><head><title>{BLOCK_TITLE}</title></head><body>"
              "<h1>Blocked</h1><p>This site has been blocked by order of the authorities."
              "</p></body></html>\n").encode()
REASONS = {200: "OK", 403: "Forbidden", 451: "Unavailable For Legal Reasons"}


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    ipaddress.ip_address(host)  # literals only: never resolve names
    return host, int(port)


def page(status: int) -> bytes:
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(BLOCK_PAGE)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + BLOCK_PAGE


def handle(conn: socket.socket, context: ssl.SSLContext | None, answer: bytes) -> None:
    try:
        conn.settimeout(READ_TIMEOUT_S)
        if context is not None:
            conn = context.wrap_socket(conn, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < MAX_HEAD:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        head_only = data.startswith(b"HEAD ")
        conn.sendall(answer.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" if head_only else answer)
        if isinstance(conn, ssl.SSLSocket):
            conn = conn.unwrap()
        conn.shutdown(socket.SHUT_WR)
    except (OSError, ValueError):
        pass
    finally:
        conn.close()


def serve(listener: socket.socket, context: ssl.SSLContext | None, answer: bytes) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            print(f"blockpage_responder: accept failed: {exc}", file=sys.stderr)
            time.sleep(0.1)
            continue
        threading.Thread(target=handle, args=(conn, context, answer), daemon=True).start()


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
    parser.add_argument("--status", type=int, default=403)
    args = parser.parse_args(argv)
    answer = page(args.status)
    servers: list[tuple[socket.socket, ssl.SSLContext | None]] = [
        (bind(*parse_hostport(spec)), None) for spec in args.listen]
    for spec in args.listen_tls:
        hostport, cert_file, key_file = spec.split(",")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        servers.append((bind(*parse_hostport(hostport)), context))
    for listener, context in servers:
        threading.Thread(target=serve, args=(listener, context, answer), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
