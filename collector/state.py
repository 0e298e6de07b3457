"""The newest figures per (mission, check) and per probe, kept in memory for /metrics.
States (up, degraded, down, unknown) and their history live in collector/timeline.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

STATES = ("up", "degraded", "down", "unknown")


@dataclass
class CheckState:
    mission: str
    check_id: str
    kind: str
    group: str
    target: str
    probe_id: str
    last_started_at: float = 0.0
    last_ok: bool | None = None
    last_reason: str | None = None
    last_local_ok: bool | None = None
    figures: dict = field(default_factory=dict)
    rounds_total: int = 0
    rounds_failed: int = 0


@dataclass
class ProbeState:
    probe_id: str
    mission: str
    last_report_at: float = 0.0
    backlog: int | None = None
    results_total: int = 0


class FleetState:
    def __init__(self) -> None:
        self.checks: dict[tuple[str, str], CheckState] = {}
        self.probes: dict[str, ProbeState] = {}

    def apply(self, m, *, count: bool = True) -> None:
        """Folds one stored measurement in. Rounds are counted whatever their time;
        the current state follows only the newest measurement."""
        key = (m.mission, m.check_id)
        check = self.checks.get(key)
        if check is None:
            check = self.checks[key] = CheckState(
                mission=m.mission, check_id=m.check_id, kind=m.kind, group=m.group,
                target=m.target, probe_id=m.probe_id)
        if count:
            check.rounds_total += 1
            check.rounds_failed += 0 if m.ok else 1
        started = m.started_at.timestamp()
        if started < check.last_started_at:
            return
        check.kind, check.group, check.target = m.kind, m.group, m.target
        check.probe_id = m.probe_id
        check.last_started_at = started
        check.last_ok = m.ok
        check.last_reason = m.reason.value if m.reason else None
        check.last_local_ok = m.local_ok
        check.figures = m.figures.model_dump()

    def note_check(self, mission: str, check_id: str, kind: str, target: str,
                   probe_id: str, group: str = "internet") -> None:
        """Makes a check known before any round of it is stored (an SNMP notification
        about it), so that /metrics shows its state."""
        if (mission, check_id) not in self.checks:
            self.checks[(mission, check_id)] = CheckState(
                mission=mission, check_id=check_id, kind=kind, group=group,
                target=target, probe_id=probe_id)

    def note_report(self, probe_id: str, mission: str, results: int, backlog: int | None,
                    at: float | None = None) -> None:
        probe = self.probes.get(probe_id)
        if probe is None:
            probe = self.probes[probe_id] = ProbeState(probe_id, mission)
        probe.mission = mission
        probe.last_report_at = time.time() if at is None else at
        probe.backlog = backlog
        probe.results_total += results

    def load(self, latest: list, counts: dict[tuple[str, str], tuple[int, int]]) -> None:
        """Rebuilds the state from the store after a restart."""
        for m in latest:
            self.apply(m, count=False)
        for key, (total, failed) in counts.items():
            if key in self.checks:
                self.checks[key].rounds_total = total
                self.checks[key].rounds_failed = failed
