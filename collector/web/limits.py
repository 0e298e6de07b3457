"""Bounds on each request, whoever sends it (issue 12; docs/security.md): the app's
outermost middleware. Enrollment attempts are limited per source address; a body is read
here, before the handler, capped in size after decompression and in time, except the
ingest's, which its handler reads once the probe's token is known, under the same caps.
A body left unread behind an answer is never read through aiohttp's parser, which would
inflate it: the connection is closed after the answer, and what the client still sends
is thrown away as raw bytes (collector/web/serve.py, which serves the connection-level
limits)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time

from aiohttp import web

from collector.config import LimitsSettings
from collector.web.context import error_response
from collector.web.serve import Connection, connection_of

log = logging.getLogger(__name__)

ENROLL_PATH = "/api/v1/enroll"
# Read by the handler itself, after authentication: an unauthenticated request is refused
# before a byte of its body is inflated (collector/web/ingest.py).
HANDLER_READS = frozenset({"/api/v1/results"})
# Any other body: an enrollment is some 100 bytes, and nothing else takes one.
SMALL_BODY_BYTES = 64 * 1024


def source_key(address: str) -> str:
    """Who a limit counts against: the IPv4 address, or the IPv6 /64 (one host commonly
    has a whole /64 to pick addresses from)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class SourceBuckets:
    """A token bucket per source: `per_minute` attempts at once, then one every
    60/per_minute s. The sources remembered are bounded; the longest unseen is forgotten
    first (and starts again with a full bucket)."""

    def __init__(self, per_minute: int, max_sources: int = 10_000) -> None:
        self.capacity, self.rate = float(per_minute), per_minute / 60
        self.max_sources = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str, now: float) -> float:
        """0 when the attempt may go ahead, else the seconds until one may."""
        key = source_key(address)
        tokens, then = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)  # re-inserted: the most recently seen is last
        while len(self._buckets) > self.max_sources:
            del self._buckets[next(iter(self._buckets))]
        return wait


class RequestLimits:
    def __init__(self, settings: LimitsSettings) -> None:
        self.settings = settings
        self.enrollments = SourceBuckets(settings.enroll_per_minute)


LIMITS = web.AppKey("limits", RequestLimits)


@web.middleware
async def bounded(request: web.Request, handler) -> web.StreamResponse:
    limits = request.app[LIMITS]
    connection = connection_of(request)
    if connection is not None:
        connection.request_started()
    try:
        try:
            response = await _bounded(request, handler, limits)
        except web.HTTPException as exc:  # raised answers (404, 405, ...) are answers too
            _close_if_body_left(request, exc, connection)
            raise
        _close_if_body_left(request, response, connection)
        return response
    finally:
        if connection is not None:
            connection.request_finished()


async def _bounded(request: web.Request, handler, limits: RequestLimits) -> web.StreamResponse:
    settings = limits.settings
    if request.method == "POST" and request.path == ENROLL_PATH:
        wait = limits.enrollments.take(request.remote or "", time.monotonic())
        if wait:
            log.warning("refused an enrollment attempt from %s: over %d a minute",
                        request.remote, settings.enroll_per_minute)
            response = error_response(
                429, f"too many enrollment attempts from {request.remote}: "
                     f"{settings.enroll_per_minute} a minute; try again in {math.ceil(wait)} s")
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
    if not request.body_exists:
        return await handler(request)
    if request.path in HANDLER_READS:
        # The handler reads it under the app's client_max_size; this bounds its time.
        overdue = asyncio.get_running_loop().call_later(
            settings.body_timeout_s, _body_overdue, request, settings.body_timeout_s)
        try:
            return await handler(request)
        finally:
            overdue.cancel()
    request = request.clone(client_max_size=SMALL_BODY_BYTES)
    refusal = await _read_body(request, settings.body_timeout_s)
    # The body is kept by the clone: the handler's read() returns it without reading.
    return refusal if refusal is not None else await handler(request)


async def _read_body(request: web.Request, timeout_s: float) -> web.Response | None:
    cap = request.client_max_size
    too_large = f"body exceeds {cap} bytes after decompression"
    if request.content_length is not None and request.content_length > cap:
        return error_response(413, too_large)  # said so itself: not a byte read
    try:
        async with asyncio.timeout(timeout_s):
            await request.read()  # counts inflated bytes, and stops past the cap
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, too_large)
    except TimeoutError:
        log.info("the body from %s did not arrive within %g s", request.remote, timeout_s)
        return error_response(408, f"the body did not arrive within {timeout_s:g} s")
    except Exception as exc:  # a corrupt gzip stream, a client gone
        return error_response(400, f"cannot read the body: {exc}")
    return None


def _body_overdue(request: web.Request, timeout_s: float) -> None:
    if not request.content.is_eof() and request.transport is not None:
        log.warning("closed the connection from %s: its body did not arrive within %g s",
                    request.remote, timeout_s)
        request.transport.abort()  # the handler's read fails, and it answers no one


def _close_if_body_left(request: web.Request, response: web.StreamResponse,
                        connection: Connection | None) -> None:
    """A body not read to its end cannot be skipped without parsing (and inflating) it:
    the answer closes the connection, and the rest is thrown away unparsed."""
    if request.body_exists and not request.content.is_eof():
        response.force_close()
        if connection is not None:
            connection.discard_rest()
