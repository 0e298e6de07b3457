"""The read API's request handlers: each reads its query (params.py), asks the Collector
(collector.web.context.collector_of) and answers with a response model (models.py); and
`for_readers`, the guard every one of them is served behind (a valid read token, and
Refusals turned into error answers). Which handler serves which path is in routes.py.

Every database read runs on the collector's database thread (Collector.in_db); the
in-memory state (FleetState) is read on the event loop, which is the only writer of it,
and the Timelines, which the database thread writes, are copied on that thread."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel

from collector.control import store as control_store
from collector.core import Collector
from collector.state.fleet import CheckState, FleetState
from collector.state.timeline import ALL_GROUPS, Timelines
from collector.store import queries
from collector.store.database import measurement_from_row
from collector.store.rollups import loss_ratio
from collector.web.api.models import (
    RESULT_TYPES,
    CheckDetail,
    CheckStatus,
    ControlPage,
    ControlResult,
    GroupAccess,
    Interval,
    IntervalPage,
    MissionDetail,
    MissionList,
    MissionSummary,
    ProbeInfo,
    ProbeList,
    ProbeView,
    ResultPage,
    Rollup,
    RollupPage,
    StatePage,
)
from collector.web.api.params import (
    GROUP_RE,
    IDENTIFIER_RE,
    MAX_CONTROL_DAYS,
    MAX_HOUR_ROLLUPS_DAYS,
    MAX_INTERVALS_DAYS,
    MAX_MINUTE_ROLLUPS_DAYS,
    MAX_RESULTS_DAYS,
    MAX_TARGET_CHARS,
    PREFIX,
    Params,
    encode_cursor,
    shown,
)
from collector.web.context import Refusal, bearer_token, collector_of, error_response

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _time(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _json(model: BaseModel) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


def _refused(refusal: Refusal) -> web.Response:
    response = error_response(refusal.status, refusal.reason, refusal.details)
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="unhindered"'
    return response


def for_readers(handler: Handler) -> Handler:
    """Answers only requests with a valid read token; turns Refusals into error answers."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.Response:
        try:
            token = bearer_token(request)
            collector = collector_of(request)
            if await collector.in_db(collector.store.reader_for_token, token) is None:
                raise Refusal(401, "unknown or revoked read token: create one with "
                                   "'unhindered-collector readers add --name NAME' (a probe's "
                                   "credential is not a read token)")
            return await handler(request)
        except Refusal as refusal:
            return _refused(refusal)

    return guarded


# --- what the collector knows in memory ---

@dataclass(frozen=True)
class TimelineView:
    """A copy of the Timelines' current states, taken on the database thread."""

    access: dict[tuple[str, str], tuple[str, float]]  # (mission, group) -> (state, since)
    checks: dict[tuple[str, str], tuple[str, float | None]]  # (mission, check) -> ...


def _copy_timelines(timelines: Timelines) -> TimelineView:
    return TimelineView(
        access=dict(timelines.access),
        checks={key: (m.state, m.since) for key, m in list(timelines.machines.items())})


async def _timelines(collector: Collector) -> TimelineView:
    return await collector.in_db(_copy_timelines, collector.timelines)


def _inventory_names(collector: Collector) -> dict[str, str]:
    """Code -> name of every mission in the inventory, if the collector has one."""
    return {m.code: m.name for m in collector.inventory.missions}


def _known_missions(state: FleetState, view: TimelineView, names: dict[str, str]) -> set[str]:
    return (set(names) | {m for m, _ in state.checks} | {m for m, _ in view.access}
            | {m for m, _ in view.checks} | {p.mission for p in state.probes.values()})


def _summary(code: str, names: dict[str, str], view: TimelineView) -> dict:
    access, since = view.access.get((code, ALL_GROUPS), ("unknown", None))
    groups = [GroupAccess(group=group, state=s, since=_time(t))
              for (mission, group), (s, t) in sorted(view.access.items())
              if mission == code and group != ALL_GROUPS]
    return {"code": code, "name": names.get(code), "in_inventory": code in names,
            "access": access, "since": _time(since), "groups": groups}


def _status(check: CheckState, view: TimelineView) -> dict:
    state, since = view.checks.get((check.mission, check.check_id), ("unknown", None))
    return {"mission": check.mission, "check_id": check.check_id, "kind": check.kind,
            "group": check.group, "target": check.target, "probe_id": check.probe_id,
            "state": state, "since": _time(since), "last_round_at": _time(check.last_started_at),
            "last_ok": check.last_ok, "last_reason": check.last_reason}


# --- handlers ---

async def missions(request: web.Request) -> web.Response:
    Params(request, ())
    collector = collector_of(request)
    view = await _timelines(collector)
    names = _inventory_names(collector)
    codes = sorted(_known_missions(collector.state, view, names))
    return _json(MissionList(items=[MissionSummary(**_summary(c, names, view)) for c in codes]))


async def mission(request: web.Request) -> web.Response:
    Params(request, ())
    code = request.match_info["code"]
    collector = collector_of(request)
    view = await _timelines(collector)
    names = _inventory_names(collector)
    state = collector.state
    if code not in _known_missions(state, view, names):
        raise Refusal(404, f"mission {shown(code)} is not known: it is not in the inventory "
                           "and no probe has reported for it")
    checks = [CheckDetail(**_status(c, view), last_local_ok=c.last_local_ok,
                          figures=c.figures, rounds_total=c.rounds_total,
                          rounds_failed=c.rounds_failed)
              for key, c in sorted(state.checks.items()) if key[0] == code]
    return _json(MissionDetail(**_summary(code, names, view), checks=checks))


async def states(request: web.Request) -> web.Response:
    q = Params(request, ("mission", "limit", "cursor"))
    mission = q.mission(required=False)
    limit = q.limit()
    after = q.cursor("states", (str, str))
    collector = collector_of(request)
    view = await _timelines(collector)
    checks = collector.state.checks
    keys = sorted(k for k in checks if (mission is None or k[0] == mission)
                  and (after is None or k > after))
    page = keys[:limit]
    more = len(keys) > limit
    return _json(StatePage(
        items=[CheckStatus(**_status(checks[k], view)) for k in page],
        next_cursor=encode_cursor("states", list(page[-1])) if more else None))


async def intervals(request: web.Request) -> web.Response:
    q = Params(request, ("mission", "check", "group", "from", "to", "limit", "cursor"))
    mission = q.mission()
    check = q.matching("check", IDENTIFIER_RE, "a check id", required=False)
    group = q.matching("group", GROUP_RE, "a group name or *", required=False)
    if (check is None) == (group is None):
        raise Refusal(400, "give exactly one of 'check' (the state intervals of a check) and "
                           "'group' (access intervals: * for the mission overall, or a group)")
    start, end = q.time_range(MAX_INTERVALS_DAYS, f"{PREFIX}/intervals")
    limit = q.limit()
    after = q.cursor("intervals", (float, int))
    collector = collector_of(request)
    rows = await collector.in_db(
        queries.intervals_page, collector.store, mission,
        check if check is not None else group, group is not None, start, end, after, limit)
    more = len(rows) > limit
    rows = rows[:limit]
    return _json(IntervalPage(
        mission=mission, check=check, group=group,
        items=[Interval(started_at=_time(r.started_at), ended_at=_time(r.ended_at),
                        state=r.state, cause=r.cause,
                        started_after=_time(getattr(r, "started_after", None)),
                        started_before=_time(getattr(r, "started_before", None)))
               for r in rows],
        next_cursor=encode_cursor("intervals", [rows[-1].started_at, rows[-1].id])
        if more else None))


def _results_json(rows: list, more: bool) -> str:
    """The page of raw results as JSON: CPU work (validation, serialisation) kept off both
    the event loop and the database thread."""
    items = []
    for row in rows:
        m = measurement_from_row(row)
        # Already validated as a Measurement: only received_at is added.
        items.append(RESULT_TYPES[m.kind].model_construct(
            **dict(m), received_at=datetime.fromtimestamp(row.received_at, UTC)))
    cursor = encode_cursor("results", [rows[-1].started_at, rows[-1].id]) if more else None
    return ResultPage(items=items, next_cursor=cursor).model_dump_json()


async def results(request: web.Request) -> web.Response:
    q = Params(request, ("mission", "check", "from", "to", "limit", "cursor"))
    mission = q.mission()
    check = q.matching("check", IDENTIFIER_RE, "a check id")
    start, end = q.time_range(MAX_RESULTS_DAYS, f"{PREFIX}/results")
    limit = q.limit()
    after = q.cursor("results", (float, int))
    collector = collector_of(request)
    rows = await collector.in_db(queries.results_page, collector.store, mission, check,
                                 start, end, after, limit)
    more = len(rows) > limit
    body = await asyncio.get_running_loop().run_in_executor(
        None, _results_json, rows[:limit], more)
    return web.Response(text=body, content_type="application/json")


async def rollups(request: web.Request) -> web.Response:
    q = Params(request, ("mission", "check", "resolution", "from", "to", "limit", "cursor"))
    mission = q.mission()
    check = q.matching("check", IDENTIFIER_RE, "a check id")
    resolution_text = q.text("resolution", True)
    if resolution_text not in ("60", "3600"):
        raise Refusal(400, f"'resolution' must be 60 (minutes) or 3600 (hours), "
                           f"not {shown(resolution_text)}")
    resolution = int(resolution_text)
    max_days = MAX_MINUTE_ROLLUPS_DAYS if resolution == 60 else MAX_HOUR_ROLLUPS_DAYS
    start, end = q.time_range(max_days, f"{PREFIX}/rollups at resolution {resolution}")
    limit = q.limit()
    after = q.cursor("rollups", (float,))
    collector = collector_of(request)
    rows = await collector.in_db(queries.rollups_page, collector.store, mission, check,
                                 resolution, start, end, after[0] if after else None, limit)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [Rollup(bucket_start=_time(r.bucket_start), rounds=r.rounds, rounds_ok=r.rounds_ok,
                    samples=r.samples, rtt_min_s=r.rtt_min_s, rtt_median_s=r.rtt_median_s,
                    rtt_p95_s=r.rtt_p95_s, rtt_max_s=r.rtt_max_s, sent=r.sent,
                    received=r.received, loss_ratio=loss_ratio(r)) for r in rows]
    return _json(RollupPage(
        mission=mission, check=check, resolution_s=resolution, items=items,
        next_cursor=encode_cursor("rollups", [rows[-1].bucket_start]) if more else None))


async def probes(request: web.Request) -> web.Response:
    Params(request, ())
    collector = collector_of(request)
    records = await collector.in_db(collector.store.list_probes)
    live = collector.state.probes
    items = []
    for r in records:
        seen = live.get(r.probe_id)
        status = "revoked" if r.revoked_at is not None else (
            "active" if r.enrolled else "enrolling")
        items.append(ProbeInfo(
            probe_id=r.probe_id, mission=r.mission, status=status,
            created_at=_time(r.created_at), revoked_at=_time(r.revoked_at),
            last_report_at=_time(seen.last_report_at) if seen else None,
            backlog=seen.backlog if seen else None,
            results_since_start=seen.results_total if seen else 0))
    return _json(ProbeList(items=items))


def _control_item(row) -> ControlResult:
    return ControlResult(
        key=row.key, kind=row.kind, target=row.target, label=row.label,
        settings=json.loads(row.settings), trigger=row.trigger,
        measured_at=_time(row.measured_at), duration_s=row.duration_s, ok=row.ok,
        reason=row.reason, detail=row.detail, ip_version=row.ip_version,
        figures=json.loads(row.figures))


def _not_measured(collector: Collector, mission: str, check: str) -> str | None:
    runner = collector.control
    if runner is None:
        return "the centre's control measurements are off (control.enabled)"
    if runner.key_for(mission, check) is not None:
        return None
    return runner.plan.skipped.get(
        (mission, check), "not planned yet: the centre plans a check within 30 s of its "
                          "first round")


async def control(request: web.Request) -> web.Response:
    q = Params(request, ("target", "mission", "check", "from", "to", "limit", "cursor"))
    target = q.text("target", False)
    mission = q.mission(required=False)
    check = q.matching("check", IDENTIFIER_RE, "a check id", required=False)
    if (target is None) == (mission is None and check is None) or (
            (mission is None) != (check is None)):
        raise Refusal(400, "give either 'target' (a check's target: URL, host or resolver) "
                           "or both 'mission' and 'check'")
    if target is not None and len(target) > MAX_TARGET_CHARS:
        raise Refusal(400, f"'target' is longer than {MAX_TARGET_CHARS} characters")
    start, end = q.time_range(MAX_CONTROL_DAYS, f"{PREFIX}/control")
    limit = q.limit()
    after = q.cursor("control", (float, int))
    collector = collector_of(request)
    key = probe = why = None
    if mission is not None:
        runner = collector.control
        key = runner.key_for(mission, check) if runner is not None else None
        why = _not_measured(collector, mission, check)
        state = collector.state.checks.get((mission, check))
        if state is not None:
            probe = ProbeView(
                mission=mission, check_id=check, probe_id=state.probe_id, kind=state.kind,
                target=state.target, last_round_at=_time(state.last_started_at),
                last_ok=state.last_ok, last_reason=state.last_reason, figures=state.figures)
    rows = [] if mission is not None and key is None else await collector.in_db(
        functools.partial(control_store.page, collector.store, key=key, target=target,
                          start=start, end=end, after=after, limit=limit))
    more = len(rows) > limit
    rows = rows[:limit]
    return _json(ControlPage(
        target=target, key=key, not_measured=why, probe=probe,
        items=[_control_item(r) for r in rows],
        next_cursor=encode_cursor("control", [rows[-1].measured_at, rows[-1].id])
        if more else None))
