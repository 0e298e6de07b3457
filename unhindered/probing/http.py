"""HTTP(S) requests, phase by phase: DNS (for a name), TCP connect, TLS handshake, first
byte, transfer.

HTTP/1.1 is written here directly over asyncio streams, so that every phase is timed on
its own; a client library would blur them. Each request uses its own connection
(`Connection: close`): every request of a redirect chain pays, and reports, the full
cost, and the figures are those of the last request. The redirect chain, the page's title
and the address used are kept as evidence for a comparison with the centre's control.
See docs/checks-http.md.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from unhindered.checks.http import DEFAULT_PORTS, HEADER_NAME, HttpCheck
from unhindered.measurement import MAX_REDIRECT_CHAIN, FailureReason, HttpFigures, clean_text
from unhindered.probing import tcp, tls
from unhindered.probing.base import CheckOutcome, IPAddress, ResolveError, lookup

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
NO_BODY_STATUSES = frozenset({204, 304})
USER_AGENT = "unhindered-probe"
MAX_HEADER_LINES = 200  # a head line is also capped by the stream's 64 KiB limit
# Credentials are not sent on to another host after a redirect (as curl and browsers do).
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_STATUS_LINE = re.compile(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?")
_MAX_DETAIL = 500
# The first <title>'s text, up to the next tag; searched for in the body's head only (a
# title belongs in <head>), so a large body costs no more than a small one.
_TITLE = re.compile(rb"<title\b[^>]{0,200}>([^<]{0,2000})", re.IGNORECASE)
_TITLE_SEARCHED = 64 * 1024
_MAX_TITLE = 200


def no_figures() -> HttpFigures:
    return HttpFigures()


class _Failed(Exception):
    def __init__(self, reason: FailureReason, detail: str,
                 refused_tls: tuple[IPAddress, int, str] | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        # (address, port, name) of a handshake whose certificate was refused: where to
        # read the chain the server presents.
        self.refused_tls = refused_tls


@dataclass
class _Progress:
    """How far the round got: what a failure or a timeout reports."""

    url: str
    phase: str = "starting"
    redirects: int = 0
    chain: list[str] = field(default_factory=list)  # each redirect's target
    ip_version: Literal[4, 6] | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # of the current request

    def next_request(self, url: str) -> None:
        self.url = url
        self.phase = "starting"
        self.ip_version = None
        self.figures = {}

    def http_figures(self, body_matched: bool | None = None) -> HttpFigures:
        # A Location header may hold control characters (a NUL survives urljoin).
        return HttpFigures(**self.figures, redirects=self.redirects,
                           final_url=clean_text(self.url, 2048), body_matched=body_matched,
                           redirect_chain=self.chain or None)


@dataclass(frozen=True)
class Answer:
    version: str  # HTTP/1.1
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes


async def run(check: HttpCheck) -> CheckOutcome:
    progress = _Progress(url=check.target)
    deadline = asyncio.get_running_loop().time() + check.timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            answer = await _follow(check, progress)
    except TimeoutError:
        detail = f"timed out after {check.timeout_s} s: {progress.phase} ({progress.url})"
        return _failed(progress, FailureReason.TIMEOUT, detail)
    except _Failed as exc:
        if exc.refused_tls is not None:  # outside the timeout: it must not turn into one
            progress.figures.update(
                await tcp.presented_certificates(*exc.refused_tls, deadline))
        return _failed(progress, exc.reason, exc.detail)
    return _judge(check, progress, answer)


def _judge(check: HttpCheck, progress: _Progress, answer: Answer) -> CheckOutcome:
    matched = None
    if check.body_regex is not None:
        text = answer.body.decode("utf-8", errors="replace")
        matched = re.search(check.body_regex, text) is not None
    figures = progress.http_figures(matched)
    if answer.status not in check.expected_status:
        status = f"{answer.status} {answer.reason}".strip()
        detail = (f"status {status} from {progress.url}, expected "
                  f"{describe_statuses(check.expected_status)}")
        return _failed(progress, FailureReason.HTTP_STATUS, detail, figures)
    if matched is False:
        detail = (f"the body of {progress.url} ({len(answer.body)} bytes read) does not "
                  f"match {check.body_regex!r}")
        return _failed(progress, FailureReason.BODY_MISMATCH, detail, figures)
    return CheckOutcome(ok=True, ip_version=progress.ip_version, figures=figures)


def _failed(progress: _Progress, reason: FailureReason, detail: str,
            figures: HttpFigures | None = None) -> CheckOutcome:
    return CheckOutcome(ok=False, reason=reason, detail=detail[:_MAX_DETAIL],
                        ip_version=progress.ip_version,
                        figures=figures or progress.http_figures())


def describe_statuses(statuses: list[int]) -> str:
    """[200, 201, ..., 399, 404] -> '200-399, 404'."""
    ranges: list[list[int]] = []
    for status in sorted(set(statuses)):
        if ranges and status == ranges[-1][1] + 1:
            ranges[-1][1] = status
        else:
            ranges.append([status, status])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


# -- the redirect chain ---------------------------------------------------------------------


async def _follow(check: HttpCheck, progress: _Progress) -> Answer:
    while True:
        answer = await _request(check, progress)
        location = answer.headers.get("location")
        if not (check.follow_redirects and answer.status in REDIRECT_STATUSES and location):
            return answer
        if progress.redirects >= check.max_redirects:
            raise _Failed(FailureReason.HTTP_STATUS,
                          f"status {answer.status} from {progress.url} redirects to "
                          f"{location} after {progress.redirects} redirects "
                          f"(max_redirects {check.max_redirects})")
        progress.next_request(redirect_url(progress.url, location))
        progress.redirects += 1
        if len(progress.chain) < MAX_REDIRECT_CHAIN:
            progress.chain.append(clean_text(progress.url, 2048))


def redirect_url(current: str, location: str) -> str:
    """The absolute URL a Location header points to, relative to the current URL."""
    url = urljoin(current, location.strip())
    parts = urlsplit(url)
    try:
        valid = parts.scheme in DEFAULT_PORTS and bool(parts.hostname) and (
            parts.port is None or parts.port > 0)
    except ValueError:
        valid = False
    if not valid:
        raise _Failed(FailureReason.ERROR, f"redirect from {current} to an unusable URL: "
                                           f"{location[:200]!r}")
    return parts._replace(fragment="").geturl()


# -- one request ----------------------------------------------------------------------------


async def _request(check: HttpCheck, progress: _Progress) -> Answer:
    parts = urlsplit(progress.url)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    own_host = host == urlsplit(check.target).hostname
    name = check.server_name if own_host and check.server_name else host
    address = await _resolve(check, host, progress)

    progress.phase = "TCP connect"
    try:
        sock, progress.figures["connect_s"] = await tcp.connect(address, port)
    except OSError as exc:
        reason, detail = tcp.connect_failure(exc, port)
        raise _Failed(reason, f"{detail} ({progress.url})") from exc

    try:
        if parts.scheme == "https":
            reader, writer = await _start_tls(check, sock, (address, port, name), progress)
        else:
            reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()  # a no-op when asyncio already closed it with its transport
        raise
    request = build_request(check.method, parts, _headers_for(check, own_host),
                            _host_header(name, parts))
    try:
        answer = await _exchange(check, reader, writer, request, progress)
    except BaseException:
        writer.transport.abort()
        raise
    await tls.close_quietly(writer)
    return answer


async def _resolve(check: HttpCheck, host: str, progress: _Progress) -> IPAddress:
    progress.phase = "DNS lookup"
    started = time.perf_counter()
    try:
        resolved = await lookup(host, check.ip_version)
    except ResolveError as exc:
        raise _Failed(FailureReason.DNS, str(exc)) from exc
    if not _is_ip_literal(host):  # a literal is not looked up: no DNS phase to report
        progress.figures["dns_s"] = time.perf_counter() - started
    progress.figures.update(resolved.figures())
    progress.ip_version = resolved.address.version
    return resolved.address


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _start_tls(check: HttpCheck, sock: socket.socket,
                     peer: tuple[IPAddress, int, str], progress: _Progress
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    progress.phase = "TLS handshake"
    name = peer[2]
    try:
        context = tls.client_context(check.tls_verify, check.ca_file)
        reader, writer, info = await tls.handshake(sock, context, name)
    except tls.TlsFailure as exc:
        raise _Failed(FailureReason.TLS, f"{exc} ({progress.url})",
                      refused_tls=peer if exc.verification else None) from exc
    except tls.CaFileError as exc:
        raise _Failed(FailureReason.ERROR, str(exc)) from exc
    except OSError as exc:
        raise _Failed(FailureReason.ERROR,
                      f"TLS handshake: {tcp.system_error(exc)} ({progress.url})") from exc
    progress.figures.update(tls_s=info.handshake_s, tls_version=info.version,
                            tls_cert_not_after=info.cert_not_after, **info.evidence)
    return reader, writer


def _headers_for(check: HttpCheck, own_host: bool) -> dict[str, str]:
    if own_host:
        return dict(check.headers)
    # Another host: no credentials, and its own Host header.
    return {k: v for k, v in check.headers.items()
            if k.lower() not in CREDENTIAL_HEADERS and k.lower() != "host"}


def _host_header(name: str, parts: SplitResult) -> str:
    host = f"[{name}]" if ":" in name else name  # an IPv6 literal
    if parts.port is not None and parts.port != DEFAULT_PORTS[parts.scheme]:
        host += f":{parts.port}"
    return host


def build_request(method: str, parts: SplitResult, headers: dict[str, str],
                  host: str) -> bytes:
    """The request head. Configured headers replace the defaults of the same name, except
    Connection: one request per connection is what makes the phases comparable."""
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    # Percent-encode what is not already encoded or reserved, so the line stays ASCII.
    target = quote(target, safe="/?#[]@!$&'()*+,;=:%-._~")
    fields = {"Host": host, "User-Agent": USER_AGENT, "Accept": "*/*"}
    for name, value in headers.items():
        if name.lower() == "connection":
            continue
        for default in [d for d in fields if d.lower() == name.lower()]:
            del fields[default]
        fields[name] = value
    fields["Connection"] = "close"
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def _exchange(check: HttpCheck, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, request: bytes,
                    progress: _Progress) -> Answer:
    try:
        return await _send_and_read(check, reader, writer, request, progress)
    except asyncio.IncompleteReadError as exc:
        raise _Failed(FailureReason.ERROR, f"the server closed the connection while "
                      f"{progress.phase} ({progress.url})") from exc
    except asyncio.LimitOverrunError as exc:
        raise _Failed(FailureReason.ERROR, f"a line of the answer's head exceeds the limit "
                      f"({progress.url})") from exc
    except ssl.SSLError as exc:
        raise _Failed(FailureReason.TLS, f"TLS error while {progress.phase}: "
                      f"{tls.ssl_error_text(exc)} ({progress.url})") from exc
    except OSError as exc:
        raise _Failed(FailureReason.ERROR, f"{tcp.system_error(exc)} while {progress.phase} "
                      f"({progress.url})") from exc


async def _send_and_read(check: HttpCheck, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, request: bytes,
                         progress: _Progress) -> Answer:
    progress.phase = "sending the request"
    # First-byte time counts from before the write, as curl's starttransfer does: a
    # timestamp taken after it can fall after the server has started to answer (the
    # process descheduled between send() and the clock), which would understate the wait.
    sent = time.perf_counter()
    writer.write(request)
    await writer.drain()
    progress.phase = "waiting for the first byte"
    first = await reader.readexactly(1)
    first_byte_at = time.perf_counter()
    progress.figures["first_byte_s"] = first_byte_at - sent
    progress.phase = "reading the answer"
    version, status, reason, headers = await _read_head(reader, first)
    progress.figures.update(status_code=status, http_version=version)
    body = await _read_body(reader, check.method, status, headers, check.max_body_bytes)
    progress.figures.update(transfer_s=time.perf_counter() - first_byte_at,
                            body_bytes=len(body), title=page_title(body))
    return Answer(version=version, status=status, reason=reason, headers=headers, body=body)


async def _read_head(reader: asyncio.StreamReader, first: bytes
                     ) -> tuple[str, int, str, dict[str, str]]:
    line = first + await reader.readuntil(b"\n")
    while True:
        version, status, reason = parse_status_line(line)
        lines: list[bytes] = []
        while (header := await reader.readuntil(b"\n")) not in (b"\r\n", b"\n"):
            lines.append(header)
            if len(lines) > MAX_HEADER_LINES:
                raise _Failed(FailureReason.ERROR,
                              f"the answer has more than {MAX_HEADER_LINES} header lines")
        headers = parse_headers(lines)
        if status >= 200:  # 1xx answers (103 Early Hints, ...) precede the real one
            return version, status, reason, headers
        line = await reader.readuntil(b"\n")


def page_title(body: bytes) -> str | None:
    """The first <title>'s text, entities decoded and white space collapsed; None when
    the body has none (or an empty one). Decoded as UTF-8, as body_regex is."""
    match = _TITLE.search(body, 0, _TITLE_SEARCHED)
    if match is None:
        return None
    text = " ".join(html.unescape(match[1].decode("utf-8", errors="replace")).split())
    return clean_text(text, _MAX_TITLE) or None


def parse_status_line(line: bytes) -> tuple[str, int, str]:
    match = _STATUS_LINE.fullmatch(line.rstrip(b"\r\n"))
    if match is None or not 100 <= int(match[2]) <= 599:
        raise _Failed(FailureReason.ERROR, f"not an HTTP status line: {line[:100]!r}")
    return match[1].decode(), int(match[2]), (match[3] or b"").decode("latin-1")


def parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in lines:
        name, sep, value = raw.decode("latin-1").rstrip("\r\n").partition(":")
        if not sep or not HEADER_NAME.fullmatch(name):
            raise _Failed(FailureReason.ERROR, f"malformed header line: {raw[:100]!r}")
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def content_length(value: str) -> int:
    """Content-Length, also when repeated with one value ("10, 10")."""
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (text := values.pop()).isdigit():
        raise _Failed(FailureReason.ERROR, f"invalid Content-Length: {value[:100]!r}")
    return int(text)


async def _read_body(reader: asyncio.StreamReader, method: str, status: int,
                     headers: dict[str, str], cap: int) -> bytes:
    if method == "HEAD" or status in NO_BODY_STATUSES:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, cap)
    if "content-length" in headers:
        return await reader.readexactly(min(content_length(headers["content-length"]), cap))
    return await _read_until_close(reader, cap)


async def _read_chunked(reader: asyncio.StreamReader, cap: int) -> bytes:
    body = bytearray()
    while len(body) < cap:
        size_line = await reader.readuntil(b"\n")
        size_text = size_line.split(b";", 1)[0].strip()  # chunk extensions follow a ';'
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _Failed(FailureReason.ERROR,
                          f"invalid chunk size line: {size_line[:100]!r}") from None
        if size == 0:
            await _skip_trailers(reader)
            break
        wanted = min(size, cap - len(body))
        body += await reader.readexactly(wanted)
        if wanted < size:
            break  # the cap: the rest stays unread, and the connection is closed
        await reader.readexactly(2)  # the CRLF after the chunk's data
    return bytes(body)


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    try:
        for _ in range(MAX_HEADER_LINES):
            if await reader.readuntil(b"\n") in (b"\r\n", b"\n"):
                return
    except asyncio.IncompleteReadError:
        return  # closed right after the last chunk: the body is complete all the same


async def _read_until_close(reader: asyncio.StreamReader, cap: int) -> bytes:
    body = bytearray()
    while len(body) < cap:
        data = await reader.read(min(65_536, cap - len(body)))
        if not data:
            break
        body += data
    return bytes(body)
