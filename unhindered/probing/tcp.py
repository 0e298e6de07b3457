"""TCP connect: the time to complete the handshake with target:port, then optionally a TLS
handshake (its time, version, the earliest certificate expiry of the chain and the chain's
evidence); for a name target also the address used and the answer set it came from."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time

from unhindered.checks.tcp import TcpCheck
from unhindered.measurement import FailureReason, TcpFigures
from unhindered.probing import tls
from unhindered.probing.base import CheckOutcome, IPAddress, ResolveError, lookup

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def connect_failure(exc: OSError, port: int) -> tuple[FailureReason, str]:
    """The failure reason and detail for a TCP connect that raised `exc`."""
    if isinstance(exc, ConnectionRefusedError):
        return FailureReason.REFUSED, f"port {port} refused the connection"
    if exc.errno == errno.ETIMEDOUT:  # the kernel gave up retrying the SYN
        return FailureReason.TIMEOUT, system_error(exc)
    if exc.errno in _UNREACHABLE:
        return FailureReason.UNREACHABLE, system_error(exc)
    return FailureReason.ERROR, system_error(exc)


def system_error(exc: OSError) -> str:
    """The system's words for the error ("No route to host"): asyncio's sock_connect puts
    its own "Connect call failed (...)" in strerror, which says nothing of the cause."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


async def connect(address: IPAddress, port: int) -> tuple[socket.socket, float]:
    """A connected non-blocking socket and the handshake time. Raises OSError; on any
    exception (cancellation too) the socket is closed."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        started = time.perf_counter()
        await asyncio.get_running_loop().sock_connect(sock, (str(address), port))
        return sock, time.perf_counter() - started
    except BaseException:
        sock.close()
        raise


async def presented_certificates(address: IPAddress, port: int, server_name: str,
                                 deadline: float) -> dict:
    """After a verification failure: the chain the server presents, read from a second
    handshake that does not verify (asyncio keeps nothing of the failed one). That chain
    is the evidence of an interception. Bounded by the round's `deadline` (loop time);
    without it, only tls_verified false."""
    evidence: dict = {}
    try:
        async with asyncio.timeout_at(deadline):
            sock, _connect_s = await connect(address, port)
            try:
                _reader, writer, info = await tls.handshake(
                    sock, tls.client_context(False, None), server_name)
            except BaseException:
                sock.close()
                raise
            evidence = {**info.evidence, "tls_cert_not_after": info.cert_not_after}
            await tls.close_quietly(writer)
    except (TimeoutError, OSError, tls.TlsFailure):
        pass
    return {**evidence, "tls_verified": False}


async def run(check: TcpCheck) -> CheckOutcome:
    try:
        resolved = await lookup(check.target, check.ip_version)
    except ResolveError as exc:
        return CheckOutcome(ok=False, reason=FailureReason.DNS, detail=str(exc),
                            figures=TcpFigures())
    deadline = asyncio.get_running_loop().time() + check.timeout_s
    address = resolved.address
    figures: dict = resolved.figures()
    phase = "TCP connect"
    try:
        async with asyncio.timeout_at(deadline):
            sock, figures["connect_s"] = await connect(address, check.port)
            if check.tls:
                phase = "TLS handshake"
                figures.update(await _tls_handshake(check, sock))
            else:
                sock.close()
    except TimeoutError:
        return _failed(address, figures, FailureReason.TIMEOUT,
                       f"no answer within {check.timeout_s} s: {phase}")
    except tls.TlsFailure as exc:
        if exc.verification:
            figures.update(await presented_certificates(
                address, check.port, check.server_name or check.target, deadline))
        return _failed(address, figures, FailureReason.TLS, str(exc))
    except tls.CaFileError as exc:
        return _failed(address, figures, FailureReason.ERROR, str(exc))
    except OSError as exc:
        reason, detail = connect_failure(exc, check.port)
        return _failed(address, figures, reason, detail)
    return CheckOutcome(ok=True, ip_version=address.version, figures=TcpFigures(**figures))


async def _tls_handshake(check: TcpCheck, sock: socket.socket) -> dict:
    try:
        context = tls.client_context(check.tls_verify, check.ca_file)
        _reader, writer, info = await tls.handshake(
            sock, context, check.server_name or check.target
        )
    except BaseException:
        sock.close()  # no-op when asyncio already closed it with its transport
        raise
    await tls.close_quietly(writer)
    return {"tls_s": info.handshake_s, "tls_version": info.version,
            "tls_cert_not_after": info.cert_not_after, **info.evidence}


def _failed(address: IPAddress, figures: dict, reason: FailureReason,
            detail: str) -> CheckOutcome:
    return CheckOutcome(ok=False, reason=reason, detail=detail[:500],
                        ip_version=address.version, figures=TcpFigures(**figures))
