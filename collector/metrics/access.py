"""Per-mission series: `unhindered_mission_access_seconds_total{mission,state}`, seconds
each mission spent in each overall access state (up, degraded, down, unknown) or in
maintenance, as counters; and the mission's loss and RTT thresholds, for alert texts.

The availability SLO alerts (alerts/unhindered.rules.yml) take rates of these: a counter
survives missed scrapes, where a 0/1 gauge sampled by Prometheus would not. A counter only
grows, so it follows the *live* state: time is credited to the state the collector holds
while it holds it, on the collector's clock. When a probe's backlog later rewrites a silent
(`unknown`) period into the `down` it measured, the counter keeps the `unknown` seconds;
the uptime reports read the rewritten intervals instead (docs/alerts.md). Time inside the
mission's maintenance windows goes to `maintenance`, whatever the state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from collector.inventory.maintenance import Schedule
from collector.state.timeline import ALL_GROUPS, Timelines
from unhindered.states import RETIRED, State

STATES = (*State, "maintenance")  # maintenance: a state of these series only
NAME = "unhindered_mission_access_seconds_total"


class AccessSeconds:
    """Per mission, the running totals and the state being credited since `cursor`."""

    def __init__(self, schedule_for: Callable[[str], Schedule] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.schedule_for = schedule_for
        self.clock = clock
        self.totals: dict[tuple[str, str], float] = {}
        self._current: dict[str, tuple[str, float]] = {}  # mission -> (state, cursor)
        # Transitions come on the database thread, renders on the metrics thread.
        self._lock = threading.Lock()

    def observe(self, mission: str, group: str, state: str, _since: float) -> None:
        """A Timelines observer: the mission's access is now `state`."""
        if group != ALL_GROUPS:
            return
        with self._lock:
            now = self.clock()
            self._advance(mission, now)
            self._current[mission] = (state, now)

    def _advance(self, mission: str, now: float) -> None:
        current = self._current.get(mission)
        if current is None:
            for s in STATES:  # every state present from the start: rate() needs a first sample
                self.totals.setdefault((mission, s), 0.0)
            return
        state, cursor = current
        if now <= cursor:
            return
        if state == RETIRED:  # the mission's every check retired: no time to credit
            self._current[mission] = (state, now)
            return
        maintenance = 0.0
        if self.schedule_for is not None:
            windows = self.schedule_for(mission).windows_between(cursor, now)
            maintenance = sum(end - start for start, end in windows)
        self.totals[(mission, "maintenance")] += maintenance
        self.totals[(mission, state)] += now - cursor - maintenance
        self._current[mission] = (state, now)

    def render(self, access: dict[tuple[str, str], tuple[str, float]]) -> str:
        """The family as exposition text, credited up to now. Missions the observer has
        not heard of yet (state loaded before it was attached) start counting now."""
        with self._lock:
            now = self.clock()
            for (mission, group), (state, _since) in list(access.items()):
                if group == ALL_GROUPS and mission not in self._current:
                    self._advance(mission, now)
                    self._current[mission] = (state, now)
            for mission in list(self._current):
                self._advance(mission, now)
            rows = sorted(self.totals.items())
        lines = [f"# HELP {NAME} Seconds the mission spent in each overall access state, "
                 "or in maintenance, on the collector's clock.",
                 f"# TYPE {NAME} counter"]
        lines += [f'{NAME}{{mission="{mission}",state="{state}"}} {value!r}'
                  for (mission, state), value in rows]
        return "\n".join(lines) + "\n"


def _thresholds(timelines: Timelines) -> str:
    """The loss and RTT thresholds each mission's checks are judged by (the inventory's,
    else the collector's), so that alert texts can show them next to the figures."""
    loss = ["# HELP unhindered_mission_loss_threshold_ratio ICMP loss over which a round of "
            "the mission is poor (0 to 1).",
            "# TYPE unhindered_mission_loss_threshold_ratio gauge"]
    rtt = ["# HELP unhindered_mission_rtt_threshold_seconds Median RTT or connect time over "
           "which a round of the mission is poor.",
           "# TYPE unhindered_mission_rtt_threshold_seconds gauge"]
    for mission in sorted({m for m, _group in list(timelines.access)}):
        policy = timelines.policy_for(mission)
        if policy.loss_pct is not None:
            loss.append(f'unhindered_mission_loss_threshold_ratio{{mission="{mission}"}} '
                        f"{policy.loss_pct / 100!r}")
        if policy.rtt_ms is not None:
            rtt.append(f'unhindered_mission_rtt_threshold_seconds{{mission="{mission}"}} '
                       f"{policy.rtt_ms / 1000!r}")
    return "\n".join(loss) + "\n" + "\n".join(rtt) + "\n"


def render_mission_access(timelines: Timelines, counters: AccessSeconds) -> str:
    """The per-mission families of this module: access seconds and thresholds."""
    return counters.render(timelines.access) + _thresholds(timelines)
