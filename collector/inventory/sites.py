"""The mission inventory: which sites are monitored, what they are, where, who to tell,
the thresholds their checks are judged by, and their maintenance windows.

One YAML file (docs/inventory.md), validated like every config file of the project: a
mistake is reported with the file, line, field and what was expected (unhindered.configfile).
The shipped default (collector/data/inventory.yaml) lists the 193 Member States and the 2
Observer States at their Permanent Missions in New York; the operator adds observer
organisations and NGOs, contacts, thresholds and maintenance.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from collector.inventory.maintenance import (
    MaintenanceWindow,
    Schedule,
    TimeZoneName,
    check,
    invalid_at,
)
from collector.state.hysteresis import Policy
from unhindered.configfile import load_model
from unhindered.measurement import Identifier, MissionCode

DEFAULT_INVENTORY_PATH = Path(__file__).resolve().parents[1] / "data" / "inventory.yaml"

Kind = Literal["member_state", "observer_state", "observer_organization", "ngo"]
STATE_KINDS = ("member_state", "observer_state")
_ALPHA3 = re.compile(r"^[A-Z]{3}$")

# Where Permanent Missions are accredited: the four headquarters duty stations and the
# seats of the regional commissions. A closed list, so that a typo does not invent a duty
# station on the dashboards; add to it when a new one is needed.
DutyStation = Literal["New York", "Geneva", "Vienna", "Nairobi",
                      "Addis Ababa", "Bangkok", "Beirut", "Santiago"]
DUTY_STATIONS: tuple[str, ...] = get_args(DutyStation)

# The WHATWG HTML definition of a valid e-mail address (what browsers accept in
# <input type=email>), with at least one dot in the domain: alerts go to real domains.
# Syntax only, no DNS look-up: validating must work offline.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def _check_email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("expected an e-mail address such as noc@example.org")
    return value


Email = Annotated[str, AfterValidator(_check_email)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Section):
    """Over either, a successful round is `poor` (the check goes `degraded`). A value left
    out falls back to defaults.thresholds, then to the collector's policy."""

    loss_pct: float | None = Field(None, ge=0, le=100, description="ICMP loss, percent")
    rtt_ms: float | None = Field(None, gt=0, le=60_000,
                                 description="ICMP median RTT or TCP connect time, ms")


class Coordinates(_Section):
    lat: float = Field(ge=-90, le=90, description="degrees north, WGS 84")
    lon: float = Field(ge=-180, le=180, description="degrees east, WGS 84")


class ProbeNote(_Section):
    """A note on one of the mission's probes (its id as registered at the collector)."""

    id: Identifier
    note: str = Field("", max_length=500)


class Mission(_Section):
    code: MissionCode
    name: Text
    kind: Kind
    duty_station: DutyStation
    city: Text
    coordinates: Coordinates
    timezone: TimeZoneName | None = Field(
        None, description="default zone of the mission's maintenance windows")
    contacts: tuple[Email, ...] = ()
    thresholds: Thresholds | None = None
    maintenance: tuple[MaintenanceWindow, ...] = ()
    probes: tuple[ProbeNote, ...] = ()

    @model_validator(mode="after")
    def _state_codes_are_iso(self) -> Mission:
        if self.kind in STATE_KINDS and not _ALPHA3.match(self.code):
            message = (f"expected the State's ISO 3166-1 alpha-3 code (three letters, e.g. "
                       f"FRA) for kind {self.kind}")
            raise invalid_at("Mission", [(("code",), message, self.code)])
        return self

    def schedule(self, default_timezone: str | None = None) -> Schedule:
        """The mission's maintenance; wall-clock times default to the mission's time zone,
        then to `default_timezone` (the inventory's)."""
        return Schedule(self.maintenance, self.timezone or default_timezone)


class Defaults(_Section):
    thresholds: Thresholds = Thresholds()
    timezone: TimeZoneName | None = Field(
        None, description="zone of maintenance windows whose mission gives none")


class Inventory(_Section):
    defaults: Defaults = Defaults()
    missions: tuple[Mission, ...] = ()

    _by_code: dict[str, Mission] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _across_missions(self) -> Inventory:
        # Rules that look at more than one entry, each reported at the entry concerned.
        problems: list[tuple[tuple, str, Any]] = []
        first_code: dict[str, int] = {}
        first_probe: dict[str, str] = {}
        for i, mission in enumerate(self.missions):
            if mission.code in first_code:
                problems.append((("missions", i, "code"),
                                 f"code {mission.code} is used twice (first at "
                                 f"missions[{first_code[mission.code]}])", mission.code))
            first_code.setdefault(mission.code, i)
            for j, probe in enumerate(mission.probes):
                if probe.id in first_probe:
                    problems.append((("missions", i, "probes", j, "id"),
                                     f"probe id {probe.id} is listed twice (also under "
                                     f"{first_probe[probe.id]})", probe.id))
                first_probe.setdefault(probe.id, mission.code)
            for j, window in enumerate(mission.maintenance):
                message = check(window, mission.timezone or self.defaults.timezone)
                if message is not None:
                    field, given = window.first_time()
                    problems.append((("missions", i, "maintenance", j, field), message, given))
        if problems:
            raise invalid_at("Inventory", problems)
        self._by_code = {m.code: m for m in self.missions}
        return self

    def mission(self, code: str) -> Mission:
        try:
            return self._by_code[code]
        except KeyError:
            raise KeyError(f"mission {code} is not in the inventory") from None

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def thresholds_for(self, code: str) -> Thresholds:
        """The mission's thresholds, each missing one taken from defaults.thresholds. A
        mission not in the inventory gets the defaults: a probe registered before its
        mission is listed is still judged."""
        own = self._by_code[code].thresholds if code in self._by_code else None
        fallback = self.defaults.thresholds
        if own is None:
            return fallback
        return Thresholds(
            loss_pct=own.loss_pct if own.loss_pct is not None else fallback.loss_pct,
            rtt_ms=own.rtt_ms if own.rtt_ms is not None else fallback.rtt_ms)

    def policy_for(self, code: str, base: Policy) -> Policy:
        """`base` (the collector's hysteresis settings) with the mission's loss and RTT
        thresholds; a threshold set nowhere in the inventory keeps base's value."""
        t = self.thresholds_for(code)
        return dataclasses.replace(
            base,
            loss_pct=t.loss_pct if t.loss_pct is not None else base.loss_pct,
            rtt_ms=t.rtt_ms if t.rtt_ms is not None else base.rtt_ms)

    def schedule(self, code: str) -> Schedule:
        """The mission's maintenance windows (none for a mission not in the inventory)."""
        if code not in self._by_code:
            return Schedule((), self.defaults.timezone)
        return self._by_code[code].schedule(self.defaults.timezone)


def load_inventory(path: Path) -> Inventory:
    """The inventory in `path`; unhindered.configfile.ConfigError naming file, line, field and
    expectation for each mistake."""
    return load_model(Path(path), Inventory)


@lru_cache(maxsize=1)
def default_inventory() -> Inventory:
    """The shipped inventory: 193 Member States and 2 Observer States, New York."""
    return load_inventory(DEFAULT_INVENTORY_PATH)
