"""What every check kind shares: the config fields, the outcome, target resolution."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from unhindered.measurement import FailureReason


@dataclass(frozen=True, kw_only=True)
class CheckOutcome:
    """What a check function returns; the runner wraps it into a Measurement, whose
    validation checks every field (so not validated twice here)."""

    ok: bool
    reason: FailureReason | None = None
    detail: str | None = None
    ip_version: Literal[4, 6] | None = None
    figures: BaseModel


class ResolveError(Exception):
    pass


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


async def resolve(target: str, ip_version: int | None) -> IPAddress:
    """An IP literal is used as is; a name is looked up in the requested family only,
    so a host without IPv6 never silently measures something else."""
    address = _literal(target)
    if address is not None:
        if ip_version is not None and address.version != ip_version:
            raise ResolveError(f"{target} is not an IPv{ip_version} address")
        return address
    family = {4: socket.AF_INET, 6: socket.AF_INET6, None: socket.AF_UNSPEC}[ip_version]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target, None, family=family, type=socket.SOCK_DGRAM
        )
    except OSError as exc:
        raise ResolveError(f"cannot resolve {target}: {exc}") from exc
    if ip_version is None and len({info[0] for info in infos}) > 1:
        raise ResolveError(f"{target} has IPv4 and IPv6 addresses: set ip_version")
    return ipaddress.ip_address(infos[0][4][0])


@functools.lru_cache(maxsize=1024)
def _literal(target: str) -> IPAddress | None:
    """The target as an IP address, None for a name: parsed once per target, not once per
    round."""
    try:
        return ipaddress.ip_address(target)
    except ValueError:
        return None
