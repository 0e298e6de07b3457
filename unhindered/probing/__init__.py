"""Check kinds: one module each, all with the same signature
``async def run(check: <Kind>Check) -> CheckOutcome``, registered here. Their settings
live apart (unhindered/checks/), so that validating a config loads none of this.

In the shared core, not in the probe: the collector's control measurements
(collector/control/) run the same code from the centre, so that a mission's view and
the centre's differ only by where they were measured, never by how."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from unhindered.checks import CheckBase, DnsCheck, HttpCheck, IcmpCheck, TcpCheck
from unhindered.measurement import (
    DnsMeasurement,
    HttpMeasurement,
    IcmpMeasurement,
    TcpFigures,
    TcpMeasurement,
)
from unhindered.probing import dns, http, icmp, tcp
from unhindered.probing.base import CheckOutcome


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
