"""State history: every (mission, check) machine, kept in step with the store's state
intervals, and each mission's access intervals combined from its checks.

Rounds that arrive in measurement order are fed to the check's machine as they come.
A round older than the newest one already seen (a second probe's backlog, a retry) makes
the check's history be replayed from that round's time: the machine restarts from the
stored state and window just before it, and the intervals from there on are rewritten.
A replay goes a bounded number of rounds at a time (`replay_chunk`): the batch that asks
for it goes that far, `replay_step` the rest, one step a database-thread job, so that
ingest is never held up by days of rounds (docs/states.md).
All methods run on the collector's database thread.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from collector.state.hysteresis import Machine, Policy, Round, Transition
from collector.store.database import Store
from collector.store.schema import access_intervals
from unhindered.measurement import EARLIEST, LATEST
from unhindered.states import RETIRED, STATES, WORST_FIRST
from unhindered.timefmt import iso_utc

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
                 interval_s=m.interval_s, duration_s=m.duration_s,
                 sent=figures.get("sent"), received=figures.get("received"))


_EARLIEST, _LATEST = EARLIEST.timestamp(), LATEST.timestamp()


def round_of_row(row) -> Round | None:
    """A stored round (Store.round_rows) as the machine needs it, read straight from its
    columns. None for a row that no rule lets through now (a time before 2000, stored by
    an older collector), which Store.rounds leaves out too."""
    # Unpacked: reading a row's fields by name costs about 1 µs each.
    _id, time, ok, reason, local_ok, interval_s, loss_ratio, rtt_s, duration_s, sent, \
        received = row
    if not _EARLIEST <= time < _LATEST:
        return None
    return Round(time, ok, reason, local_ok, loss_ratio, rtt_s, interval_s, duration_s,
                 None if sent is None else int(sent),
                 None if received is None else int(received))


# At most this many stored rounds are read and fed per step of a replay on the database
# thread (about 20 ms on SQLite or PostgreSQL, 2 vCPUs): ingest's jobs run between them, and
# a batch bringing late rounds replays no more than this itself (docs/states.md).
REPLAY_CHUNK = 1_000


@dataclass
class _Replay:
    """A check's history being replayed from `since`, a step at a time."""

    since: float
    machine: Machine | None = None  # as it was just before `since`, once begun
    after: float | None = None  # the time of the last rounds fed (all of them at that time)
    retired: set[tuple[float, str]] = field(default_factory=set)  # retirements applied
    transitions: list[Transition] = field(default_factory=list)


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
        # The newest change each check's probe notified (SNMP), applied or not: an older one
        # arriving after it is placed before it (confirm).
        self.notified: dict[tuple[str, str], Transition] = {}
        # The time and probe of each check's newest round, and the checks of each probe by
        # it: a probe's check list retires only checks it ran (note_check_list).
        self.ran_by: dict[tuple[str, str], tuple[float, str]] = {}
        self.checks_of_probe: dict[str, set[tuple[str, str]]] = defaultdict(set)
        # (mission, group) -> (state, since); group "*" is the mission's access.
        self.access: dict[tuple[str, str], tuple[str, float]] = {}
        self.changes = 0  # counts changes of states, so /metrics is rendered only after one
        # Called as observer(mission, group, state, since) when an access state changes:
        # the access-seconds counters and the direct alerts to Alertmanager.
        self.observers: list[Callable[[str, str, str, float], None]] = []
        # Checks whose history waits to be replayed from a late round, oldest request
        # first (replay_step), and the bound of one step.
        self.replays: dict[tuple[str, str], _Replay] = {}
        self.replay_chunk = REPLAY_CHUNK
        # When the collector began to listen (Collector.start): silence is counted from
        # the newer of a check's last round and this, as the collector's own downtime is
        # not the missions' silence. None: listening for ever (tests, tools).
        self.listening_since: float | None = None
        # When each probe was last heard (a batch or a heartbeat, the collector's clock),
        # and the probes heard sending heartbeats since the collector started: only their
        # checks are also silent when the probe is (Machine.silence's probe_heard).
        self.heard: dict[str, float] = {}
        self.heartbeating: set[str] = set()

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
            self._ran(key, m.started_at.timestamp(), m.probe_id)
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
        budget = self.replay_chunk  # stored rounds this call may replay (docs/states.md)
        for key, ms in by_check.items():
            self.groups[key] = ms[0].group
            self.targets[key] = ms[0].target
            latest = max(ms, key=lambda m: m.started_at)
            self._ran(key, latest.started_at.timestamp(), latest.probe_id)
            rounds = sorted((round_of(m) for m in ms), key=lambda r: r.time)
            machine = self.machines.get(key)
            # Older than what the machine has seen or decided (a silence turned unknown
            # while these rounds waited at the probe): the history from there is replayed,
            # here within the budget, the rest by replay_step, off the ingest path. An
            # unknown decided because the probe fell silent is replayed from its start
            # whatever the rounds' times: the rounds, not the collector's guess, say what
            # happened then (docs/states.md).
            newest = max(machine.last_time or 0.0, machine.since or 0.0) if machine else None
            replay_from = rounds[0].time if newest is None or rounds[0].time < newest else None
            if machine is not None and machine.probe_silent and machine.since is not None:
                replay_from = (machine.since if replay_from is None
                               else min(replay_from, machine.since))
            if replay_from is not None:
                self._want_replay(key, replay_from)
                done, since, read = (self._advance(key, budget) if budget > 0
                                     else (False, None, 0))
                budget -= read
                if not done and machine is not None:
                    # Meanwhile the newer rounds go on live (the replay reads them too).
                    since = self._persist(key, [t for r in rounds if r.time >= newest
                                                for t in machine.feed(r)])
            else:
                if key in self.replays:  # one already past these rounds starts again
                    self._want_replay(key, rounds[0].time)
                transitions = [t for r in rounds for t in machine.feed(r)]
                since = self._persist(key, transitions)
            if since is not None:
                changed[key[0]] = min(changed.get(key[0], since), since)
        for mission, since in changed.items():
            self._combine(mission, since)
        return set(changed)

    def hear(self, probe_id: str, at: float, heartbeat: bool = False) -> None:
        """The probe was heard at `at` (collector clock): a batch, or a heartbeat."""
        self.heard[probe_id] = max(at, self.heard.get(probe_id, at))
        if heartbeat:
            self.heartbeating.add(probe_id)

    def _probe_heard(self, key: tuple[str, str]) -> float | None:
        """When the probe of the check's newest round was last heard, if it sends
        heartbeats; else None (only the check's own silent allowance applies)."""
        ran = self.ran_by.get(key)
        if ran is None or ran[1] not in self.heartbeating:
            return None
        return self.heard.get(ran[1])

    @_one_transaction
    def tick(self, now: float) -> set[str]:
        """Turns silence into unknown; called periodically with the collector's clock."""
        changed: dict[str, float] = {}
        for key, machine in self.machines.items():
            transition = machine.silence(now, self.listening_since, self._probe_heard(key))
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
        newest = self.notified.get(key)
        if newest is None or time > newest.time:
            self.notified[key] = Transition(time, state, cause)
        elif (newest.state == machine.state and state != newest.state
              and (machine.since is None or time >= machine.since)):
            # An older change that arrived after a newer one (an inform retried over a
            # cut, while the later one got through first): it held until the newer one.
            machine.since = newest.time
            changed_from = self._persist(key, [Transition(time, state, cause), newest])
            self._combine(mission, changed_from)
            return True
        if machine.state == state or (machine.since is not None and time < machine.since):
            return False
        # The rounds before the probe's decision are behind it: start the window afresh.
        machine.window.clear()
        if machine.last_time is not None:
            # Silence is judged from the newest evidence; a check known only from
            # notifications (no rounds) is never silent: it reports changes only.
            machine.last_time = max(machine.last_time, time)
        machine.state, machine.since, machine.probe_silent = state, time, False
        if key in self.replays:  # it may have begun from the state this changes
            self.replays[key] = _Replay(self.replays[key].since)
        self._persist(key, [Transition(time, state, cause)])
        self._combine(mission, time)
        return True

    def check_states(self) -> Iterable[tuple[str, str, str, str]]:
        """(mission, group, target, state) of every check whose target is known."""
        for key, target in self.targets.items():
            machine = self.machines.get(key)
            if machine is not None and machine.state != RETIRED:
                yield key[0], self.groups.get(key, "internet"), target, machine.state

    # --- a check's lifecycle ---

    def note_check_list(self, probe_id: str, mission: str, ids: Iterable[str],
                        since: float) -> set[str]:
        """A probe's check list (a batch's `checks`, docs/protocol.md): the checks whose
        newest round this probe sent and that it no longer runs are retired from `since`,
        when the list took effect (or from their newest round, if later: a confirmation
        round under way then). Returns the missions whose state changed. Every batch
        carries the list: when it retires nothing, the store is not touched."""
        listed = set(ids)
        gone = [key for key in self.checks_of_probe.get(probe_id, ())
                if key[0] == mission and key[1] not in listed and key in self.machines
                and self.machines[key].state != RETIRED]
        if not gone:
            return set()
        with self.store.transaction():
            starts = []
            for key in sorted(gone):
                at = max(since, self.ran_by[key][0])
                self.store.retire_check(mission, key[1], at, probe_id)
                starts.append(self._persist(
                    key, self.machines[key].retire(at, _retired_cause(probe_id, at))))
            self._combine(mission, min(starts))
        return {mission}

    def _ran(self, key: tuple[str, str], time: float, probe_id: str) -> None:
        """Notes the probe of the check's newest round."""
        known = self.ran_by.get(key)
        if known is not None and known[0] > time:
            return
        if known is not None and known[1] != probe_id:
            self.checks_of_probe[known[1]].discard(key)
        self.ran_by[key] = (time, probe_id)
        self.checks_of_probe[probe_id].add(key)

    # --- one check ---

    def _persist(self, key: tuple[str, str], transitions: list[Transition]) -> float | None:
        if not transitions:
            return None
        self.changes += 1
        for t in transitions:
            log.info("%s %s is %s since %s: %s", *key, t.state, iso_utc(t.time), t.cause)
        self.store.rewrite_intervals(key[0], key[1], transitions[0].decided_at,
                                     [_row(t) for t in transitions])
        # A change placed before the round that decided it (docs/states.md) rewrites the
        # mission's access from where it was placed.
        return min(t.time for t in transitions)

    def _replay(self, key: tuple[str, str], since: float) -> float:
        """Rebuilds the check's history from `since` on from the stored rounds, at once
        (at start-up, before the collector listens); returns where it began."""
        self._want_replay(key, since)
        while not self._advance(key, self.replay_chunk)[0]:
            pass
        return since

    def replay_step(self) -> bool:
        """One step of the oldest pending replay: at most `replay_chunk` stored rounds fed
        and, once its rounds are done, the check's intervals and the mission's access
        rewritten. Collector.start runs the steps on the database thread one job each, so
        that ingest's jobs run between them. Returns whether replays remain."""
        if self.replays:
            key = next(iter(self.replays))
            try:
                self._replay_step(key)
            except Exception:
                log.exception("replaying %s %s failed: its history stays as it was", *key)
                self.replays.pop(key, None)
        return bool(self.replays)

    @_one_transaction
    def _replay_step(self, key: tuple[str, str]) -> None:
        _done, since, _read = self._advance(key, self.replay_chunk)
        if since is not None:
            self._combine(key[0], since)

    def _want_replay(self, key: tuple[str, str], since: float) -> None:
        """Records that the check's history is to be replayed from `since`: one pending
        replay a check, from the earliest time asked; one that has already gone past
        `since` starts again."""
        replay = self.replays.get(key)
        if replay is None:
            self.replays[key] = _Replay(since)
        elif since < replay.since or (replay.after is not None and since <= replay.after):
            self.replays[key] = _Replay(min(since, replay.since))

    def _advance(self, key: tuple[str, str], limit: int) -> tuple[bool, float | None, int]:
        """Feeds the check's pending replay at most `limit` more stored rounds. When none
        are left it writes the intervals from the replay's start and puts its machine in
        place. Returns whether it is done; from when the mission's access is to be
        recombined (the replay's start, or None when no period's start or state changed,
        only causes: the usual late round); and how many rounds it read."""
        mission, check_id = key
        replay = self.replays[key]
        # The check's retirements are replayed among its rounds (a round at the same time
        # first, as when they came live); one recorded behind the replay starts it again.
        retirements = [(r.retired_at, r.probe_id)
                       for r in self.store.retirements(mission, check_id, replay.since)]
        if replay.after is not None and any(r[0] < replay.after and r not in replay.retired
                                            for r in retirements):
            replay = self.replays[key] = _Replay(replay.since)
        if replay.machine is None:
            replay.machine = self._machine_before(key, replay.since)
        machine, transitions = replay.machine, replay.transitions
        pending = [r for r in retirements if r not in replay.retired]

        def retire(at: float, probe_id: str) -> None:
            replay.retired.add((at, probe_id))
            transitions.extend(machine.retire(at, _retired_cause(probe_id, at)))

        rows = self.store.round_rows(mission, check_id, replay.since, replay.after, limit)
        for row in rows:
            r = round_of_row(row)
            if r is None:
                continue
            while pending and pending[0][0] < r.time:
                retire(*pending.pop(0))
            transitions.extend(machine.feed(r))
        if rows:
            replay.after = rows[-1].started_at
        if len(rows) >= limit:
            return False, None, len(rows)
        for at, probe_id in pending:
            retire(at, probe_id)
        del self.replays[key]
        new = [_row(t) for t in transitions]
        kept, old = self.store.intervals_decided(mission, check_id, replay.since)
        same = self._same_periods(kept, old, new)
        self.store.rewrite_intervals(mission, check_id, replay.since, new)
        self.machines[key] = machine
        self.changes += 1
        # Periods placed before the replay's start, by rounds after it, change too.
        changed_from = min([replay.since, *(r.started_at for r in old), *(t[0] for t in new)])
        return True, None if same else changed_from, len(rows)

    @staticmethod
    def _same_periods(kept, old: list, new: list[tuple]) -> bool:
        """Whether replacing the check's intervals `old` (decided from the replay's start
        on, after `kept`) with `new` (as Store.rewrite_intervals does) leaves every
        period's start and state as stored."""
        periods = [(t[0], t[1]) for t in new]
        if kept is not None and periods and periods[0][1] == kept.state:
            periods = periods[1:]  # the period decided before goes on
        return periods == [(r.started_at, r.state) for r in old]

    def _machine_before(self, key: tuple[str, str], since: float) -> Machine:
        """The check's machine as it was just before `since`, from the stored intervals
        and rounds."""
        mission, check_id = key
        policy = self.policy_for(mission)
        machine = Machine(policy)
        # The newest period decided before `since` (placed before it too: docs/states.md).
        kept, _later = self.store.intervals_decided(mission, check_id, since)
        if kept is not None:
            machine.state, machine.since = kept.state, kept.started_at
        clean = self.store.clean_round_before(mission, check_id, since)
        if clean is not None and (r := round_of_row(clean)) is not None:
            machine.learn(r)
        if machine.state not in ("unknown", RETIRED):
            # The window as it was just before `since` (empty after an unknown period),
            # and the evidence of one round more: where the run that the window ends with
            # began (Machine.note).
            rows = self.store.round_rows_before(mission, check_id, since, policy.window_n + 1)
            for i, row in enumerate(rows):
                r = round_of_row(row)
                if r is None:
                    continue
                cls = machine.classify(r)
                machine.note(r, cls)
                if i >= len(rows) - policy.window_n:
                    machine.window.append(cls)
                machine.last_time = r.time
                machine.interval_s = r.interval_s or machine.interval_s
        return machine

    # --- a mission's access ---

    def _combine(self, mission: str, since: float) -> None:
        """Rewrites the mission's access intervals (per group and overall) from `since`."""
        self.changes += 1
        checks = [k for k in self.machines if k[0] == mission
                  and self.groups.get(k, "internet") != LOCAL_GROUP]
        # (started_at, ended_at, state) of each check's intervals, read from the rows once.
        histories = {k: [(r.started_at, r.ended_at, r.state)
                         for r in self.store.intervals(mission, k[1], since)] for k in checks}
        times = sorted({since} | {t for rows in histories.values() for r in rows
                                  for t in r[:2] if t is not None and t > since})
        groups = sorted({self.groups.get(k, "internet") for k in checks})
        checks_of = {g: [k for k in checks if self.groups.get(k, "internet") == g]
                     for g in groups}
        segments: dict[str, list[tuple[float, str, str]]] = {g: [] for g in [*groups, ALL_GROUPS]}
        # Each history is walked once as the times increase: looking each time up in every
        # history took a 6-day replay of a mission's 10 checks 2.7 s (issue 12, case 6).
        walks = {k: _Walk(histories[k]) for k in checks}
        for t in times:
            states = {k: walk.state_at(t) for k, walk in walks.items()}
            per_group = {}
            retired_groups = []
            for g in groups:
                # A check that did not exist yet at t says nothing about t, nor does one
                # retired by then; a group whose every check is retired is retired too.
                members = [states[k] for k in checks_of[g] if states[k] is not None]
                if members and all(s == RETIRED for s in members):
                    retired_groups.append(g)
                    _extend(segments[g], t, RETIRED, "every check of the group retired")
                members = [s for s in members if s != RETIRED]
                if not members:
                    continue
                per_group[g] = min(members, key=_GROUP_ORDER.index)
                up = sum(s == "up" for s in members)
                _extend(segments[g], t, per_group[g], f"{up} of {len(members)} checks up")
            if per_group:
                overall = min(per_group.values(), key=_MISSION_ORDER.index)
            elif retired_groups:
                overall = RETIRED
            else:
                # Nothing at t speaks of access (only the probe's local checks so far, or
                # no check's history has begun): no statement, least of all `unknown`.
                continue
            cause = ", ".join(f"{g} {s}" for g, s in per_group.items()) or (
                "every check retired" if retired_groups else "")
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


class _Walk:
    """A check's intervals, (started_at, ended_at, state) in start order, asked for the
    state at increasing times."""

    def __init__(self, rows: list[tuple[float, float | None, str]]) -> None:
        self.rows = rows
        self.i = -1  # the last interval begun by the time last asked

    def state_at(self, t: float) -> str | None:
        """The state at t; None before the check's history begins, unknown in a gap."""
        rows = self.rows
        while self.i + 1 < len(rows) and rows[self.i + 1][0] <= t:
            self.i += 1
        if self.i < 0:
            return None
        _start, end, state = rows[self.i]
        return state if end is None or t < end else "unknown"


def _row(t: Transition) -> tuple:
    """A transition as Store.rewrite_intervals writes a state interval."""
    return (t.time, t.state, t.cause, t.decided_at, t.after, t.before)


def _retired_cause(probe_id: str, at: float) -> str:
    when = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"probe {probe_id} no longer runs this check (its check list from {when})"


def _extend(segments: list[tuple[float, str, str]], t: float, state: str, cause: str) -> None:
    if not segments or segments[-1][1] != state:
        segments.append((t, state, cause))
