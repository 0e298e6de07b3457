"""What every check kind shares: the config fields, the outcome, target resolution."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from unhindered.measurement import MAX_ADDRESSES, FailureReason


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


@dataclass(frozen=True)
class Resolved:
    """The address a round connects to and, for a name, how it was found: the evidence a
    comparison with the centre's control needs (a resolver that lies, docs/protocol.md)."""

    address: IPAddress
    answers: list[str] | None = None  # a name's answer set, sorted; None for a literal
    resolver: str | None = None  # who answered it (system_resolver_name())

    def figures(self) -> dict[str, object]:
        if self.answers is None:
            return {}  # a literal: the target is the address, nothing was looked up
        return {"address": str(self.address), "dns_answers": self.answers,
                "resolver": self.resolver}


async def resolve(target: str, ip_version: int | None) -> IPAddress:
    """An IP literal is used as is; a name is looked up in the requested family only,
    so a host without IPv6 never silently measures something else."""
    return (await lookup(target, ip_version)).address


async def lookup(target: str, ip_version: int | None) -> Resolved:
    """As resolve(), with the answer set and the resolver of a name."""
    address = _literal(target)
    if address is not None:
        if ip_version is not None and address.version != ip_version:
            raise ResolveError(f"{target} is not an IPv{ip_version} address")
        return Resolved(address)
    family = {4: socket.AF_INET, 6: socket.AF_INET6, None: socket.AF_UNSPEC}[ip_version]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target, None, family=family, type=socket.SOCK_DGRAM
        )
    except OSError as exc:
        raise ResolveError(f"cannot resolve {target}: {exc}") from exc
    if ip_version is None and len({info[0] for info in infos}) > 1:
        raise ResolveError(f"{target} has IPv4 and IPv6 addresses: set ip_version")
    # Sorted as addresses (10.0.0.9 before 10.0.0.10), then as text for the wire.
    answers = sorted({ipaddress.ip_address(info[4][0]) for info in infos})
    return Resolved(ipaddress.ip_address(infos[0][4][0]),
                    [str(a) for a in answers[:MAX_ADDRESSES]], system_resolver_name())


RESOLV_CONF = Path("/etc/resolv.conf")
# resolv.conf path -> ((mtime, inode) when read, what it named); a path or two per process.
_nameservers: dict[Path, tuple[tuple[int, int], str]] = {}


def system_resolver_name(resolv_conf: Path = RESOLV_CONF) -> str:
    """The nameserver the system resolver asks first (/etc/resolv.conf's first), or
    "system" when none is listed. getaddrinfo() does not say which server answered (nor
    whether /etc/hosts did); the first nameserver is the one it asks first. Read again
    only when the file changes: a stat per round, not a parse."""
    try:
        info = resolv_conf.stat()
    except OSError:
        return "system"
    stamp = (info.st_mtime_ns, info.st_ino)
    cached = _nameservers.get(resolv_conf)
    if cached is None or cached[0] != stamp:
        cached = _nameservers[resolv_conf] = (stamp, first_nameserver(resolv_conf) or "system")
    return cached[1]


def first_nameserver(resolv_conf: Path = RESOLV_CONF) -> str | None:
    """The first nameserver line's address (a link-local zone dropped), None if none."""
    try:
        for line in resolv_conf.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                return str(ipaddress.ip_address(fields[1].split("%")[0]))
    except (OSError, ValueError):
        pass
    return None


@functools.lru_cache(maxsize=1024)
def _literal(target: str) -> IPAddress | None:
    """The target as an IP address, None for a name: parsed once per target, not once per
    round."""
    try:
        return ipaddress.ip_address(target)
    except ValueError:
        return None
