"""Each check's newest round and its confirmed state, kept by the probe as it measures and
read by the SNMP agent (the check table) and notifier (checkDown, checkUp, accessLost,
accessRestored). No SNMP here: it is kept whether or not SNMP is configured, and it is small
(one entry per check).

States (docs/snmp.md): `unknown` before the first confirmed round; `down` once a failure is
confirmed (the failed round and all its confirmation rounds failed); `up` once a success is
confirmed, `degraded` instead when that success lost packets. A round with the same outcome
as the round before needs no confirmation, so up and degraded follow the newest such round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum

from unhindered.measurement import AnyMeasurement
from unhindered.probing import CheckBase

log = logging.getLogger(__name__)
LOCAL_GROUP = "local"  # the probe's own side: left out of the mission's access state
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class State(IntEnum):
    """The values of UNHINDERED-MIB's UnhState."""

    UP = 1
    DEGRADED = 2
    DOWN = 3
    UNKNOWN = 4


def state_of(m: AnyMeasurement) -> State:
    if not m.ok:
        return State.DOWN
    loss = getattr(m.figures, "loss_ratio", 0.0)
    return State.DEGRADED if loss > 0 else State.UP


@dataclass
class CheckState:
    check_id: str
    kind: str
    target: str
    group: str
    index: int  # the check table's row, stable while the probe runs
    state: State = State.UNKNOWN
    since: datetime = EPOCH  # measurement time the current state began
    newest: AnyMeasurement | None = None
    newest_seq: int = 0


@dataclass(frozen=True)
class Change:
    """A confirmed change of a check's state, or of the mission's access state (check
    None)."""

    check: CheckState | None
    old: State
    new: State
    at: datetime


@dataclass
class CheckStates:
    checks: dict[str, CheckState] = field(default_factory=dict)
    access: State = State.UNKNOWN
    access_since: datetime = EPOCH
    listeners: list[Callable[[Change], None]] = field(default_factory=list)
    _next_index: int = 1

    def _entry(self, check: CheckBase | AnyMeasurement) -> CheckState:
        check_id = check.id if isinstance(check, CheckBase) else check.check_id
        kind, target, group = check.kind, check.target, check.group  # type: ignore[attr-defined]
        entry = self.checks.get(check_id)
        if entry is None or (entry.kind, entry.target, entry.group) != (kind, target, group):
            # A new check, or one a reload changed: a new row, its history starts again.
            entry = CheckState(check_id, kind, target, group, self._next_index)
            self._next_index += 1
            self.checks[check_id] = entry
        return entry

    def configure(self, checks: list[CheckBase]) -> None:
        """The checks the probe runs now (at start, after a reload): one row each."""
        for check in checks:
            self._entry(check)
        for check_id in set(self.checks) - {c.id for c in checks}:
            del self.checks[check_id]
        self._update_access(datetime.now(UTC))

    def measured(self, m: AnyMeasurement, seq: int) -> None:
        """A round ended and its result got `seq` in the outbox."""
        entry = self._entry(m)
        entry.newest, entry.newest_seq = m, seq

    def confirmed(self, m: AnyMeasurement, began: datetime) -> None:
        """`m`'s outcome is confirmed; if the state changes, it began with the round
        measured at `began`."""
        entry = self._entry(m)
        new = state_of(m)
        if new == entry.state:
            return
        old, entry.state, entry.since = entry.state, new, began
        self._tell(Change(entry, old, new, began))
        self._update_access(began)

    def _update_access(self, at: datetime) -> None:
        known = [c.state for c in self.checks.values()
                 if c.group != LOCAL_GROUP and c.state != State.UNKNOWN]
        # Worst of: down, then degraded, then up; unknown only when nothing is known.
        new = max(known, key=(State.UP, State.DEGRADED, State.DOWN).index, default=State.UNKNOWN)
        if new != self.access:
            old, self.access, self.access_since = self.access, new, at
            self._tell(Change(None, old, new, at))

    def _tell(self, change: Change) -> None:
        for listener in self.listeners:
            try:
                listener(change)
            except Exception:  # a failing notifier must not stop the measurements
                log.exception("a listener failed on %s", change)

    def rows(self) -> list[CheckState]:
        return sorted(self.checks.values(), key=lambda c: c.index)
