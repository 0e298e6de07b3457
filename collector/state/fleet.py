"""The newest figures per (mission, check) and per probe, kept in memory for /metrics.
States (up, degraded, down, unknown) and their history live in collector/state/timeline.py."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


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
    figures_model: Any = None  # the newest round's figures, as its pydantic model
    rounds_total: int = 0
    rounds_failed: int = 0
    # Counts every change, so /metrics can keep the check's lines until the next one.
    revision: int = 0

    @property
    def figures(self) -> dict:
        """The newest round's figures as a dict; dumped when read, not on ingest."""
        return self.figures_model.model_dump() if self.figures_model is not None else {}


@dataclass
class ProbeState:
    probe_id: str
    mission: str
    last_report_at: float = 0.0
    backlog: int | None = None
    results_total: int = 0
    dropped: int | None = None  # results its outbox dropped unsent, as it last reported


class FleetState:
    def __init__(self) -> None:
        self.checks: dict[tuple[str, str], CheckState] = {}
        self.probes: dict[str, ProbeState] = {}
        self.changes = 0  # counts every change, so /metrics is rendered only after one

    def apply(self, m, *, count: bool = True) -> None:
        """Folds one stored measurement in. Rounds are counted whatever their time;
        the current state follows only the newest measurement."""
        self.changes += 1
        key = (m.mission, m.check_id)
        check = self.checks.get(key)
        if check is None:
            check = self.checks[key] = CheckState(
                mission=m.mission, check_id=m.check_id, kind=m.kind, group=m.group,
                target=m.target, probe_id=m.probe_id)
        check.revision += 1
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
        check.figures_model = m.figures

    def note_check(self, mission: str, check_id: str, kind: str, target: str,
                   probe_id: str, group: str = "internet") -> None:
        """Makes a check known before any round of it is stored (an SNMP notification
        about it), so that /metrics shows its state."""
        if (mission, check_id) not in self.checks:
            self.changes += 1
            self.checks[(mission, check_id)] = CheckState(
                mission=mission, check_id=check_id, kind=kind, group=group,
                target=target, probe_id=probe_id)

    def note_report(self, probe_id: str, mission: str, results: int, backlog: int | None,
                    at: float | None = None, dropped: int | None = None) -> None:
        self.changes += 1
        probe = self.probes.get(probe_id)
        if probe is None:
            probe = self.probes[probe_id] = ProbeState(probe_id, mission)
        probe.mission = mission
        probe.last_report_at = time.time() if at is None else at
        probe.backlog = backlog
        probe.results_total += results
        if dropped is not None:  # older probes do not report it
            probe.dropped = dropped

    def load(self, latest: list, counts: dict[tuple[str, str], tuple[int, int]]) -> None:
        """Rebuilds the state from the store after a restart."""
        for m in latest:
            self.apply(m, count=False)
        for key, (total, failed) in counts.items():
            if key in self.checks:
                check = self.checks[key]
                check.rounds_total, check.rounds_failed = total, failed
                check.revision += 1
