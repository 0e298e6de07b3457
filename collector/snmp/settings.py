"""The `snmp:` section of the collector's configuration (docs/snmp-collector.md)."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from unhindered.measurement import Identifier, MissionCode

# One rule for communities on both sides (not public, private or empty).
from unhindered.snmp.settings import SnmpUser
from unhindered.snmp.settings import _refuse_public as refuse_public

Community = Annotated[str, Field(min_length=1, max_length=64)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credentials(_Section):
    """Exactly one of `community` (SNMPv2c) or `user` (SNMPv3 authPriv, HMAC-SHA-256 and
    AES-128: the same user settings as the probe's, keys inline or in files)."""

    community: Community | None = Field(
        None, description="SNMPv2c community (not public, private or empty); or user")
    user: SnmpUser | None = Field(None, description="SNMPv3 user (authPriv); or community")

    @model_validator(mode="after")
    def _one_of(self) -> Credentials:
        if (self.community is None) == (self.user is None):
            raise ValueError("give exactly one of community (SNMPv2c) or user (SNMPv3)")
        if self.community is not None:
            refuse_public(self.community)
        return self


class TrapSender(Credentials):
    """Notifications signed with these credentials come from this probe (registered with
    `probes add`); any other probe id or mission in them is dropped."""

    probe_id: Identifier = Field(description="the probe these notifications come from")


def _ip(value: str) -> str:
    try:
        ip_address(value)
    except ValueError:
        raise ValueError("expected an IP address (no host names: nothing is looked up)"
                         ) from None
    return value


IpAddress = Annotated[str, AfterValidator(_ip)]


class ReceiverSettings(_Section):
    host: IpAddress = Field("127.0.0.1", description="address to receive notifications on")
    port: int = Field(162, ge=1, le=65_535, description="UDP port to receive on")
    senders: tuple[TrapSender, ...] = Field(
        (), description="the probes allowed to notify, each with its own credentials")

    @model_validator(mode="after")
    def _distinct(self) -> ReceiverSettings:
        seen: set[str] = set()
        for sender in self.senders:
            key = sender.community or f"user {sender.user.name}"  # type: ignore[union-attr]
            if key in seen:
                raise ValueError(f"{key!r} is given to two probes: each probe needs its own")
            seen.add(key)
        return self


class Agent(Credentials):
    """Something to poll: a probe's agent or a mission's router."""

    mission: MissionCode = Field(description="the mission it belongs to")
    address: IpAddress = Field(description="its IP address (no host names)")
    port: int = Field(161, ge=1, le=65_535, description="its agent's UDP port")
    interval_s: float = Field(30, ge=1, le=86_400, description="seconds between polls")
    timeout_s: float = Field(2, gt=0, le=60, description="wait for each answer")
    retries: int = Field(1, ge=0, le=10, description="re-sends of an unanswered request")


class ProbeAgent(Agent):
    probe_id: Identifier = Field(description="the probe's id, as registered")


class Router(Agent):
    name: Identifier = Field(description="the router's name in the metrics' router label")
    max_interfaces: int = Field(64, ge=1, le=4096,
                                description="interfaces exported at most (label cardinality)")


class SnmpSettings(_Section):
    receiver: ReceiverSettings | None = Field(
        None, description="receive the probes' notifications; off unless set")
    probes: tuple[ProbeAgent, ...] = Field((), description="probe agents to poll")
    routers: tuple[Router, ...] = Field(
        (), description="mission routers whose IF-MIB is polled, for the dashboards")

    @property
    def enabled(self) -> bool:
        return bool(self.receiver or self.probes or self.routers)
