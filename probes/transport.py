"""HTTP(S) to the collector from the probe: the standard library's http.client on a worker
thread, one connection kept open per collector (scheme, host and port) and reused from
request to request. A probe sends a request every few seconds; aiohttp's client would cost
it 13 MiB of memory for nothing (commit cab1a65), and a new TLS handshake for each batch
would cost the collector and the mission's link more than the batch.

A kept connection the collector has closed meanwhile (its keep-alive timeout, a restart)
is noticed before use when it can be (the socket reads as closed), and otherwise by the
request failing before any answer arrived: then an idempotent request is sent once more,
on a new connection. Only then: the collector may have acted on a request whose answer
was lost, and doing it twice is harmless only where the collector makes it so (results,
by (probe, seq): docs/protocol.md), never for an enrollment, whose token works once."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import select
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from probes.tls import explain
from unhindered.version import probe_user_agent

MAX_ANSWER_BYTES = 1 << 20
USER_AGENT = probe_user_agent()
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# How a request fails on a connection the server closed while it was kept: before any
# answer, the peer gone.
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
          http.client.RemoteDisconnected, ssl.SSLEOFError, ssl.SSLZeroReturnError)


def _closed(scheme: str) -> str:
    if scheme == "http":
        return ("the collector closed the connection without an answer (if it serves "
                "HTTPS, use https:// in collector.urls)")
    # asyncio's TLS server closes on a failed handshake without sending the alert that
    # says why, and under TLS 1.3 it checks the client's certificate after the client's
    # side of the handshake is done: the client sees the connection closed, no more.
    return ("the collector closed the TLS connection without an answer: if it requires "
            "client certificates (mutual TLS), set collector.client_cert_file and "
            "collector.client_key_file to a certificate signed by the CA in its "
            "tls.client_ca_file; otherwise see the collector's log")


@contextlib.contextmanager
def _corked(sock: socket.socket | None):
    """http.client writes a request's head and its body in two calls: on a connection
    with TCP_NODELAY (which http.client sets) that is two segments, and an ACK for each, on
    every push and heartbeat. Corked, the kernel sends them as one (Linux's TCP_CORK;
    elsewhere, as before)."""
    cork = getattr(socket, "TCP_CORK", None)
    if sock is None or cork is None:
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # the connection failed meanwhile
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


class TransportError(Exception):
    """No HTTP answer at all (refused, unreachable, timeout, TLS). str() says which."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> dict:
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


_Origin = tuple[str, str, int]  # scheme, host, port


class Transport:
    def __init__(self, timeout_s: float, tls: ssl.SSLContext | None = None) -> None:
        self.timeout_s = timeout_s
        # For https:// URLs (probes/tls.py client_context); None: the system's defaults.
        self.tls = tls
        self.connections_opened = 0
        # Used on the worker thread only. With each connection the context it was opened
        # with: a connection opened before the context changed (a reload) is not reused.
        self._kept: dict[_Origin, tuple[ssl.SSLContext | None, http.client.HTTPConnection]] = {}
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="http")

    async def request(self, method: str, url: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None,
                      idempotent: bool | None = None) -> Answer:
        """The answer, whatever its status; TransportError when there is none.
        `idempotent` (default: by the method) allows one retry after a kept connection
        turned out closed."""
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        # Every request names the probe's version: the collector keeps it for `probes list`.
        headers = {"User-Agent": USER_AGENT, **(headers or {})}
        return await asyncio.get_running_loop().run_in_executor(
            self._worker, self._request, method, url, body, headers, idempotent)

    def _request(self, method: str, url: str, body: bytes | None, headers: dict[str, str],
                 idempotent: bool) -> Answer:
        try:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL")
            origin = (parts.scheme, parts.hostname,
                      parts.port or (443 if parts.scheme == "https" else 80))
        except ValueError as exc:
            raise TransportError(f"{url}: {exc}") from exc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            kept = self._take_kept(origin)
            if kept is not None:
                try:
                    return self._exchange(origin, kept, method, target, body, headers)
                except _STALE:
                    if not idempotent:
                        raise
            return self._exchange(origin, self._open(origin), method, target, body, headers)
        except _STALE as exc:
            raise TransportError(f"{url}: {_closed(parts.scheme)}") from exc
        except ssl.SSLError as exc:
            raise TransportError(f"{url}: {explain(exc, origin[1])}") from exc
        except TimeoutError as exc:
            raise TransportError(f"{url}: no answer within {self.timeout_s:g} s "
                                 "(collector.timeout_s)") from exc
        except ConnectionError as exc:
            raise TransportError(f"{url}: {exc}") from exc
        except (OSError, ValueError, http.client.HTTPException) as exc:  # malformed answers
            raise TransportError(f"{url}: {type(exc).__name__}: {exc}") from exc

    def _take_kept(self, origin: _Origin) -> http.client.HTTPConnection | None:
        kept = self._kept.pop(origin, None)
        if kept is None:
            return None
        context, connection = kept
        sock = connection.sock
        # Readable while idle: the server's FIN (or TLS close_notify) is waiting.
        if context is not self.tls or sock is None or select.select([sock], [], [], 0)[0]:
            connection.close()
            return None
        sock.settimeout(self.timeout_s)
        return connection

    def _open(self, origin: _Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout_s,
                context=self.tls or ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
        try:
            connection.connect()
        except BaseException:
            connection.close()
            raise
        self.connections_opened += 1
        return connection

    def _exchange(self, origin: _Origin, connection: http.client.HTTPConnection, method: str,
                  target: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        try:
            with _corked(connection.sock):
                connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_ANSWER_BYTES)
        except BaseException:
            connection.close()
            raise
        if response.will_close or not response.isclosed():  # closing, or more than read
            connection.close()
        else:
            self._kept[origin] = (self.tls, connection)
        return Answer(response.status, data, dict(response.headers))

    def _close_kept(self) -> None:
        for _context, connection in self._kept.values():
            connection.close()
        self._kept.clear()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # closed before
            self._worker.submit(self._close_kept)  # on the thread that uses them
        self._worker.shutdown(wait=False)
