#!/usr/bin/env python3
"""A man in the middle for TLS: it completes the client's handshake with a certificate of
its own CA (for the site's name, so only the issuer gives it away), opens its own TLS
connection to the real server and relays the plaintext both ways, as an intercepting
middlebox does: one request and its answer per connection, as the lab's servers close
after one answer. Stdlib only.

Runs inside a lab namespace, on IP literals only:

    mitm_responder.py --listen 198.19.0.9:8443 --cert mitm.pem --key mitm.key \
        --upstream 198.19.0.1:8443

The upstream's certificate is not verified (a middlebox that intercepts does not care).
Prints "ready" once the listener is bound.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import ssl
import sys
import threading
import time

TIMEOUT_S = 10.0
MAX_HEAD = 64 * 1024


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    ipaddress.ip_address(host)  # literals only: never resolve names
    return host, int(port)


def relay(client: ssl.SSLSocket, far: ssl.SSLSocket) -> None:
    """One HTTP exchange, in order: the client's request head to the server, then the
    server's answer to the client until the server closes (every lab server answers one
    request and closes). Plain blocking reads: select() cannot see bytes OpenSSL holds
    undecrypted, and one SSL socket must not be used by two threads at once."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
        data = client.recv(65536)
        if not data:
            return
        head += data
    far.sendall(head)
    while data := far.recv(65536):
        client.sendall(data)


def handle(conn: socket.socket, server_context: ssl.SSLContext,
           upstream: tuple[str, int]) -> None:
    client = far = None
    try:
        conn.settimeout(TIMEOUT_S)
        client = server_context.wrap_socket(conn, server_side=True)
        # SNI the client asked for goes on upstream, so the real server answers for it.
        name = getattr(client, "sni", None)
        upstream_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        upstream_context.check_hostname = False
        upstream_context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(upstream, timeout=TIMEOUT_S)
        far = upstream_context.wrap_socket(raw, server_hostname=name)
        relay(client, far)
    except (OSError, ValueError) as exc:  # e.g. the client refused our certificate
        print(f"mitm_responder: {exc}", file=sys.stderr)
    finally:
        for sock in (far, client, conn):
            if sock is not None:
                sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--cert", required=True, help="PEM: the certificate, then its chain")
    parser.add_argument("--key", required=True)
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)

    def remember_sni(sock: ssl.SSLSocket, name: str | None, _context: ssl.SSLContext) -> None:
        sock.sni = name  # type: ignore[attr-defined]  # read back in handle()

    context.sni_callback = remember_sni
    upstream = parse_hostport(args.upstream)
    host, port = parse_hostport(args.listen)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(256)
    print("ready", flush=True)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            print(f"mitm_responder: accept failed: {exc}", file=sys.stderr)
            time.sleep(0.1)
            continue
        threading.Thread(target=handle, args=(conn, context, upstream), daemon=True).start()


if __name__ == "__main__":
    main()
