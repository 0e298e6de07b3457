"""TCP connect: the time to complete the handshake with target:port, then optionally a TLS
handshake (its time, version and the earliest certificate expiry of the chain)."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from probes.checks import tls
from probes.checks.base import CheckBase, CheckOutcome, IPAddress, ResolveError, resolve
from probes.configfile import resolve_path
from probes.measurement import FailureReason, TcpFigures

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


class TcpCheck(CheckBase):
    kind: Literal["tcp"]
    port: int = Field(ge=1, le=65_535)
    tls: bool = Field(False, description="do a TLS handshake after connecting")
    server_name: str | None = Field(
        None, min_length=1, max_length=253,
        description="TLS: name sent as SNI and verified; default the target",
    )
    tls_verify: bool = Field(True, description="TLS: verify the chain and the name")
    ca_file: Path | None = Field(
        None, description="TLS: PEM file of trusted CAs, replacing the system's"
    )

    @field_validator("ca_file")
    @classmethod
    def _relative_to_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

    @model_validator(mode="after")
    def _tls_fields_need_tls(self) -> TcpCheck:
        # Silently ignoring them would leave an operator believing TLS is checked.
        if not self.tls and (self.server_name or self.ca_file or not self.tls_verify):
            raise ValueError("server_name, ca_file and tls_verify need tls: true")
        return self


def connect_failure(exc: OSError, port: int) -> tuple[FailureReason, str]:
    """The failure reason and detail for a TCP connect that raised `exc`."""
    if isinstance(exc, ConnectionRefusedError):
        return FailureReason.REFUSED, f"port {port} refused the connection"
    if exc.errno == errno.ETIMEDOUT:  # the kernel gave up retrying the SYN
        return FailureReason.TIMEOUT, exc.strerror or str(exc)
    if exc.errno in _UNREACHABLE:
        return FailureReason.UNREACHABLE, exc.strerror or str(exc)
    return FailureReason.ERROR, exc.strerror or str(exc)


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


async def run(check: TcpCheck) -> CheckOutcome:
    try:
        address = await resolve(check.target, check.ip_version)
    except ResolveError as exc:
        return CheckOutcome(ok=False, reason=FailureReason.DNS, detail=str(exc),
                            figures=TcpFigures())
    figures: dict = {}
    phase = "TCP connect"
    try:
        async with asyncio.timeout(check.timeout_s):
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
            "tls_cert_not_after": info.cert_not_after}


def _failed(address: IPAddress, figures: dict, reason: FailureReason,
            detail: str) -> CheckOutcome:
    return CheckOutcome(ok=False, reason=reason, detail=detail[:500],
                        ip_version=address.version, figures=TcpFigures(**figures))
