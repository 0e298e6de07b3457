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
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Transition:
    time: float
    state: str
    cause: str


@dataclass
class Machine:
    policy: Policy
    state: str = "unknown"
    since: float | None = None
    last_time: float | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    window: deque[str] = field(default_factory=deque)
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
                self.window.clear()
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
        self.window.clear()
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
        self.window.clear()
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
        self.window.append(cls)
        while len(self.window) > self.policy.window_n:
            self.window.popleft()
        new, cause = self._next_state(cls, r)
        if new != self.state:
            transitions.append(self._go(r.time, new, cause))
        return transitions

    def _go(self, time: float, state: str, cause: str) -> Transition:
        self.state, self.since, self.probe_silent = state, time, False
        return Transition(time, state, cause)

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
