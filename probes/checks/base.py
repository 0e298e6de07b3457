"""What every check kind shares: the config fields, the outcome, target resolution."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from probes.measurement import FailureReason, Identifier


class CheckBase(BaseModel):
    """Fields common to every check in the probe's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier = Field(description="unique within the probe; names the check everywhere")
    group: Identifier = Field(
        "internet", description="what access the check proves, e.g. internet, documents"
    )
    target: str = Field(min_length=1, max_length=255, description="IP address or host name")
    interval_s: float = Field(
        30.0, ge=0.1, le=86_400, description="seconds between rounds (under 1 s: labs only)")
    timeout_s: float = Field(2.0, gt=0, le=60, description="seconds to wait for an answer")
    ip_version: Literal[4, 6] | None = Field(
        None, description="address family; required for a host name with both families"
    )
    confirm_count: int = Field(
        2, ge=0, le=10,
        description="after a round that changes the outcome, re-check up to this many times")
    confirm_interval_s: float = Field(
        2.0, ge=0.1, le=60, description="seconds between confirmation rounds")


class CheckOutcome(BaseModel):
    """What a check function returns; the runner wraps it into a Measurement."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

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
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        pass
    else:
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
