"""State history: every (mission, check) machine, kept in step with the store's state
intervals, and each mission's access intervals combined from its checks.

Rounds that arrive in measurement order are fed to the check's machine as they come.
A round older than the newest one already seen (a second probe's backlog, a retry) makes
the check's history be replayed from that round's time: the machine restarts from the
stored state and window just before it, and the intervals from there on are rewritten.
All methods run on the collector's database thread.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable

from collector.state.hysteresis import Machine, Policy, Round, Transition
from collector.store.database import Store
from collector.store.schema import access_intervals
from unhindered.states import STATES, WORST_FIRST

log = logging.getLogger(__name__)

ALL_GROUPS = "*"
LOCAL_GROUP = "local"  # the probe's own gateway and resolver: diagnosis, not access
# Best first: a group has access when any of its checks is up.
_GROUP_ORDER = STATES
# Worst first: the mission has unhindered access only when every group has.
_MISSION_ORDER = WORST_FIRST


def round_of(m) -> Round:
    # The figures' fields differ by kind: read them from the model's __dict__, as a
    # getattr of a missing field goes through pydantic's slow __getattr__ (ingest's hot path).
    figures = m.figures.__dict__
    rtt = figures.get("rtt_median_s")
    if rtt is None:
        rtt = figures.get("connect_s")
    return Round(time=m.started_at.timestamp(), ok=m.ok,
                 reason=m.reason.value if m.reason else None, local_ok=m.local_ok,
                 loss_ratio=figures.get("loss_ratio"), rtt_s=rtt,
                 interval_s=m.interval_s)


def _one_transaction(method):
    """Runs the method's store calls as one transaction (see Store.transaction)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.store.transaction():
            return method(self, *args, **kwargs)
    return wrapper


class Timelines:
    def __init__(self, store: Store, policy_for: Callable[[str], Policy]) -> None:
        self.store = store
        self.policy_for = policy_for
        self.machines: dict[tuple[str, str], Machine] = {}
        self.groups: dict[tuple[str, str], str] = {}
        # The target of each check seen in rounds (an SNMP notification names none),
        # for telling a target down fleet-wide (collector/alerting/push.py).
        self.targets: dict[tuple[str, str], str] = {}
        # (mission, group) -> (state, since); group "*" is the mission's access.
        self.access: dict[tuple[str, str], tuple[str, float]] = {}
        self.changes = 0  # counts changes of states, so /metrics is rendered only after one
        # Called as observer(mission, group, state, since) when an access state changes:
        # the access-seconds counters and the direct alerts to Alertmanager.
        self.observers: list[Callable[[str, str, str, float], None]] = []

    # --- start-up ---

    @_one_transaction
    def load(self, latest: Iterable) -> None:
        """Rebuilds the machines after a restart. Each check's history is replayed from
        the start of its current period, which also repairs a crash between storing
        results and writing their intervals."""
        open_periods = {(r.mission, r.check_id): r.started_at for r in self.store.open_intervals()}
        missions: dict[str, float] = {}
        for m in latest:
            key = (m.mission, m.check_id)
            self.groups[key] = m.group
            self.targets[key] = m.target
            since = open_periods.get(key, 0.0)
            self._replay(key, since)
            missions[m.mission] = min(missions.get(m.mission, since), since)
        for mission, since in missions.items():
            self._combine(mission, since)

    # --- rounds in ---

    @_one_transaction
    def apply(self, measurements: Iterable) -> set[str]:
        """Folds newly stored measurements in; returns the missions whose state changed."""
        by_check: dict[tuple[str, str], list] = defaultdict(list)
        for m in measurements:
            by_check[(m.mission, m.check_id)].append(m)
        changed: dict[str, float] = {}
        for key, ms in by_check.items():
            self.groups[key] = ms[0].group
            self.targets[key] = ms[0].target
            rounds = sorted((round_of(m) for m in ms), key=lambda r: r.time)
            machine = self.machines.get(key)
            # Older than what the machine has seen or decided (a silence turned unknown
            # while these rounds waited at the probe): the history from there is replayed.
            newest = max(machine.last_time or 0.0, machine.since or 0.0) if machine else None
            if newest is None or rounds[0].time < newest:
                since = self._replay(key, rounds[0].time)
            else:
                transitions = [t for r in rounds for t in machine.feed(r)]
                since = self._persist(key, transitions)
            if since is not None:
                changed[key[0]] = min(changed.get(key[0], since), since)
        for mission, since in changed.items():
            self._combine(mission, since)
        return set(changed)

    @_one_transaction
    def tick(self, now: float) -> set[str]:
        """Turns silence into unknown; called periodically with the collector's clock."""
        changed: dict[str, float] = {}
        for key, machine in self.machines.items():
            transition = machine.silence(now)
            if transition is not None:
                self._persist(key, [transition])
                changed[key[0]] = min(changed.get(key[0], transition.time), transition.time)
        for mission, since in changed.items():
            self._combine(mission, since)
        return set(changed)

    @_one_transaction
    def confirm(self, mission: str, check_id: str, group: str | None, time: float,
                state: str, cause: str) -> bool:
        """A state change the probe itself confirmed (an SNMP checkDown or checkUp,
        docs/states.md): the check takes `state` from `time` on, without waiting for
        rounds. Returns False when it changes nothing (same state, or older than the
        current period)."""
        key = (mission, check_id)
        machine = self.machines.get(key)
        if machine is None:
            machine = self.machines[key] = Machine(self.policy_for(mission))
        self.groups.setdefault(key, group or "internet")
        if machine.state == state or (machine.since is not None and time < machine.since):
            return False
        # The rounds before the probe's decision are behind it: start the window afresh.
        machine.window.clear()
        if machine.last_time is not None:
            # Silence is judged from the newest evidence; a check known only from
            # notifications (no rounds) is never silent: it reports changes only.
            machine.last_time = max(machine.last_time, time)
        machine.state, machine.since = state, time
        self._persist(key, [Transition(time, state, cause)])
        self._combine(mission, time)
        return True

    def check_states(self) -> Iterable[tuple[str, str, str, str]]:
        """(mission, group, target, state) of every check whose target is known."""
        for key, target in self.targets.items():
            machine = self.machines.get(key)
            if machine is not None:
                yield key[0], self.groups.get(key, "internet"), target, machine.state

    # --- one check ---

    def _persist(self, key: tuple[str, str], transitions: list[Transition]) -> float | None:
        if not transitions:
            return None
        self.changes += 1
        for t in transitions:
            log.info("%s %s is %s since %.3f: %s", *key, t.state, t.time, t.cause)
        self.store.rewrite_intervals(key[0], key[1], transitions[0].time,
                                     [(t.time, t.state, t.cause) for t in transitions])
        return transitions[0].time

    def _replay(self, key: tuple[str, str], since: float) -> float:
        """Rebuilds the check's history from `since` on from the stored rounds."""
        mission, check_id = key
        policy = self.policy_for(mission)
        machine = Machine(policy)
        # The period covering `since`, or the one that ended just there.
        before = [r for r in self.store.intervals(mission, check_id, since - 1e-6)
                  if r.started_at < since]
        if before:
            machine.state, machine.since = before[-1].state, before[-1].started_at
        if machine.state != "unknown":
            # The window as it was just before `since` (empty after an unknown period).
            for m in self.store.rounds_before(mission, check_id, since, policy.window_n):
                r = round_of(m)
                machine.window.append(machine.classify(r))
                machine.last_time = r.time
                machine.interval_s = r.interval_s or machine.interval_s
        transitions = [t for m in self.store.rounds(mission, check_id, since)
                       for t in machine.feed(round_of(m))]
        self.store.rewrite_intervals(mission, check_id, since,
                                     [(t.time, t.state, t.cause) for t in transitions])
        self.machines[key] = machine
        self.changes += 1
        return since

    # --- a mission's access ---

    def _combine(self, mission: str, since: float) -> None:
        """Rewrites the mission's access intervals (per group and overall) from `since`."""
        self.changes += 1
        checks = [k for k in self.machines if k[0] == mission
                  and self.groups.get(k, "internet") != LOCAL_GROUP]
        histories = {k: self.store.intervals(mission, k[1], since) for k in checks}
        times = sorted({since} | {t for rows in histories.values() for r in rows
                                  for t in (r.started_at, r.ended_at)
                                  if t is not None and t > since})
        groups = sorted({self.groups.get(k, "internet") for k in checks})
        segments: dict[str, list[tuple[float, str, str]]] = {g: [] for g in [*groups, ALL_GROUPS]}
        for t in times:
            states = {k: _state_at(histories[k], t) for k in checks}
            per_group = {}
            for g in groups:
                # A check that did not exist yet at t says nothing about t.
                members = [states[k] for k in checks
                           if self.groups.get(k, "internet") == g and states[k] is not None]
                if not members:
                    continue
                per_group[g] = min(members, key=_GROUP_ORDER.index)
                up = sum(s == "up" for s in members)
                _extend(segments[g], t, per_group[g], f"{up} of {len(members)} checks up")
            overall = min(per_group.values(), key=_MISSION_ORDER.index) if per_group else "unknown"
            cause = ", ".join(f"{g} {s}" for g, s in per_group.items())
            _extend(segments[ALL_GROUPS], t, overall, cause)
        for group, rows in segments.items():
            self.store.rewrite_intervals(mission, group, since, rows, table=access_intervals)
            current = self.store.intervals(mission, group, since, table=access_intervals)
            if current:
                now = (current[-1].state, current[-1].started_at)
                if self.access.get((mission, group)) != now:
                    self.access[(mission, group)] = now
                    for observer in self.observers:
                        try:
                            observer(mission, group, *now)
                        except Exception:  # an observer must not stop the history
                            log.exception("access observer failed for %s %s", mission, group)


def _state_at(rows: list, t: float) -> str | None:
    """The state at t; None before the check's history begins."""
    if not rows or t < rows[0].started_at:
        return None
    for r in reversed(rows):
        if r.started_at <= t and (r.ended_at is None or t < r.ended_at):
            return r.state
    return "unknown"


def _extend(segments: list[tuple[float, str, str]], t: float, state: str, cause: str) -> None:
    if not segments or segments[-1][1] != state:
        segments.append((t, state, cause))
