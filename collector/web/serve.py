"""`unhindered-collector serve`: aiohttp's runner with bounds on what a connection may cost,
whoever opens it (issue 12, cases 2 and 3; docs/security.md).

aiohttp has no connection limit and no timeout for a request head: a `Connection` sits
between each socket's transport and aiohttp's protocol, passing everything through, and
adds them. It also does the "lingering close" after a refusal itself: aiohttp would read
the rest of the body through its parser, inflating a gzip body on the event loop (one
8 MB bomb cost 9.4 CPU-s), so aiohttp is told not to (lingering_time=0) and the rest is
read here as raw bytes and thrown away, bounded in bytes and time, so that a client still
sending gets the answer instead of a reset."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import sys
import time

from aiohttp import web

from collector.config import CollectorConfig

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
LINGER_CHUNK = 64 * 1024
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
    """One accepted connection: between the socket's transport and aiohttp's protocol."""

    def __init__(self, pool: Connections, handler: asyncio.Protocol) -> None:
        self.pool, self.handler = pool, handler
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a request is being handled
        self._head_seen = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._rest: socket.socket | None = None  # to drain a refused body from, see below
        self._linger: asyncio.Task | None = None

    @property
    def lingering(self) -> bool:
        return self._rest is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.opened(self)
        self._head_timer = asyncio.get_running_loop().call_later(
            self.pool.header_timeout_s, self._head_overdue, transport)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._rest is None:
            self.handler.data_received(data)
        # else: the rest of a refused body, never handed to aiohttp's parser to inflate

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self.handler.connection_lost(exc)
        rest = self._rest
        if rest is None:
            self.pool.closed(self)
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().create_task(self._drain(rest))
            # Closed here rather than in _drain: a task cancelled before it ran never runs
            # its finally, and the socket must outlive sock_recv's reader in every case.
            self._linger.add_done_callback(lambda _: (rest.close(), self.pool.closed(self)))

    # What the app's middleware (collector/web/limits.py) tells the connection.

    def request_started(self) -> None:
        self._head_seen, self.busy = True, True

    def request_finished(self) -> None:
        self.busy = False

    def discard_rest(self) -> None:
        """The answer is a refusal and the body was not read: aiohttp will close the
        connection after the answer (it was told to force_close). Closing a socket with
        unread data resets it, and a client still sending would lose the answer; so a
        duplicate of the socket is kept, and once aiohttp's transport has written the
        answer and closed, _drain reads the rest from it and throws it away."""
        if self._rest is None and self.transport is not None:
            self._rest = self.transport.get_extra_info("socket").dup()

    async def _drain(self, rest: socket.socket) -> None:
        try:
            rest.setblocking(False)
            rest.shutdown(socket.SHUT_WR)  # the answer is complete: FIN
            left = self.pool.linger_bytes
            async with asyncio.timeout(self.pool.linger_s):
                while left > 0:
                    data = await asyncio.get_running_loop().sock_recv(rest, LINGER_CHUNK)
                    if not data:
                        break
                    left -= len(data)
        except (OSError, TimeoutError):
            pass  # the client went, or sent too much or too slowly: closing resets it

    def abort(self) -> None:
        self.pool.closed(self)
        if self._linger is not None:
            self._linger.cancel()
            return
        if self._rest is not None:  # refused, but aiohttp has not closed yet: no drain
            self._rest.close()
            self._rest = None
        if self.transport is not None:
            self.transport.abort()  # at once, unlike close(): no waiting on a slow reader

    def _head_overdue(self, transport: asyncio.Transport) -> None:
        if not self._head_seen and not transport.is_closing():
            log.warning("closed a connection from %s: no complete request head within %g s",
                        (transport.get_extra_info("peername") or ("?",))[0],
                        self.pool.header_timeout_s)
            self.abort()


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
    """web.TCPSite with our protocol factory in front of aiohttp's."""

    def __init__(self, runner: web.AppRunner, factory: Connections, host: str,
                 port: int) -> None:
        super().__init__(runner)
        self._factory, self._host, self._port = factory, host, port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self._factory, self._host, self._port, backlog=ACCEPT_BATCH)


def run(app: web.Application, config: CollectorConfig) -> None:
    """Serves the app until SIGTERM or SIGINT (then exits normally, as web.run_app did).
    What stops the app's start (collector/store/writer.py: AnotherWriter, DatabaseGone)
    is raised before anything is listening."""
    for name in RATE_LIMITED_LOGGERS:
        logging.getLogger(name).addFilter(RateLimitedLog())
    asyncio.run(_serve(app, config))


async def _serve(app: web.Application, config: CollectorConfig) -> None:
    limits = config.limits
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
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
        await _Site(runner, connections, config.listen.host, config.listen.port).start()
        print(f"unhindered-collector listening on http://{config.listen.host}:"
              f"{config.listen.port}/ (metrics at /metrics)", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        connections.abort_all()
