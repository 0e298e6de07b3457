"""The state machine of one (mission, check): rounds in, state transitions out.

It is a pure function of the rounds fed to it in measurement-time order, so replaying the
stored rounds always gives the same transitions: that is how late (backfilled) results
rewrite history exactly.

- Each round is `good`, `poor` (succeeded, but loss or RTT over the mission's thresholds)
  or `bad` (failed).
- `down` when `fail_k` of the last `window_n` rounds were bad; back from `down` after
  `recover_m` rounds in a row that were not bad.
- `degraded` when `fail_k` of the last `window_n` rounds were poor or bad (without being
  down); back to `up` after `recover_m` good rounds in a row.
- A recovery forgets the older rounds, so it takes `fail_k` new failures to go down
  again: one more lost round right after a recovery does not flap the state.
- `unknown` when no round came for `silent_intervals` times the check's interval; the
  unknown period starts at the last round plus that allowance. Live, it is decided only
  once the collector has also listened for the allowance (`silence`'s `heard_since`).
  Live too, a check whose probe sends heartbeats is unknown sooner when the probe itself
  falls silent: from when it was last heard plus `probe_silent_s` (`silence`'s
  `probe_heard`). Replays have rounds only, so only the first rule.
  The first round after unknown sets the state directly (one round is the only evidence
  there is).
- `retired` when the probe no longer runs the check (`retire`): never silent; a round
  after it (the check added back) sets the state directly, as after unknown.

Hysteresis decides *whether* the state changed; the rounds' own evidence decides *when*
(docs/states.md, "When an outage starts and ends"). Each round tells at which times the
path was seen working or failing (`_points`: its start and end, and for ICMP which of its
echo requests were answered, assuming the losses of a partly answered round are a cut's,
at its end or its start). A change to `down` is placed between the last time the path was
seen working and the first time it was seen failing, just before the run of bad rounds
that made it; a recovery between the last failure and the first success of the run of
good rounds; `degraded` and back between the rounds. The transition keeps both bounds
(`after`, `before`) and the round that decided it (`decided`). Only the last
`window_n` + 1 rounds are used, so a replay started from the stored rounds before a time
places exactly as the live machine did.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from unhindered.states import RETIRED

GOOD, POOR, BAD = "good", "poor", "bad"
DEFAULT_INTERVAL_S = 30.0


@dataclass(frozen=True)
class Policy:
    fail_k: int = 3
    window_n: int = 5
    recover_m: int = 2
    silent_intervals: float = 3.0
    probe_silent_s: float | None = 20.0  # unknown when the check's probe is not heard this long
    loss_pct: float | None = None  # a round over this loss is poor
    rtt_ms: float | None = None  # a round over this median RTT / connect time is poor
    # Place each change from the rounds' evidence (docs/states.md); False: at the round
    # that decided it, for figures worked out by hand (tests/integration/test_report.py).
    placed: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.fail_k <= self.window_n or not 1 <= self.recover_m <= self.window_n:
            raise ValueError("need 1 <= fail_k <= window_n and 1 <= recover_m <= window_n")


@dataclass(frozen=True)
class Round:
    """What the machine needs of a stored measurement."""

    time: float  # measurement start, Unix seconds
    ok: bool
    reason: str | None = None
    local_ok: bool | None = None
    loss_ratio: float | None = None
    rtt_s: float | None = None  # ICMP median RTT, or TCP connect time
    interval_s: float | None = None
    duration_s: float | None = None
    sent: int | None = None  # ICMP: echo requests sent and answered
    received: int | None = None


@dataclass(frozen=True)
class Transition:
    time: float  # where the change is placed
    state: str
    cause: str
    decided: float | None = None  # the round that decided it; None: `time`
    after: float | None = None  # the change happened between these (None: not known)
    before: float | None = None

    @property
    def decided_at(self) -> float:
        return self.time if self.decided is None else self.decided


@dataclass
class _Runs:
    """The evidence of the last rounds: when the path was last seen working and failing,
    and where the current run of bad (or not bad), and poor-or-bad (or good), rounds
    began. Rebuilt from the last `window_n` + 1 rounds alone (`Machine.note`)."""

    ok_at: float | None = None  # the newest time the path was seen working
    fail_at: float | None = None  # ... seen failing
    ok_from: float | None = None  # the first time seen working since it last failed
    fail_from: float | None = None  # the first time seen failing since it last worked
    bad: bool | None = None  # whether the newest round was bad
    worse: bool | None = None  # whether it was poor or bad
    previous_time: float | None = None  # the newest round's time
    # (after, before, rounds so far) of the current run of each partition.
    onset: tuple[float | None, float, int] | None = None  # bad / not bad
    onset2: tuple[float | None, float, int] | None = None  # poor or bad / good


@dataclass
class Machine:
    policy: Policy
    state: str = "unknown"
    since: float | None = None
    last_time: float | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    window: deque[str] = field(default_factory=deque)
    runs: _Runs = field(default_factory=_Runs)
    # Seconds between the echo requests of the newest round that had them all answered
    # (Machine.learn): where a round with losses sent its requests, which its own figures
    # do not tell. A replay reads that round (Store.clean_round_before).
    packet_gap: float | None = None
    # Unknown because its probe fell silent (`silence`'s probe_heard): a live guess, which
    # the check's next rounds replace (Timelines.apply replays from its start).
    probe_silent: bool = False

    def classify(self, r: Round) -> str:
        if not r.ok:
            return BAD
        p = self.policy
        if p.loss_pct is not None and r.loss_ratio is not None and r.loss_ratio * 100 > p.loss_pct:
            return POOR
        if p.rtt_ms is not None and r.rtt_s is not None and r.rtt_s * 1000 > p.rtt_ms:
            return POOR
        return GOOD

    def silence_deadline(self) -> float | None:
        """When silence after the newest round turns into unknown."""
        if self.last_time is None or self.state in ("unknown", RETIRED):
            return None
        return self.last_time + self.policy.silent_intervals * self.interval_s

    def silence(self, now: float, heard_since: float | None = None,
                probe_heard: float | None = None) -> Transition | None:
        """Unknown from the newest round plus the allowance, once `now` is past it.

        `heard_since` is when the collector began to listen (its start): its own downtime
        is not the mission's silence, so the allowance must also have passed since then
        before silence is decided (the probe may still be sending what it queued). The
        unknown period still begins where the rounds stopped: nothing came from then on.
        Replays leave it out: between two stored rounds only their times count.

        `probe_heard` is when the collector last heard the check's probe (a batch or a
        heartbeat), given only for a probe that sends heartbeats: nothing heard from it for
        `probe_silent_s` is silence too, from that time plus the allowance (never before
        the newest round), as its rounds cannot arrive either. Being heard never delays
        the rule above: a check whose rounds stop while its probe's heartbeats come is
        still silent after its allowance."""
        deadline = self.silence_deadline()
        if deadline is None:
            return None
        probe_silent_s = self.policy.probe_silent_s
        if probe_heard is not None and probe_silent_s is not None:
            assert self.last_time is not None  # a silence deadline needs a round
            probe_deadline = max(probe_heard + probe_silent_s, self.last_time)
            if probe_deadline < deadline and now > probe_deadline:
                self._forget()
                transition = self._go(probe_deadline, "unknown",
                                      f"nothing heard from the probe for {probe_silent_s:g} s "
                                      "(no heartbeat, no results)")
                self.probe_silent = True
                return transition
        if now <= deadline:
            return None
        allowance = self.policy.silent_intervals * self.interval_s
        if heard_since is not None and now <= heard_since + allowance:
            return None
        self._forget()
        cause = (f"no results for {self.policy.silent_intervals:g} intervals "
                 f"({allowance:g} s)")
        if heard_since is not None and heard_since > deadline:
            cause += f"; the collector itself was not listening until {_utc(heard_since)}"
        return self._go(deadline, "unknown", cause)

    def retire(self, time: float, cause: str) -> list[Transition]:
        """The probe no longer runs the check from `time` on (docs/states.md): it is
        retired, never silent, until a round of it after `time` revives it. Silence that
        began before `time` stays unknown up to it."""
        if self.state == RETIRED:
            return []
        gap_unknown = self.silence(time)
        self._forget()
        return [*([gap_unknown] if gap_unknown is not None else []),
                self._go(time, RETIRED, cause)]

    def feed(self, r: Round) -> list[Transition]:
        """One round, not older than the previous one; returns the transitions it caused."""
        transitions: list[Transition] = []
        # A gap is judged by the longer of the old and new interval: a check whose
        # interval just changed is not silent for having changed it.
        if r.interval_s:
            self.interval_s = max(self.interval_s, r.interval_s)
        gap_unknown = self.silence(r.time)
        if gap_unknown is not None:
            transitions.append(gap_unknown)
        if r.interval_s:
            self.interval_s = r.interval_s
        self.last_time = r.time
        cls = self.classify(r)
        self.note(r, cls)
        self.window.append(cls)
        while len(self.window) > self.policy.window_n:
            self.window.popleft()
        before = self.state
        new, cause = self._next_state(cls, r)
        if new != self.state:
            transitions.append(self._place(before, new, cause, r))
        return transitions

    def note(self, r: Round, cls: str) -> None:
        """Takes in the round's evidence of when the path worked and failed (`_Runs`)."""
        runs = self.runs
        bad, worse = cls == BAD, cls != GOOD
        points = _points(r, runs.bad is True, self.packet_gap)
        self.learn(r)
        if runs.bad is None or bad != runs.bad:
            # A new run of bad (or good) rounds: it began after the newest evidence of the
            # other kind, and by the first of its own (which a partly answered round
            # before it may already hold).
            for t, worked in points:
                _see(runs, t, worked)
            # A partly answered round's own losses come before its answers here.
            after = runs.ok_at if bad else runs.fail_at
            first = runs.fail_from if bad else runs.ok_from
            if first is None:  # its only evidence pointed the other way (never, for ICMP)
                first = r.time
            if after is not None and after > first:
                after = None
            runs.onset = (after, first, 1)
        else:
            for t, worked in points:
                _see(runs, t, worked)
            if runs.onset is not None:
                runs.onset = (*runs.onset[:2], runs.onset[2] + 1)
        if runs.worse is None or worse != runs.worse:
            runs.onset2 = (runs.previous_time, r.time, 1)
        elif runs.onset2 is not None:
            runs.onset2 = (*runs.onset2[:2], runs.onset2[2] + 1)
        runs.bad, runs.worse, runs.previous_time = bad, worse, r.time

    def learn(self, r: Round) -> None:
        """Takes the spacing of the round's echo requests, if it had them all answered."""
        n, k = r.sent, r.received
        if r.ok and n is not None and n >= 2 and k == n and r.duration_s is not None:
            self.packet_gap = max(0.0, r.duration_s - (r.rtt_s or 0.0)) / (n - 1)

    def _place(self, before: str, new: str, cause: str, r: Round) -> Transition:
        """The transition `before` -> `new` that round `r` decided, placed by the evidence:
        a change of bad or not at the onset of the bad (or not bad) run, of poor or not
        at the onset of that run; after unknown or retired (no evidence before the round),
        at the round."""
        runs = self.runs
        onset = None
        if before not in ("unknown", RETIRED):
            onset = runs.onset if (new == "down") != (before == "down") else runs.onset2
        # A run longer than the window began before what a replay can see: the round.
        if onset is None or onset[2] > self.policy.window_n or not self.policy.placed:
            return self._go(r.time, new, cause)
        after, first, _ = onset
        floor = self.since if self.since is not None else -math.inf
        if after is not None:
            after = max(after, floor)
        first = max(first, floor)
        time = first if after is None else (after + first) / 2
        return self._go(time, new, cause, decided=r.time, after=after, before=first)

    def _forget(self) -> None:
        """Unknown or retired: the rounds before say nothing about the next ones (a replay
        from after this begins with none either)."""
        self.window.clear()
        self.runs = _Runs()

    def _go(self, time: float, state: str, cause: str, decided: float | None = None,
            after: float | None = None, before: float | None = None) -> Transition:
        self.state, self.since, self.probe_silent = state, time, False
        return Transition(time, state, cause, decided, after, before)

    def _next_state(self, cls: str, r: Round) -> tuple[str, str]:
        p = self.policy
        bad = self.window.count(BAD)
        poor = self.window.count(POOR)
        n = len(self.window)
        if self.state in ("unknown", RETIRED):
            first = {GOOD: "up", POOR: "degraded", BAD: "down"}[cls]
            after = "no data" if self.state == "unknown" else "the check was retired"
            return first, f"first result after {after}: {_reason(r)}"
        if self.state == "down":
            if _trailing(self.window, {GOOD, POOR}) < p.recover_m:
                return "down", ""
            self._keep_recent(p.recover_m)  # the failures are behind: start afresh
            state = "degraded" if cls == POOR else "up"
            return state, f"{p.recover_m} rounds in a row succeeded ({_reason(r)})"
        if bad >= p.fail_k:
            return "down", f"{bad} of the last {n} rounds failed ({_reason(r)})"
        if self.state == "degraded":
            if _trailing(self.window, {GOOD}) < p.recover_m:
                return "degraded", ""
            self._keep_recent(p.recover_m)
            return "up", f"{p.recover_m} rounds in a row within thresholds ({_reason(r)})"
        if bad + poor >= p.fail_k:
            return "degraded", (f"{bad + poor} of the last {n} rounds over thresholds or "
                                f"failed ({_reason(r)})")
        return "up", ""

    def _keep_recent(self, count: int) -> None:
        while len(self.window) > count:
            self.window.popleft()


def _points(r: Round, failing: bool, packet_gap: float | None = None
            ) -> list[tuple[float, bool]]:
    """When the round saw the path work (True) or fail (False), in time order.

    An ICMP round sends its requests evenly over its span: its duration less the RTT when
    every one was answered. A round with a loss waits out the timeout after its last
    request, which the figures do not give: its requests are as far apart as in the newest
    round that had them all answered (`packet_gap`), or, without one, spread over its
    whole duration (an upper bound: at the defaults 0.8 s apart where they were 0.5). A
    round with every request lost failed until its last one was sent. A partly
    answered round is read as a cut: while the path was failing (`failing`), its first
    requests were lost and the rest answered; else the reverse. Random loss in the
    middle misplaces nothing by more than the round's span.
    Other kinds: a success worked from its start to its end, a failure failed at its
    start (the first packet went unanswered, whatever came later)."""
    t, d = r.time, max(r.duration_s or 0.0, 0.0)
    n, k = r.sent, r.received
    if n is None or k is None or n < 1:
        return [(t, True), (t + d, True)] if r.ok else [(t, False)]
    if k >= n:
        return [(t, True), (t + max(0.0, d - (r.rtt_s or 0.0)), True)]
    known = packet_gap is not None and packet_gap * (n - 1) <= d
    gap = packet_gap if known else d / n
    if k == 0:
        return [(t, False), (t + (n - 1) * gap, False)] if known else [(t, False)]
    if failing:  # the lost ones first
        lost = n - k
        return [(t, False), (t + (lost - 1) * gap, False), (t + lost * gap, True),
                (t + (n - 1) * gap, True)]
    return [(t, True), (t + (k - 1) * gap, True), (t + k * gap, False)]


def _see(runs: _Runs, t: float, worked: bool) -> None:
    if worked:
        if runs.ok_from is None:
            runs.ok_from = t
        runs.ok_at, runs.fail_from = t, None
    else:
        if runs.fail_from is None:
            runs.fail_from = t
        runs.fail_at, runs.ok_from = t, None


def _trailing(window: deque[str], classes: set[str]) -> int:
    count = 0
    for cls in reversed(window):
        if cls not in classes:
            break
        count += 1
    return count


def _reason(r: Round) -> str:
    if r.ok:
        parts = []
        if r.loss_ratio is not None:
            parts.append(f"loss {r.loss_ratio * 100:.0f} %")
        if r.rtt_s is not None:
            parts.append(f"RTT {r.rtt_s * 1000:.1f} ms")
        return ", ".join(parts) or "ok"
    text = r.reason or "failed"
    if r.local_ok is False:
        text += "; the probe's own gateway or resolver failed too: a fault inside the mission"
    return text


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
