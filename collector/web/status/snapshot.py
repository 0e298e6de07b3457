"""What the status page reads for a page, and the rows it makes of it.

`fleet_snapshot` (the overview) and `mission_snapshot` (one mission) run on the
collector's database thread (`Collector.in_db`), which alone changes the timelines and
the store: what they return is a consistent copy, so rendering never waits on the
database on the event loop. The rest turns those copies and the in-memory fleet state
into what the templates show: mission rows and their sorting, outages and their causes.
Nothing here knows about HTTP requests or HTML.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from collector.state.timeline import ALL_GROUPS, LOCAL_GROUP
from collector.store import paths as stored_paths
from collector.store.rollups import DAY, HOUR, MINUTE, Rollups
from collector.store.schema import access_intervals
from collector.web.context import COLLECTOR
from unhindered.states import RETIRED, STATES, WORST_FIRST

SORTS = ("state", "name", "since")
# Default direction of each sort: worst first, A to Z, newest change first.
DEFAULT_DESCENDING = {"state": False, "name": False, "since": True}
OUTAGE_WINDOW_S = 30 * DAY
_ORDER = (*WORST_FIRST, RETIRED)  # a mission whose every check is retired goes last
MAX_OUTAGES = 200


# --- the overview ---

@dataclass
class MissionRow:
    code: str
    name: str | None
    state: str
    since: float | None
    checks_up: int = 0
    checks_total: int = 0
    rtt_s: float | None = None
    loss: float | None = None
    hidden: bool = False
    monitored: bool = True  # False: in the inventory, but no probe registered

    @property
    def label(self) -> str:
        return self.name or self.code

    @property
    def search(self) -> str:
        return f"{self.code} {self.name or ''}".casefold()


def fleet_snapshot(app: web.Application) -> dict:
    """On the database thread, which alone changes the timelines: a consistent copy."""
    timelines = app[COLLECTOR].timelines
    return {
        "access": {m: v for (m, g), v in timelines.access.items() if g == ALL_GROUPS},
        "machines": [(key, machine.state, machine.since)
                     for key, machine in timelines.machines.items()],
        "groups": dict(timelines.groups),
        "probes": [p for p in app[COLLECTOR].store.list_probes() if p.revoked_at is None],
    }


def _figures(checks: Iterable) -> tuple[float | None, float | None]:
    """Median RTT and loss of the newest ICMP rounds (connect times when no ICMP)."""
    rtts, connects = [], []
    sent = lost = 0
    for c in checks:
        f = c.figures
        if c.kind == "icmp":
            if f.get("rtt_median_s") is not None:
                rtts.append(f["rtt_median_s"])
            sent += f.get("sent") or 0
            lost += (f.get("sent") or 0) - (f.get("received") or 0)
        elif f.get("connect_s") is not None:
            connects.append(f["connect_s"])
    values = rtts or connects
    return (statistics.median(values) if values else None,
            lost / sent if sent else None)


def mission_rows(snapshot: dict, fleet, inventory,
                 unmonitored: bool = False) -> tuple[list[MissionRow], int]:
    """A row per monitored mission (a probe registered, or results), plus, when asked, per
    inventory mission without a probe; and how many of the latter there are."""
    # A retired check (its probe no longer runs it) is not one of the mission's checks.
    retired = {key for key, state, _since in snapshot["machines"] if state == RETIRED}
    checks_of: dict[str, list] = {}
    for key, c in fleet.checks.items():
        if c.group != LOCAL_GROUP and key not in retired:
            checks_of.setdefault(key[0], []).append(c)
    machines_of: dict[str, list[str]] = {}
    for key, state, _since in snapshot["machines"]:
        if snapshot["groups"].get(key, "internet") != LOCAL_GROUP and key not in retired:
            machines_of.setdefault(key[0], []).append(state)
    codes = (set(snapshot["access"]) | set(checks_of) | set(machines_of)
             | {p.mission for p in snapshot["probes"]})
    rows = []
    for code in codes:
        state, since = snapshot["access"].get(code, ("unknown", None))
        states = machines_of.get(code, [])
        row = MissionRow(code=code, name=name_of(inventory, code), state=state, since=since,
                         checks_up=sum(s == "up" for s in states), checks_total=len(states))
        if state not in ("unknown", RETIRED):  # their newest figures are stale
            row.rtt_s, row.loss = _figures(checks_of.get(code, []))
        rows.append(row)
    missing = [m for m in (inventory.missions if inventory is not None else ())
               if m.code not in codes]
    if unmonitored:
        rows.extend(MissionRow(code=m.code, name=m.name, state="unknown", since=None,
                               monitored=False) for m in missing)
    return rows, len(missing)


def name_of(inventory, code: str) -> str | None:
    if inventory is not None and code in inventory:
        return inventory.mission(code).name
    return None


def sort_rows(rows: list[MissionRow], sort: str, descending: bool) -> list[MissionRow]:
    by_name = lambda r: (r.label.casefold(), r.code)  # noqa: E731
    if sort == "name":
        key = by_name
    elif sort == "since":
        # Most recent change first when descending; never-seen missions go last.
        ordered = sorted(rows, key=by_name)
        known = sorted((r for r in ordered if r.since is not None), key=lambda r: r.since,
                       reverse=descending)
        return known + [r for r in ordered if r.since is None]
    else:
        key = lambda r: (_ORDER.index(r.state), *by_name(r))  # noqa: E731
    return sorted(rows, key=key, reverse=descending)


# --- the mission page ---

@dataclass
class Outage:
    state: str
    start: float
    end: float | None
    cause: str
    groups: list[tuple[str, str]] | None  # parsed access cause: (group, state) not up
    details: list[tuple[str, str]] = field(default_factory=list)  # (check, its cause)


def parse_access_cause(cause: str) -> list[tuple[str, str]] | None:
    """collector/state/timeline.py writes an access cause as 'internet down, documents up';
    parsed, the states can be shown in the reader's language. None if it is not that."""
    pairs = []
    for part in cause.split(", "):
        group, _, state = part.rpartition(" ")
        if not group or state not in STATES:
            return None
        pairs.append((group, state))
    return pairs


def mission_snapshot(app: web.Application, code: str, icmp_checks: list[str],
                     now: float) -> dict:
    """On the database thread: one mission's state, outages and the rollups of its
    ICMP checks over a day (by the minute) and a week (by the hour)."""
    timelines, store = app[COLLECTOR].timelines, app[COLLECTOR].store
    since = now - OUTAGE_WINDOW_S
    machines = {key[1]: (m.state, m.since) for key, m in timelines.machines.items()
                if key[0] == code}
    rollups = Rollups(store)
    return {
        "access": {g: v for (m, g), v in timelines.access.items() if m == code},
        "machines": machines,
        "groups": {key[1]: g for key, g in timelines.groups.items() if key[0] == code},
        # Retired periods are neither outages nor their causes (docs/states.md).
        "outages": [r for r in store.intervals(code, ALL_GROUPS, since, table=access_intervals)
                    if r.state not in ("up", RETIRED)],
        "check_intervals": {c: [r for r in store.intervals(code, c, since)
                                if r.state not in ("up", RETIRED)]
                            for c in machines},
        "day": {c: rollups.query(code, c, MINUTE, now - DAY, now) for c in icmp_checks},
        "week": {c: rollups.query(code, c, HOUR, now - 7 * DAY, now) for c in icmp_checks},
        "probes": [p for p in store.list_probes() if p.mission == code],
        "paths": failing_paths(store, code, [c for c, (state, _) in machines.items()
                                             if state == "down"]),
    }


@dataclass
class FailingPath:
    """Where the way to a failing check's target stops, beside the last good path."""

    check_id: str
    failing: object  # unhindered.path.PathRecord
    good: object | None


def failing_paths(store, code: str, down: list[str]) -> list[FailingPath]:
    """The newest path recorded after a failure of each check that is down, with the
    check's newest baseline (docs/path.md); checks without such a path are left out."""
    out = []
    for check_id in sorted(down):
        row = stored_paths.newest(store, code, check_id, trigger="failure")
        if row is None:
            continue
        good = stored_paths.newest(store, code, check_id, trigger="baseline")
        out.append(FailingPath(check_id, stored_paths.record_of(row),
                               None if good is None else stored_paths.record_of(good)))
    return out


def outages_of(snapshot: dict) -> list[Outage]:
    out = []
    for r in reversed(snapshot["outages"][-MAX_OUTAGES:]):
        groups = parse_access_cause(r.cause)
        outage = Outage(r.state, r.started_at, r.ended_at, r.cause,
                        [g for g in groups if g[1] != "up"] if groups else None)
        end = r.ended_at if r.ended_at is not None else math.inf
        for check, rows in sorted(snapshot["check_intervals"].items()):
            for c in rows:
                c_end = c.ended_at if c.ended_at is not None else math.inf
                if c.started_at < end and c_end > r.started_at and \
                        (check, c.cause) not in outage.details:
                    outage.details.append((check, c.cause))
        del outage.details[4:]
        out.append(outage)
    return out
