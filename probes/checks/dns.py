"""DNS queries to a configured resolver. (Being built: run() is not written yet.)"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from probes.checks.base import CheckBase, CheckOutcome
from probes.measurement import DnsFigures


class DnsCheck(CheckBase):
    kind: Literal["dns"]
    # target: the resolver's IP address
    name: str = Field(min_length=1, max_length=253)
    record_type: Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR", "SRV"] = "A"
    port: int = Field(53, ge=1, le=65_535)
    expected_answers: list[str] | None = None


def no_figures() -> DnsFigures:
    return DnsFigures()


async def run(check: DnsCheck) -> CheckOutcome:
    raise NotImplementedError("the dns check is being built")
