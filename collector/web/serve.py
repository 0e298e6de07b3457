"""`unhindered-collector serve`: aiohttp's runner with bounds on what a connection may cost,
whoever opens it (issue 12, cases 2 and 3; docs/security.md), over plain HTTP or over TLS
(the `tls` settings, collector/tls.py).

aiohttp has no connection limit and no timeout for a request head: a `Connection` sits
between each socket's transport and aiohttp's protocol, passing everything through, and
adds them. It also does the "lingering close" after a refusal itself: aiohttp would read
the rest of the body through its parser, inflating a gzip body on the event loop (one
8 MB bomb cost 9.4 CPU-s), so aiohttp is told not to (lingering_time=0) and the rest is
read here and thrown away unparsed, bounded in bytes and time, so that a client still
sending gets the answer instead of a reset (see Connection.discard_rest)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import ssl
import sys
import time

from aiohttp import web

from collector.config import CollectorConfig
from collector.tls import ServerTls, TlsFileError

log = logging.getLogger(__name__)

# The listen backlog, which is also how many sockets asyncio accepts in one pass of the
# event loop, before any of them reaches our protocol factory and its count.
ACCEPT_BATCH = 128
# Descriptors the connection limit leaves free: 64 for everything but connections
# (database files or sessions, SNMP sockets, the event loop's own, logs) and two accept
# batches: one accepted and not yet counted, one evicted and not yet closed (a transport
# closes its socket on the next pass). Measured: with 128 kept, 300 stalled connections
# under LimitNOFILE=256 still hit EMFILE.
NOFILE_RESERVE = 64 + 2 * ACCEPT_BATCH
MIN_CONNECTIONS = 16
# Loggers an attacker can make write a line per request or per accept(): a few lines a
# minute of each message, then a count (the case 3 grew the log by 26 MB in 24 s).
# collector.core: its background jobs fail every few seconds while the database is gone.
RATE_LIMITED_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "collector.core",
                        "collector.web.app", "collector.web.ingest", "collector.web.limits",
                        __name__)


class RateLimitedLog(logging.Filter):
    """Lets `per_minute` records of a message through per minute (a message: the logger,
    the level and the first line of the format string, whatever its arguments), drops the
    rest and says how many were dropped on the next one let through."""

    MAX_MESSAGES = 1_000

    def __init__(self, per_minute: int = 5, clock=time.monotonic) -> None:
        super().__init__()
        self.per_minute, self.clock = per_minute, clock
        self._windows: dict[tuple, list] = {}  # message -> [start, let through, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg).split("\n", 1)[0])
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= 60:
            if len(self._windows) >= self.MAX_MESSAGES:
                self._windows.clear()
            self._windows[key] = [now, 1, 0]
            if window is not None and window[2]:
                record.msg = (f"{record.msg}\n({window[2]} more like this in the last "
                              f"{now - window[0]:.0f} s were not logged)")
            return True
        if window[1] < self.per_minute:
            window[1] += 1
            return True
        window[2] += 1
        return False


def connections_allowed(wanted: int, soft_nofile: int) -> int:
    """As many connections as wanted, if the descriptor limit leaves room for them."""
    return min(wanted, max(soft_nofile - NOFILE_RESERVE, MIN_CONNECTIONS))


def _connection_limit(wanted: int) -> int:
    """Raises the soft descriptor limit as far as the hard one allows, then fits the
    connection limit to it: a connection refused by the limit costs a line in the log,
    accept() failing with EMFILE a line per attempt and every other client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + NOFILE_RESERVE
    if soft < needed:
        with contextlib.suppress(ValueError, OSError):  # e.g. seccomp without setrlimit
            resource.setrlimit(resource.RLIMIT_NOFILE, (
                needed if hard == resource.RLIM_INFINITY else min(needed, hard), hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    allowed = connections_allowed(wanted, soft)
    if allowed < wanted:
        log.warning("LimitNOFILE: %d descriptors: serving at most %d connections, not "
                    "limits.max_connections=%d; raise the unit's LimitNOFILE= to %d",
                    soft, allowed, wanted, needed)
    return allowed


class Connection(asyncio.Protocol):
    """One accepted connection: between the socket's transport (under TLS, asyncio's TLS
    transport, whose bytes are already decrypted) and aiohttp's protocol."""

    def __init__(self, pool: Connections, handler: asyncio.Protocol) -> None:
        self.pool, self.handler = pool, handler
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a request is being handled
        self._head_seen = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._discarding = False  # the rest of a refused body is thrown away, see below
        self._discard_left = 0
        self._linger_timer: asyncio.TimerHandle | None = None  # aiohttp is done: lingering

    @property
    def lingering(self) -> bool:
        return self._discarding

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.opened(self)
        self._head_timer = asyncio.get_running_loop().call_later(
            self.pool.header_timeout_s, self._head_overdue, transport)
        self.handler.connection_made(_HandlerTransport(self, transport))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if not self._discarding:
            self.handler.data_received(data)
            return
        # The rest of a refused body, never handed to aiohttp's parser to inflate.
        self._discard_left -= len(data)
        if self._discard_left < 0:
            self.abort()  # more than a body may hold: the reset is deserved

    def eof_received(self) -> bool | None:
        if self._linger_timer is not None:
            return None  # answered, and the client has sent all: close
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self.pool.closed(self)
        self.handler.connection_lost(exc)

    # What the app's middleware (collector/web/limits.py) tells the connection.

    def request_started(self) -> None:
        self._head_seen, self.busy = True, True

    def request_finished(self) -> None:
        self.busy = False

    def discard_rest(self) -> None:
        """The answer is a refusal and the body was not read: aiohttp will close the
        connection after the answer (it was told to force_close). Closing a socket with
        unread data resets it, and a client still sending would lose the answer. So
        aiohttp's close() (see _HandlerTransport) does not close the transport: from now
        on what arrives is counted and thrown away, and once aiohttp has written the
        answer the connection stays open until the client has sent the rest and closes,
        for ingest.max_body_bytes and limits.body_timeout_s at most; past either, it is
        aborted (a reset: that client does not deserve better).

        The same for plain TCP and TLS: the bytes thrown away are those the transport
        delivers, decrypted under TLS. A raw read of the socket under the TLS transport
        would take TLS records for the body; and closing the TLS transport first sends a
        close_notify, after which OpenSSL fails on the client's next record (application
        data after close notify) and the connection is reset under the answer. Over plain
        TCP the answer is also followed by a FIN at once (write_eof)."""
        if not self._discarding:
            self._discarding = True
            self._discard_left = self.pool.linger_bytes

    def close_for_handler(self) -> None:
        """aiohttp closes the connection: at once, or after the rest of a refused body."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self._discarding:
            transport.close()
            return
        if self._linger_timer is None:
            if transport.can_write_eof():
                transport.write_eof()  # after the answer, once it is written
            transport.resume_reading()  # in case aiohttp's flow control paused it
            self._linger_timer = asyncio.get_running_loop().call_later(
                self.pool.linger_s, self.abort)

    def abort(self) -> None:
        self.pool.closed(self)
        if self.transport is not None:
            self.transport.abort()  # at once, unlike close(): no waiting on a slow reader

    def _head_overdue(self, transport: asyncio.Transport) -> None:
        if not self._head_seen and not transport.is_closing():
            log.warning("closed a connection from %s: no complete request head within %g s",
                        (transport.get_extra_info("peername") or ("?",))[0],
                        self.pool.header_timeout_s)
            self.abort()


class _HandlerTransport:
    """The transport as aiohttp's protocol sees it: the connection's own, but for close(),
    which lets the Connection finish a refused request's lingering close first."""

    def __init__(self, connection: Connection, transport: asyncio.Transport) -> None:
        self._connection, self._transport = connection, transport
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self._connection.close_for_handler()

    def is_closing(self) -> bool:
        return self._closed or self._transport.is_closing()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class Connections:
    """The protocol factory of the listening socket: every open Connection, oldest first."""

    def __init__(self, server: web.Server, limit: int, header_timeout_s: float,
                 linger_bytes: int, linger_s: float) -> None:
        self.server, self.limit = server, limit
        self.header_timeout_s, self.linger_bytes, self.linger_s = (
            header_timeout_s, linger_bytes, linger_s)
        self._open: dict[Connection, None] = {}  # insertion order: oldest first

    def __call__(self) -> Connection:
        return Connection(self, self.server())

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, connection: Connection) -> None:
        if len(self._open) >= self.limit:
            self._make_room()
        self._open[connection] = None

    def closed(self, connection: Connection) -> None:
        self._open.pop(connection, None)

    def _make_room(self) -> None:
        # Refusing the new connection would let whoever holds the old ones shut everyone
        # out; the oldest are the slow or idle ones. First one already answered and being
        # drained, then one between requests (idle or still sending its head), then any.
        victim = (next((c for c in self._open if c.lingering), None)
                  or next((c for c in self._open if not c.busy), None)
                  or next(iter(self._open)))
        log.warning("%d connections open, the limit (limits.max_connections): closed the "
                    "oldest %s one to make room", len(self._open),
                    "busy" if victim.busy else "idle")
        victim.abort()

    def abort_all(self) -> None:
        for connection in list(self._open):
            connection.abort()


def connection_of(request: web.BaseRequest) -> Connection | None:
    """The request's Connection; None when the app is served otherwise (aiohttp's test
    server), where the connection-level limits do not exist."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, Connection) else None


class _Site(web.BaseSite):
    """web.TCPSite with our protocol factory in front of aiohttp's, and TLS when given."""

    def __init__(self, runner: web.AppRunner, factory: Connections, host: str,
                 port: int, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(runner)
        self._factory, self._host, self._port, self._tls = factory, host, port, tls

    @property
    def name(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        # A handshake is bounded like a request head: Connection's timer starts only once
        # the handshake is done (asyncio makes the connection then).
        self._server = await asyncio.get_running_loop().create_server(
            self._factory, self._host, self._port, backlog=ACCEPT_BATCH, ssl=self._tls,
            ssl_handshake_timeout=self._factory.header_timeout_s if self._tls else None)


def run(app: web.Application, config: CollectorConfig) -> None:
    """Serves the app until SIGTERM or SIGINT (then exits normally, as web.run_app did);
    SIGHUP reloads the TLS certificate. What stops the app's start (collector/store/writer.py:
    AnotherWriter, DatabaseGone) is raised before anything is listening; a TLS file that
    cannot be used exits with status 2 (a config error), naming the setting."""
    for name in RATE_LIMITED_LOGGERS:
        logging.getLogger(name).addFilter(RateLimitedLog())
    try:
        tls = ServerTls(config.tls) if config.tls is not None else None
    except TlsFileError as exc:
        print(f"unhindered-collector: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(_serve(app, config, tls))


def _reload(tls: ServerTls | None) -> None:
    if tls is None:
        log.info("SIGHUP: nothing to reload (no tls section in the config)")
    else:
        tls.reload()


async def _serve(app: web.Application, config: CollectorConfig, tls: ServerTls | None) -> None:
    limits = config.limits
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, tls)
    # keepalive_timeout: aiohttp closes a connection idle this long after an answer (or,
    # from aiohttp 3.10, after it opened) whose next head is not complete by then.
    # lingering_time=0: aiohttp never reads a body after the answer (see the module's doc).
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.keepalive_timeout_s,
                           lingering_time=0)
    await runner.setup()
    connections = Connections(runner.server, _connection_limit(limits.max_connections),
                              header_timeout_s=limits.header_timeout_s,
                              linger_bytes=config.ingest.max_body_bytes,
                              linger_s=limits.body_timeout_s)
    try:
        site = _Site(runner, connections, config.listen.host, config.listen.port,
                     tls.context if tls is not None else None)
        await site.start()
        print(f"unhindered-collector listening on {site.name}/ (metrics at /metrics)",
              file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        connections.abort_all()
