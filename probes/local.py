"""Local context: the probe's own default gateway and resolver.

A target that fails while the mission's own gateway does not answer either is a fault
inside the mission, not an Internet outage. The probe checks both on a schedule, again
at once when another check fails or succeeds while the local side was last seen failing,
and stamps every result with `local_ok`. Like any check, a local one that changes outcome
is confirmed within seconds, so that its own state follows the gateway's promptly.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from unhindered.checks.base import CheckBase
from unhindered.checks.dns import DnsCheck
from unhindered.checks.icmp import IcmpCheck
from unhindered.measurement import AnyMeasurement
from unhindered.probing.base import RESOLV_CONF, first_nameserver

log = logging.getLogger(__name__)

GATEWAY_CHECK_ID = "local-gateway"
RESOLVER_CHECK_ID = "local-resolver"


class LocalSettings(BaseModel):
    """The `local:` section. `auto` reads the system's own configuration (the default
    route, /etc/resolv.conf); an address names it; `none` turns that check off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateway: str = Field("auto", description="auto, none, or the gateway's IP address")
    resolver: str = Field("auto", description="auto, none, or the resolver's IP address")
    resolver_name: str = Field(".", description="name asked of the resolver (NS record)")
    interval_s: float = Field(30, ge=1, le=3_600,
                              description="seconds between rounds of the local checks")

    @field_validator("gateway", "resolver")
    @classmethod
    def _address_or_keyword(cls, value: str) -> str:
        if value in ("auto", "none"):
            return value
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError("expected auto, none or an IP address") from None


def default_gateway(route_v4: Path = Path("/proc/net/route"),
                    route_v6: Path = Path("/proc/net/ipv6_route")) -> str | None:
    """The IPv4 default gateway, else the IPv6 one, from the kernel's routing tables."""
    try:
        for line in route_v4.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[1] == "00000000" and int(fields[3], 16) & 0x2:
                return str(ipaddress.IPv4Address(bytes.fromhex(fields[2])[::-1]))
    except OSError:
        pass
    try:
        for line in route_v6.read_text().splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[0] == "0" * 32 and fields[1] == "00" \
                    and fields[4] != "0" * 32:
                return str(ipaddress.IPv6Address(bytes.fromhex(fields[4])))
    except OSError:
        pass
    return None


def system_resolver(resolv_conf: Path = RESOLV_CONF) -> str | None:
    # The same reading as the resolver named in the tcp/http figures.
    return first_nameserver(resolv_conf)


class LocalContext:
    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.checks: list[CheckBase] = []
        gateway = default_gateway() if settings.gateway == "auto" else settings.gateway
        resolver = system_resolver() if settings.resolver == "auto" else settings.resolver
        if gateway and gateway != "none":
            self.checks.append(IcmpCheck(
                id=GATEWAY_CHECK_ID, kind="icmp", group="local", target=gateway,
                interval_s=settings.interval_s, timeout_s=1, count=3, packet_interval_s=0.2))
        elif settings.gateway == "auto":
            log.warning("no default gateway found: the local side is not checked for it")
        if resolver and resolver != "none":
            self.checks.append(DnsCheck(
                id=RESOLVER_CHECK_ID, kind="dns", group="local", target=resolver,
                name=settings.resolver_name, record_type="NS",
                interval_s=settings.interval_s, timeout_s=2))
        # check id -> (ok, monotonic time its round started)
        self._latest: dict[str, tuple[bool, float]] = {}
        self._success_recheck = float("-inf")  # monotonic; see recheck_on_success()

    def note(self, m: AnyMeasurement) -> None:
        if m.check_id in (GATEWAY_CHECK_ID, RESOLVER_CHECK_ID):
            self._latest[m.check_id] = (m.ok, time.monotonic() - m.duration_s)

    def stale(self, since: float) -> list[CheckBase]:
        """Local checks with no round started at or after `since` (monotonic): what a
        failure that began then must check again to know whose fault it was."""
        return [c for c in self.checks if self._latest.get(c.id, (False, -1e18))[1] < since]

    def recheck_on_success(self, recovered: bool) -> bool:
        """A round beyond the mission succeeded (`recovered`: its check's previous round
        had failed): whether to re-check the local side before stamping it. Yes when that
        side was last seen failing, for that verdict may be up to an interval old, and
        local_ok must be true evidence: rounds that reach their target again after a
        gateway fault must not carry the fault. The success alone is no proof: it shows
        the gateway forwards, not that the resolver answers. A recovery always re-checks;
        other successes at most once per interval_s, so that a resolver that stays down
        while targets answer costs one extra local round per interval, not one per round
        of every check."""
        if self.healthy() is not False:
            return False
        now = time.monotonic()
        if not recovered and now - self._success_recheck < self.settings.interval_s:
            return False
        self._success_recheck = now
        return True

    def healthy(self) -> bool | None:
        """None when nothing local is checked or measured yet."""
        known = [self._latest[c.id][0] for c in self.checks if c.id in self._latest]
        if not known:
            return None
        return all(known)

