"""Check kinds: one module each, all with the same signature
``async def run(check: <Kind>Check) -> CheckOutcome``, registered here. Their settings
are the shared core's (unhindered/checks/)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from probes.checks import dns, http, icmp, tcp
from probes.checks.base import CheckOutcome
from unhindered.checks import CheckBase, DnsCheck, HttpCheck, IcmpCheck, TcpCheck
from unhindered.measurement import (
    DnsMeasurement,
    HttpMeasurement,
    IcmpMeasurement,
    TcpFigures,
    TcpMeasurement,
)


@dataclass(frozen=True)
class CheckKind:
    config: type[CheckBase]
    run: Callable[[Any], Awaitable[CheckOutcome]]
    measurement: type
    no_figures: Callable[[], BaseModel]  # for a round that could not run at all


KINDS: dict[str, CheckKind] = {
    "icmp": CheckKind(IcmpCheck, icmp.run, IcmpMeasurement, icmp.no_figures),
    "tcp": CheckKind(TcpCheck, tcp.run, TcpMeasurement, TcpFigures),
    "http": CheckKind(HttpCheck, http.run, HttpMeasurement, http.no_figures),
    "dns": CheckKind(DnsCheck, dns.run, DnsMeasurement, dns.no_figures),
}

__all__ = ["KINDS", "CheckBase", "CheckKind", "CheckOutcome"]
