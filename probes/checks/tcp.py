"""TCP connect: the time to complete the handshake with target:port."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from typing import Literal

from pydantic import Field

from probes.checks.base import CheckBase, CheckOutcome, ResolveError, resolve
from probes.measurement import FailureReason, TcpFigures

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


class TcpCheck(CheckBase):
    kind: Literal["tcp"]
    port: int = Field(ge=1, le=65_535)


async def run(check: TcpCheck) -> CheckOutcome:
    try:
        address = await resolve(check.target, check.ip_version)
    except ResolveError as exc:
        return CheckOutcome(ok=False, reason=FailureReason.DNS, detail=str(exc),
                            figures=TcpFigures())
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    loop = asyncio.get_running_loop()
    reason: FailureReason | None = None
    detail = None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(check.timeout_s):
                await loop.sock_connect(sock, (str(address), check.port))
        except TimeoutError:
            reason, detail = FailureReason.TIMEOUT, f"no answer within {check.timeout_s} s"
        except ConnectionRefusedError:
            reason, detail = FailureReason.REFUSED, f"port {check.port} refused the connection"
        except OSError as exc:
            unreachable = exc.errno in _UNREACHABLE
            reason = FailureReason.UNREACHABLE if unreachable else FailureReason.ERROR
            detail = exc.strerror or str(exc)
        elapsed = time.perf_counter() - started
    if reason is not None:
        return CheckOutcome(ok=False, reason=reason, detail=detail,
                            ip_version=address.version, figures=TcpFigures())
    return CheckOutcome(ok=True, ip_version=address.version,
                        figures=TcpFigures(connect_s=elapsed))
