"""The path to a check's target as a probe recorded it (docs/path.md): one probe per TTL,
Paris-traceroute style, the address and RTT of whatever answered each TTL, and where the
path stopped. Carried on a measurement (`path`) and stored by the collector beside the
outage it explains; its own module so that the recorder (probes/path/, run in a
subprocess) and the wire type (unhindered/measurement.py) share it without a cycle.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# A TTL is 8 bits; paths longer than this are rare and a recording beyond it costs more
# than it tells. Also the bound of the probe's `path.max_hops`.
MAX_PATH_HOPS = 64
PathMethod = Literal["icmp", "udp", "tcp"]
Trigger = Literal["failure", "baseline"]
_Seconds = Annotated[float, Field(ge=0, le=3_600)]
_Packets = Annotated[int, Field(ge=0, le=10_000)]
_Bytes = Annotated[int, Field(ge=0, le=10_000_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _ip_text(value: str | None) -> str | None:
    """An IP address in its canonical text, so that hops compare as strings."""
    return None if value is None else str(ipaddress.ip_address(value))


class PathHop(_Strict):
    """What answered one TTL: a router's time-exceeded, an unreachable, or the target."""

    ttl: Annotated[int, Field(ge=1, le=MAX_PATH_HOPS)]
    address: Annotated[str, Field(max_length=45)] | None = None  # None: nothing answered
    rtt_s: _Seconds | None = None

    @field_validator("address")
    @classmethod
    def _canonical(cls, value: str | None) -> str | None:
        return _ip_text(value)

    @model_validator(mode="after")
    def _answered(self) -> PathHop:
        if (self.address is None) != (self.rtt_s is None):
            raise ValueError("a hop has both an address and an RTT, or neither")
        return self


class PathRecord(_Strict):
    """One path recording. `hops` hold every TTL from 1 up to the TTL the target answered
    or the last that anything answered (silent TTLs after it are left out, those before it
    kept with no address); `stopped_after_ttl` is that last answering TTL (0: nothing
    answered, no hops)."""

    method: PathMethod
    port: Annotated[int, Field(ge=1, le=65_535)] | None = None  # None for icmp
    address: Annotated[str, Field(max_length=45)]  # the target's address the probes went to
    trigger: Trigger = "failure"
    started_at: AwareDatetime
    duration_s: _Seconds
    hops: Annotated[list[PathHop], Field(max_length=MAX_PATH_HOPS)] = Field(
        default_factory=list)
    reached: bool  # the target itself answered
    stopped_after_ttl: Annotated[int, Field(ge=0, le=MAX_PATH_HOPS)]
    # The recording's own traffic, IP headers included (docs/path.md, "Cost").
    packets_sent: _Packets = 0
    packets_received: _Packets = 0
    bytes_sent: _Bytes = 0
    bytes_received: _Bytes = 0
    # Why the recording could not run (no raw socket, no route); hops are then empty.
    error: Annotated[str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")] | None \
        = None

    @field_validator("address")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))

    @field_validator("started_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> PathRecord:
        if (self.method == "icmp") != (self.port is None):
            raise ValueError("icmp has no port; udp and tcp need one")
        if [hop.ttl for hop in self.hops] != list(range(1, self.stopped_after_ttl + 1)):
            raise ValueError("hops must hold TTL 1 up to stopped_after_ttl, each once, "
                             "in order")
        if self.hops and self.hops[-1].address is None:
            raise ValueError("stopped_after_ttl must be a TTL that answered")
        if self.reached and (not self.hops or self.hops[-1].address != self.address):
            raise ValueError("a path that reached its target ends with the target's address")
        return self


def hop_addresses(record: PathRecord) -> list[str | None]:
    """The path as a list of addresses, TTL 1 first (None for a silent TTL)."""
    return [hop.address for hop in record.hops]
