"""Which targets the centre measures: the fleet's checks, reduced to what the centre can
reproduce and deduplicated, so that 195 missions checking one site cost one control.

Two sources, read together:
- the central check lists (collector/inventory/central.py) give a check's full settings,
  exactly as the probe that fetched them runs it;
- the stored results give only kind and target for a probe's own (local) checks: an
  http URL is enough to measure (with default settings), an icmp host too; a tcp port or
  a dns query name is not on the wire, so those local checks are left out, with why.
  Only with control.probe_checks: a probe's own target is its credential holder's
  choice, not the centre's operators', and the centre would fetch it.

A control is keyed by kind and every setting that changes what is measured (not the
check's id, group, interval or confirmations): two checks with the same key measure the
same thing, whichever missions run them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from collector.control.settings import ControlSettings
from unhindered.checks import CheckBase, CheckConfig, DnsCheck, HttpCheck, IcmpCheck, TcpCheck

CONTROL_ID = "control"
# Settings that say when or how often, or how a check is named and grouped: not what.
_NOT_WHAT = {"id", "group", "interval_s", "confirm_count", "confirm_interval_s"}
_CHECK = TypeAdapter(CheckConfig)


@dataclass(frozen=True)
class FleetCheck:
    """A check as the stored results tell it (collector/state/fleet.py's CheckState)."""

    mission: str
    check_id: str
    probe_id: str
    kind: str
    target: str


@dataclass(frozen=True)
class ControlTarget:
    key: str  # 16 hex digits of a hash of kind and settings
    kind: str
    check: CheckBase  # what the control runs: the kind's own settings model
    label: str  # for people and the metrics' target label: URL, host:port, name @resolver

    @property
    def target(self) -> str:
        return self.check.target


@dataclass
class Plan:
    targets: dict[str, ControlTarget] = field(default_factory=dict)
    by_check: dict[tuple[str, str], str] = field(default_factory=dict)  # (mission, check)->key
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)  # (mission, check)->why


def control_key(check: CheckBase) -> str:
    settings = check.model_dump(mode="json", exclude=_NOT_WHAT)
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def label_of(check: CheckBase) -> str:
    if isinstance(check, DnsCheck):
        return f"{check.name} {check.record_type} @{check.target}"
    if isinstance(check, TcpCheck):
        return f"{check.target}:{check.port}" + ("/tls" if check.tls else "")
    return check.target


def _host(check: CheckBase) -> str | None:
    return urlsplit(check.target).hostname if isinstance(check, HttpCheck) else check.target


def _is_private(host: str | None) -> bool:
    """Whether `host` is an IP literal of a private, loopback or link-local network. A name
    cannot be told before it is resolved, and is measured."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def reproduce(check: CheckBase, settings: ControlSettings, icmp_ok: bool
              ) -> CheckBase | str:
    """The check the centre runs for `check`, or why it cannot."""
    if isinstance(check, IcmpCheck) and not (settings.icmp and icmp_ok):
        return ("icmp: the collector may not open an ICMP socket" if settings.icmp
                else "icmp: control.icmp is off")
    ca_file = getattr(check, "ca_file", None)
    if ca_file is not None and not Path(ca_file).is_file():
        return f"its ca_file {ca_file} is a file on the probes, not at the centre"
    reset = {"id": CONTROL_ID, "group": "internet", "confirm_count": 0}
    if isinstance(check, DnsCheck) and settings.resolver is not None:
        # The centre's resolver stands in for the mission's (often a private address).
        return check.model_copy(update=reset | {"target": settings.resolver,
                                                "ip_version": None})
    if not settings.private_targets and _is_private(_host(check)):
        return (f"{_host(check)} is a private address: it names a different host at each "
                "mission (control.private_targets)")
    return check.model_copy(update=reset)


def from_result(fleet: FleetCheck) -> CheckBase | str:
    """A probe's own check rebuilt from what its results carry: kind and target."""
    try:
        if fleet.kind == "http":
            return HttpCheck(id=CONTROL_ID, kind="http", target=fleet.target)
        if fleet.kind == "icmp":
            return IcmpCheck(id=CONTROL_ID, kind="icmp", target=fleet.target)
    except ValidationError as exc:
        return f"its target cannot be measured: {exc.errors()[0]['msg']}"
    if fleet.kind == "tcp":
        return "tcp: the port of a probe's own check is not in its results (use a central check)"
    if fleet.kind == "dns":
        return ("dns: the name a probe's own check asks is not in its results (use a "
                "central check)")
    return f"unknown kind {fleet.kind}"


Central = Callable[[str, str], tuple[list[dict], str]]  # CentralChecks.for_probe


class Planner:
    """Builds plans, remembering what each check became (its control, or why none) by
    the version of its probe's central list, or by kind and target for a probe's own
    check: the fleet is read again every 30 s on the event loop, and 4,000 checks
    validated and hashed each time would hold it for half a second."""

    MAX_REMEMBERED = 10_000  # versions and targets; forgotten all at once beyond

    def __init__(self, settings: ControlSettings, icmp_ok: bool) -> None:
        self.settings = settings
        self.icmp_ok = icmp_ok
        self._central: dict[str, dict[str, dict]] = {}  # version -> id -> settings
        self._made: dict[tuple, ControlTarget | str] = {}

    def _target(self, memo: tuple, make: Callable[[], CheckBase | str]
                ) -> ControlTarget | str:
        made = self._made.get(memo)
        if made is None:
            if len(self._made) >= self.MAX_REMEMBERED:
                self._made.clear()
            check = make()
            if not isinstance(check, str):
                check = reproduce(check, self.settings, self.icmp_ok)
            if isinstance(check, str):
                made = check
            else:
                key = control_key(check)
                # Its own id: per-check state of the check code (icmp's running jitter)
                # must not mix two targets.
                check = check.model_copy(update={"id": f"{CONTROL_ID}-{key}"})
                made = ControlTarget(key, check.kind, check, label_of(check))
            self._made[memo] = made
        return made

    def build(self, fleet: Iterable[FleetCheck], central: Central | None) -> Plan:
        """The targets to measure. `central(probe_id, mission)`: the probe's central checks
        and their version (CentralChecks.for_probe); None without central check lists."""
        plan = Plan()
        lists: dict[tuple[str, str], tuple[dict[str, dict], str]] = {}
        candidates: dict[str, ControlTarget] = {}
        users: dict[str, int] = {}
        for f in fleet:
            made: ControlTarget | str | None = None
            if central is not None:
                if (f.probe_id, f.mission) not in lists:
                    lists[(f.probe_id, f.mission)] = self._central_list(
                        *central(f.probe_id, f.mission))
                by_id, version = lists[(f.probe_id, f.mission)]
                settings_of = by_id.get(f.check_id)
                if settings_of is not None and settings_of.get("kind") == f.kind:
                    made = self._target(("central", version, f.check_id),
                                        lambda s=settings_of: _validated(s))
            if made is None:
                made = self._target(("result", f.kind, f.target), lambda f=f: self._own(f))
            if isinstance(made, str):
                plan.skipped[(f.mission, f.check_id)] = made
                continue
            candidates.setdefault(made.key, made)
            users[made.key] = users.get(made.key, 0) + 1
            plan.by_check[(f.mission, f.check_id)] = made.key
        _bound(plan, candidates, users, self.settings.max_targets)
        return plan

    def _own(self, f: FleetCheck) -> CheckBase | str:
        if not self.settings.probe_checks:
            return "a probe's own check, and control.probe_checks is off"
        return from_result(f)

    def _central_list(self, checks: list[dict], version: str) -> tuple[dict[str, dict], str]:
        by_id = self._central.get(version)
        if by_id is None:
            if len(self._central) >= self.MAX_REMEMBERED:
                self._central.clear()
            by_id = self._central[version] = {c["id"]: c for c in checks}
        return by_id, version


def _validated(settings_of: dict) -> CheckBase | str:
    try:
        return _CHECK.validate_python(settings_of)
    except ValidationError as exc:
        return f"its central settings do not validate: {exc.errors()[0]['msg']}"


def _bound(plan: Plan, candidates: dict[str, ControlTarget], users: dict[str, int],
           max_targets: int) -> None:
    # Beyond the bound, the targets most missions share are kept.
    kept = sorted(candidates, key=lambda k: (-users[k], k))[:max_targets]
    plan.targets = {k: candidates[k] for k in sorted(kept)}
    for check_key, key in list(plan.by_check.items()):
        if key not in plan.targets:
            del plan.by_check[check_key]
            plan.skipped[check_key] = f"beyond control.max_targets ({max_targets})"
    # Two targets with one label (settings differ elsewhere) stay apart in the metrics.
    labels: dict[str, int] = {}
    for t in plan.targets.values():
        labels[t.label] = labels.get(t.label, 0) + 1
    for key, t in plan.targets.items():
        if labels[t.label] > 1:
            plan.targets[key] = ControlTarget(key, t.kind, t.check, f"{t.label} #{key[:6]}")


def build(fleet: Iterable[FleetCheck], central: Central | None, settings: ControlSettings,
          icmp_ok: bool) -> Plan:
    """One plan, remembering nothing (Planner.build)."""
    return Planner(settings, icmp_ok).build(fleet, central)
