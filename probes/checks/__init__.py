"""Check kinds: one module each, all with the same signature
``async def run(check: <Kind>Check) -> CheckOutcome``, registered here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

from probes.checks import dns, http, icmp, tcp
from probes.checks.base import CheckBase, CheckOutcome
from probes.measurement import (
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
    "icmp": CheckKind(icmp.IcmpCheck, icmp.run, IcmpMeasurement, icmp.no_figures),
    "tcp": CheckKind(tcp.TcpCheck, tcp.run, TcpMeasurement, TcpFigures),
    "http": CheckKind(http.HttpCheck, http.run, HttpMeasurement, http.no_figures),
    "dns": CheckKind(dns.DnsCheck, dns.run, DnsMeasurement, dns.no_figures),
}

CheckConfig = Annotated[
    icmp.IcmpCheck | tcp.TcpCheck | http.HttpCheck | dns.DnsCheck, Field(discriminator="kind")
]

__all__ = ["KINDS", "CheckBase", "CheckConfig", "CheckKind", "CheckOutcome"]
