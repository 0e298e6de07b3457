"""The report's figures, from the state intervals (access per mission, state per check),
the maintenance windows and the day rollups: never from raw results, so a year costs a
few hundred thousand rows whatever the round interval.

Time-based throughout: every figure is a sum of interval lengths, clipped to the period
(an outage across the boundary counts only its part inside) and to now (a period that
is not over yet is reported to date).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import case, func, select

from collector.inventory.maintenance import Interval
from collector.inventory.sites import Inventory
from collector.report.period import Period
from collector.report.policy import CountingPolicy
from collector.state.timeline import ALL_GROUPS
from collector.store.database import Store
from collector.store.rollups import DAY, histogram_percentile
from collector.store.schema import access_intervals, rollups, state_intervals
from unhindered.states import RETIRED, STATES

# Mission uptime classes of the fleet summary's distribution, as (lower bound %, label).
UPTIME_CLASSES = ((99.9, "≥ 99.9 %"), (99.5, "99.5 to 99.9 %"), (99.0, "99 to 99.5 %"),
                  (95.0, "95 to 99 %"), (0.0, "< 95 %"))
WORST = 10


@dataclass(frozen=True)
class Outage:
    start: float
    end: float
    counted_s: float  # its length outside maintenance: what uptime is charged


@dataclass
class Figures:
    """One timeline (a check, or a mission's access) over the period."""

    length_s: float  # the period, to now if it is not over
    seconds: dict[str, float]  # per state, outside maintenance
    maintenance_s: float
    known_s: float  # time with a known state (up, degraded, down), maintenance included
    outages: list[Outage]
    segments: list[tuple[float, float, str]]  # clipped intervals, for the timeline chart
    policy: CountingPolicy

    @property
    def unmonitored_s(self) -> float:
        """Before the first interval (the check did not exist yet) and while retired,
        outside maintenance."""
        return max(0.0, self.length_s - self.maintenance_s - sum(self.seconds.values()))

    @property
    def denominator_s(self) -> float:
        s = self.seconds
        return s["up"] + s["degraded"] + s["down"] + (
            s["unknown"] if self.policy.unknown == "down" else 0.0)

    @property
    def uptime(self) -> float | None:
        """Share of the counted time the target was reachable (up or degraded)."""
        d = self.denominator_s
        return (self.seconds["up"] + self.seconds["degraded"]) / d if d > 0 else None

    @property
    def down_counted_s(self) -> float:
        return self.denominator_s - self.seconds["up"] - self.seconds["degraded"]

    @property
    def coverage(self) -> float | None:
        return self.known_s / self.length_s if self.length_s > 0 else None

    @property
    def longest_s(self) -> float | None:
        return max((o.counted_s for o in self.outages), default=None)

    @property
    def mttr_s(self) -> float | None:
        """Mean time to repair: the mean counted length of the outages."""
        if not self.outages:
            return None
        return sum(o.counted_s for o in self.outages) / len(self.outages)

    @property
    def mtbf_s(self) -> float | None:
        """Mean time between failures: reachable time per outage."""
        if not self.outages:
            return None
        return (self.seconds["up"] + self.seconds["degraded"]) / len(self.outages)


@dataclass(frozen=True)
class MonthStats:
    month: str
    rtt_median_s: float | None
    rtt_p95_s: float | None
    loss: float | None
    samples: int


@dataclass
class CheckReport:
    check_id: str
    figures: Figures
    monthly: list[MonthStats]


@dataclass
class MissionReport:
    code: str
    name: str
    figures: Figures  # its access over all groups (docs/states.md)
    checks: list[CheckReport] = field(default_factory=list)


@dataclass(frozen=True)
class TargetOutage:
    """A check down at many missions at once: the target's fault, not the missions'."""

    check_id: str
    start: float
    end: float
    peak_missions: int
    of_missions: int


@dataclass
class Fleet:
    median_uptime: float | None
    distribution: list[tuple[str, int]]
    worst: list[MissionReport]
    target_outages: list[TargetOutage]
    monthly_rtt_median_s: list[tuple[str, float | None]]


@dataclass
class Report:
    period: Period
    policy: CountingPolicy
    generated_at: float
    through: float  # the end of what is reported: the period's end, or now
    missions: list[MissionReport]
    fleet: Fleet


# --- one timeline ---

def overlap(start: float, end: float, windows: list[Interval]) -> float:
    return sum(max(0.0, min(end, e) - max(start, s)) for s, e in windows
               if s < end and e > start)


def figures(rows: Iterable, lo: float, hi: float, windows: list[Interval],
            policy: CountingPolicy) -> Figures:
    """`rows` (started_at, ended_at, state), sorted, clipped to [lo, hi); `windows` the
    merged maintenance inside it."""
    seconds = dict.fromkeys(STATES, 0.0)
    known = 0.0
    segments: list[tuple[float, float, str]] = []
    for started, ended, state in rows:
        s, e = max(started, lo), min(hi if ended is None else ended, hi)
        if e <= s:
            continue
        segments.append((s, e, state))
        seconds[state] += (e - s) - overlap(s, e, windows)
        if state != "unknown":
            known += e - s
    # An outage is a run of down time (and unknown, when the policy counts it as down),
    # charged for its part outside maintenance; one wholly inside maintenance is none.
    outages: list[Outage] = []
    run: list[float] | None = None
    for s, e, state in [*segments, (hi, hi, "end")]:
        if run is not None and (not policy.counts_as_down(state) or s != run[1]):
            counted = (run[1] - run[0]) - overlap(run[0], run[1], windows)
            if counted > 0:
                outages.append(Outage(run[0], run[1], counted))
            run = None
        if policy.counts_as_down(state):
            run = [s, e] if run is None else [run[0], e]
    return Figures(hi - lo, seconds, sum(e - s for s, e in windows), known, outages,
                   segments, policy)


# --- the whole report ---

def _timelines(store: Store, table, period: Period, missions: set[str] | None) -> dict:
    key = table.c.check_id if table is state_intervals else table.c.check_group
    # Retired time (a check its probe no longer runs, docs/states.md) is left out like
    # the time before a check's first result: not monitored, not counted; a check retired
    # for the whole period is not reported.
    query = select(table.c.mission, key, table.c.started_at, table.c.ended_at,
                   table.c.state).where(
        table.c.started_at < period.end,
        table.c.ended_at.is_(None) | (table.c.ended_at > period.start),
        table.c.state != RETIRED)
    if missions:
        query = query.where(table.c.mission.in_(sorted(missions)))
    found: dict[tuple[str, str], list] = defaultdict(list)
    with store.engine.connect() as conn:
        for mission, k, started, ended, state in conn.execute(query):
            found[(mission, k)].append((started, ended, state))
    for rows in found.values():
        rows.sort(key=lambda r: r[0])
    return found


def _monthly(store: Store, period: Period, missions: set[str] | None) -> dict:
    """(mission, check) -> [MonthStats] from the day rollups: their RTT histograms added
    up over the month give its percentiles. A UTC day belongs to the local month that
    holds its middle. The database sums each month up (a year is 270,000 day rows for
    250 missions); Python adds up the histograms, one JSON text per check and month."""
    months = period.months()
    middle = rollups.c.bucket_start + DAY / 2
    month = case(*[(middle < span.end, span.label) for span in months])
    histograms = rollups.c.rtt_histogram
    joined = (func.string_agg(histograms, ",") if store.engine.dialect.name == "postgresql"
              else func.group_concat(histograms, ","))
    query = select(rollups.c.mission, rollups.c.check_id, month, func.sum(rollups.c.samples),
                   func.sum(rollups.c.sent), func.sum(rollups.c.received), joined).where(
        rollups.c.resolution_s == DAY, rollups.c.bucket_start >= period.start - DAY,
        rollups.c.bucket_start < period.end, middle >= period.start,
        middle < period.end).group_by(rollups.c.mission, rollups.c.check_id, month)
    if missions:
        query = query.where(rollups.c.mission.in_(sorted(missions)))
    found: dict[tuple[str, str, str], tuple] = {}
    with store.engine.connect() as conn:
        for mission, check, label, samples, sent, received, texts in conn.execute(query):
            found[(mission, check, label)] = (samples or 0, sent or 0, received or 0, texts)
    out: dict[tuple[str, str], list[MonthStats]] = defaultdict(list)
    for mission, check in sorted({(m, c) for m, c, _label in found}):
        for span in months:
            samples, sent, received, texts = found.get((mission, check, span.label),
                                                       (0, 0, 0, None))
            bins: Counter = Counter()
            for day in json.loads(f"[{texts or ''}]"):
                for i, n in day.items():
                    bins[int(i)] += n
            out[(mission, check)].append(MonthStats(
                span.label, histogram_percentile(bins, 0.5), histogram_percentile(bins, 0.95),
                (sent - received) / sent if sent else None, samples))
    return out


def _target_outages(checks: dict, lo: float, hi: float) -> list[TargetOutage]:
    """Stretches when a check (same id at several missions: a shared target) was down at
    half or more of the missions that run it, and at two at least."""
    by_check: dict[str, list[list]] = defaultdict(list)
    for (_mission, check), rows in checks.items():
        by_check[check].append(rows)
    found = []
    for check, timelines in sorted(by_check.items()):
        if len(timelines) < 2:
            continue
        need = max(2, math.ceil(len(timelines) / 2))
        # Ends sort before starts at the same instant: touching outages do not overlap.
        clipped = [(max(s, lo), min(hi if e is None else e, hi))
                   for rows in timelines for s, e, state in rows if state == "down"]
        events = sorted(ev for s, e in clipped if e > s for ev in ((s, 1), (e, -1)))
        count, start, peak = 0, None, 0
        for t, delta in events:
            count += delta
            if count >= need and start is None:
                start, peak = t, count
            elif start is not None:
                peak = max(peak, count)
                if count < need:
                    if t > start:
                        found.append(TargetOutage(check, start, t, peak, len(timelines)))
                    start = None
    return found


def compute(store: Store, inventory: Inventory, period: Period, policy: CountingPolicy,
            missions: set[str] | None = None, now: float | None = None,
            progress: Callable[[int, int], None] | None = None) -> Report:
    now = time.time() if now is None else now
    lo, hi = period.start, max(period.start, min(period.end, now))
    access = _timelines(store, access_intervals, period, missions)
    checks = _timelines(store, state_intervals, period, missions)
    monthly = _monthly(store, period, missions)
    codes = sorted({m for m, g in access if g == ALL_GROUPS} | {m for m, _c in checks}
                   | (missions or set()))
    by_mission: dict[str, list[str]] = defaultdict(list)
    for mission, check in sorted(checks):
        by_mission[mission].append(check)
    reports = []
    for i, code in enumerate(codes):
        windows = inventory.schedule(code).windows_between(lo, hi)
        name = inventory.mission(code).name if code in inventory else code
        mission = MissionReport(code, name, figures(access.get((code, ALL_GROUPS), []),
                                                    lo, hi, windows, policy))
        for check in by_mission[code]:
            mission.checks.append(CheckReport(
                check, figures(checks[(code, check)], lo, hi, windows, policy),
                monthly.get((code, check), [])))
        reports.append(mission)
        if progress is not None:
            progress(i + 1, len(codes))
    return Report(period, policy, now, hi, reports, _fleet(reports, checks, lo, hi, period))


def _fleet(reports: list[MissionReport], checks: dict, lo: float, hi: float,
           period: Period) -> Fleet:
    rated = [r for r in reports if r.figures.uptime is not None]
    uptimes = [r.figures.uptime for r in rated]
    distribution = []
    upper = math.inf
    for bound, label in UPTIME_CLASSES:
        distribution.append((label, sum(1 for u in uptimes if bound <= u * 100 < upper)))
        upper = bound
    worst = sorted(rated, key=lambda r: (r.figures.uptime, -r.figures.down_counted_s,
                                         r.code))[:WORST]
    monthly = []
    for span in period.months():
        medians = [m.rtt_median_s for r in reports for c in r.checks for m in c.monthly
                   if m.month == span.label and m.rtt_median_s is not None]
        monthly.append((span.label, statistics.median(medians) if medians else None))
    return Fleet(statistics.median(uptimes) if uptimes else None, distribution, worst,
                 _target_outages(checks, lo, hi), monthly)
