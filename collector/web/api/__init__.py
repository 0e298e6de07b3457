"""The collector's read-only REST API under /api/v1 (docs/api.md): missions and their
access, check states, state and access intervals, raw results, rollups and probes, for
dashboards, scripts and reports, with a read token (`unhindered-collector readers add`).

The OpenAPI 3.1 document at /api/v1/openapi.json is built from the same pydantic models
the handlers answer with, and from the same table of endpoints the routes are added from,
so the document cannot drift from what is served.

Every database read runs on the collector's database thread (collector.web.app._db); the
in-memory state (FleetState) is read on the event loop, which is the only writer of it,
and the Timelines, which the database thread writes, are copied on that thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from collector.state.fleet import CheckState, FleetState
from collector.state.timeline import ALL_GROUPS, Timelines
from collector.store import queries
from collector.store.database import measurement_from_row
from collector.store.rollups import loss_ratio
from collector.web.context import COLLECTOR, Refusal, bearer_token, collector_of, error_response
from unhindered.measurement import (
    Ack,
    Batch,
    DnsMeasurement,
    HttpMeasurement,
    IcmpMeasurement,
    TcpMeasurement,
)
from unhindered.states import State

PREFIX = "/api/v1"
DEFAULT_LIMIT, MAX_LIMIT = 500, 5_000
DAY_S = 86_400
# Longest time range per request: a bound on the rows one request can make the database
# read (7 days of a 10 s check is 60,480 raw results, paged through 5,000 at a time).
MAX_RESULTS_DAYS = 7
MAX_MINUTE_ROLLUPS_DAYS = 31
MAX_HOUR_ROLLUPS_DAYS = 400
MAX_INTERVALS_DAYS = 400
RESOLUTIONS = (60, 3_600)
MAX_CURSOR_CHARS = 512
# 9999-12-31T23:59:59Z: beyond it a time cannot be written in RFC 3339.
LATEST_TIME = 253_402_300_799.0

MISSION_PATTERN = r"^[A-Z0-9][A-Z0-9-]{1,15}$"
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
GROUP_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$"
UNIX_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,9})?$"
RFC3339_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                   r"([Zz]|[+-][0-9]{2}:[0-9]{2})$")
_MISSION = re.compile(MISSION_PATTERN)
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_GROUP = re.compile(GROUP_PATTERN)
_UNIX = re.compile(UNIX_PATTERN)
_RFC3339 = re.compile(RFC3339_PATTERN)
# "+01:00" in a query string that was not URL-encoded arrives as " 01:00".
_PLUS_AS_SPACE = re.compile(r"[0-9] [0-9]{2}:[0-9]{2}$")



# --- response models: what the handlers answer, and the OpenAPI schemas ---

class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Out):
    """A refusal, with a reason a person can act on."""

    error: str = Field(description="what was wrong, naming the parameter concerned")
    details: list[dict[str, Any]] | None = Field(
        None, description="per-field problems, when there are several (ingest only)")


class GroupAccess(_Out):
    """A mission's access through one group of checks: up while any of its checks is up."""

    group: str
    state: State
    since: AwareDatetime | None = Field(description="measurement time the state began")


class MissionSummary(_Out):
    """A mission and its current access: up only when every group of checks is up."""

    code: str
    name: str | None = Field(description="from the inventory; null for a mission not in it")
    in_inventory: bool
    access: State = Field(description="access over all groups (unknown before any result)")
    since: AwareDatetime | None = Field(description="measurement time `access` began")
    groups: list[GroupAccess]


class MissionList(_Out):
    items: list[MissionSummary]


class CheckStatus(_Out):
    """The current state of one check of one mission."""

    mission: str
    check_id: str
    kind: str
    group: str
    target: str
    probe_id: str = Field(description="the probe that sent the newest round")
    state: State
    since: AwareDatetime | None = Field(description="measurement time the state began")
    last_round_at: AwareDatetime = Field(description="measurement time of the newest round")
    last_ok: bool | None
    last_reason: str | None


class CheckDetail(CheckStatus):
    """A check's state with the figures of its newest round."""

    last_local_ok: bool | None
    figures: dict[str, Any] = Field(
        description="the newest round's figures, as in docs/protocol.md for its kind")
    rounds_total: int = Field(description="rounds stored for this check")
    rounds_failed: int


class MissionDetail(MissionSummary):
    checks: list[CheckDetail]


class StatePage(_Out):
    items: list[CheckStatus]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; "
                                                "null on the last page")


class Interval(_Out):
    """A period in one state. Intervals are exact: late results rewrite them."""

    started_at: AwareDatetime
    ended_at: AwareDatetime | None = Field(description="null for the current period")
    state: State
    cause: str


class IntervalPage(_Out):
    mission: str
    check: str | None = Field(description="the check, for state intervals")
    group: str | None = Field(description="the group, for access intervals (* = overall)")
    items: list[Interval]
    next_cursor: str | None


# A raw result: the probe's Measurement (probes/measurement.py, docs/protocol.md) as it
# was sent, plus the time the collector received it.
_RECEIVED_AT = "when the collector stored the result"


class IcmpResult(IcmpMeasurement):
    received_at: AwareDatetime = Field(description=_RECEIVED_AT)


class TcpResult(TcpMeasurement):
    received_at: AwareDatetime = Field(description=_RECEIVED_AT)


class HttpResult(HttpMeasurement):
    received_at: AwareDatetime = Field(description=_RECEIVED_AT)


class DnsResult(DnsMeasurement):
    received_at: AwareDatetime = Field(description=_RECEIVED_AT)


Result = Annotated[IcmpResult | TcpResult | HttpResult | DnsResult,
                   Field(discriminator="kind")]
_RESULT_TYPES: dict[str, type[BaseModel]] = {
    "icmp": IcmpResult, "tcp": TcpResult, "http": HttpResult, "dns": DnsResult}


class ResultPage(_Out):
    items: list[Result]
    next_cursor: str | None


class Rollup(_Out):
    """The rounds of one check in one bucket (a minute or an hour)."""

    bucket_start: AwareDatetime
    rounds: int
    rounds_ok: int
    samples: int = Field(description="RTT values the rtt_* figures summarise")
    rtt_min_s: float | None
    rtt_median_s: float | None
    rtt_p95_s: float | None
    rtt_max_s: float | None
    sent: int | None = Field(description="ICMP echo requests (null for other kinds)")
    received: int | None
    loss_ratio: float | None = Field(description="(sent - received) / sent, ICMP only")


class RollupPage(_Out):
    mission: str
    check: str
    resolution_s: Literal[60, 3600]
    items: list[Rollup]
    next_cursor: str | None


class ProbeInfo(_Out):
    probe_id: str
    mission: str
    status: Literal["active", "enrolling", "revoked"] = Field(
        description="enrolling: registered, enrollment token not yet redeemed")
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None
    last_report_at: AwareDatetime | None = Field(
        description="last accepted batch since the collector started (null before)")
    backlog: int | None = Field(description="results queued at the probe, as it reported")
    results_since_start: int = Field(description="results stored since the collector started")


class ProbeList(_Out):
    items: list[ProbeInfo]


# The probe-facing routes of collector/web.py, described here so that the document covers
# everything under /api/v1.
class EnrollRequest(_Out):
    enrollment_token: str


class Enrolled(_Out):
    probe_id: str
    mission: str
    token: str = Field(description="the probe's credential; shown once")


class ProbeChecks(_Out):
    version: str = Field(description="also the ETag")
    checks: list[dict[str, Any]]


# --- reading requests ---

def _refuse(status: int, reason: str) -> Exception:
    """collector.web.app's Refusal (looked up late: see the import of collector.web.app)."""
    return Refusal(status, reason)


def _shown(text: str) -> str:
    """A bit of the client's input for an error message, never a page of it."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def parse_time(name: str, text: str) -> float:
    """RFC 3339 with an offset, or Unix seconds, as Unix seconds; Refusal(400) otherwise."""
    if _UNIX.match(text):
        value = float(text)
    elif _RFC3339.match(text):
        try:
            value = datetime.fromisoformat(text.upper()).timestamp()
        except (ValueError, OverflowError) as exc:  # e.g. month 13
            raise _refuse(400, f"'{name}': {_shown(text)} is not a valid time ({exc})") from exc
    elif _PLUS_AS_SPACE.search(text):
        raise _refuse(400, f"'{name}': {_shown(text)} has a space where its offset's sign "
                           "should be: URL-encode '+' as %2B (or use Z)")
    else:
        raise _refuse(400, f"'{name}': {_shown(text)} is not an RFC 3339 time with an offset "
                           "(2026-11-29T10:00:00Z, 2026-11-29T11:00:00+01:00) nor Unix seconds")
    if not 0 <= value <= LATEST_TIME:
        raise _refuse(400, f"'{name}' must be between 1970 and 9999 (got {_shown(text)})")
    return value


def encode_cursor(endpoint: str, after: list) -> str:
    """An opaque position in a listing: the keyset of the last item given out."""
    raw = json.dumps({"e": endpoint, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(endpoint: str, text: str, types: tuple[type, ...]) -> tuple:
    """The keyset of a cursor `encode_cursor(endpoint, ...)` gave out; Refusal(400) for
    anything else (corrupt, from another endpoint, hand-made)."""
    refused = _refuse(400, "'cursor' is not a cursor this endpoint gave out: pass the "
                           "next_cursor of the previous page unchanged")
    if len(text) > MAX_CURSOR_CHARS:
        raise refused
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise refused from None
    if not isinstance(data, dict) or data.get("e") != endpoint:
        raise refused
    after = data.get("a")
    if not isinstance(after, list) or len(after) != len(types):
        raise refused
    values = []
    for value, wanted in zip(after, types, strict=True):
        if isinstance(value, bool):
            raise refused
        if wanted is float and isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
        elif wanted is not float and isinstance(value, wanted):
            values.append(value)
        else:
            raise refused
    return tuple(values)


class Params:
    """The query string of one request, read strictly: an unknown parameter is refused,
    because a typo (?mision=FRA) would otherwise silently widen the answer."""

    def __init__(self, request: web.Request, allowed: tuple[str, ...]) -> None:
        self.values: dict[str, str] = {}
        for name, value in request.query.items():
            if name not in allowed:
                takes = ", ".join(allowed) if allowed else "no parameters"
                raise _refuse(400, f"unknown parameter {_shown(name)}: this endpoint takes "
                                   f"{takes}")
            if name in self.values:
                raise _refuse(400, f"parameter '{name}' is given more than once")
            self.values[name] = value

    def text(self, name: str, required: bool) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise _refuse(400, f"missing parameter '{name}'")
            return None
        return value

    def matching(self, name: str, pattern: re.Pattern, what: str,
                 required: bool = True) -> str | None:
        value = self.text(name, required)
        if value is not None and not pattern.match(value):
            raise _refuse(400, f"'{name}': {_shown(value)} is not {what}")
        return value

    def mission(self, required: bool = True) -> str | None:
        return self.matching("mission", _MISSION, "a mission code (upper case, e.g. FRA)",
                             required)

    def time_range(self, max_days: int, what: str) -> tuple[float, float]:
        start = parse_time("from", self.text("from", True))
        end = parse_time("to", self.text("to", True))
        if start >= end:
            raise _refuse(400, "'from' must be before 'to'")
        if end - start > max_days * DAY_S:
            raise _refuse(400, f"'from' to 'to' spans {(end - start) / DAY_S:.4g} days: {what} "
                               f"serves at most {max_days} days per request")
        return start, end

    def limit(self) -> int:
        text = self.text("limit", False)
        if text is None:
            return DEFAULT_LIMIT
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise _refuse(400, f"'limit' must be an integer from 1 to {MAX_LIMIT} "
                               f"(got {_shown(text)})")
        return int(text)

    def cursor(self, endpoint: str, types: tuple[type, ...]) -> tuple | None:
        text = self.text("cursor", False)
        return None if text is None else decode_cursor(endpoint, text, types)


def _time(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _json(model: BaseModel) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


def _refused(refusal: Refusal) -> web.Response:
    response = error_response(refusal.status, refusal.reason, refusal.details)
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="unhindered"'
    return response


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _for_readers(handler: Handler) -> Handler:
    """Answers only requests with a valid read token; turns Refusals into error answers."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.Response:
        try:
            token = bearer_token(request)
            store = collector_of(request).store
            if await collector_of(request).in_db(store.reader_for_token, token) is None:
                raise _refuse(401, "unknown or revoked read token: create one with "
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


async def _timelines(request: web.Request) -> TimelineView:
    return await collector_of(request).in_db(_copy_timelines,
                                   collector_of(request).timelines)


def _inventory_names(app: web.Application) -> dict[str, str]:
    """Code -> name of every mission in the inventory, if the collector has one."""
    return {m.code: m.name for m in app[COLLECTOR].inventory.missions}


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
    view = await _timelines(request)
    names = _inventory_names(request.app)
    codes = sorted(_known_missions(collector_of(request).state, view, names))
    return _json(MissionList(items=[MissionSummary(**_summary(c, names, view)) for c in codes]))


async def mission(request: web.Request) -> web.Response:
    Params(request, ())
    code = request.match_info["code"]
    view = await _timelines(request)
    names = _inventory_names(request.app)
    state = collector_of(request).state
    if code not in _known_missions(state, view, names):
        raise _refuse(404, f"mission {_shown(code)} is not known: it is not in the inventory "
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
    view = await _timelines(request)
    checks = collector_of(request).state.checks
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
    check = q.matching("check", _IDENTIFIER, "a check id", required=False)
    group = q.matching("group", _GROUP, "a group name or *", required=False)
    if (check is None) == (group is None):
        raise _refuse(400, "give exactly one of 'check' (the state intervals of a check) and "
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
                        state=r.state, cause=r.cause) for r in rows],
        next_cursor=encode_cursor("intervals", [rows[-1].started_at, rows[-1].id])
        if more else None))


def _results_json(rows: list, more: bool) -> str:
    """The page of raw results as JSON: CPU work (validation, serialisation) kept off both
    the event loop and the database thread."""
    items = []
    for row in rows:
        m = measurement_from_row(row)
        # Already validated as a Measurement: only received_at is added.
        items.append(_RESULT_TYPES[m.kind].model_construct(
            **dict(m), received_at=datetime.fromtimestamp(row.received_at, UTC)))
    cursor = encode_cursor("results", [rows[-1].started_at, rows[-1].id]) if more else None
    return ResultPage(items=items, next_cursor=cursor).model_dump_json()


async def results(request: web.Request) -> web.Response:
    q = Params(request, ("mission", "check", "from", "to", "limit", "cursor"))
    mission = q.mission()
    check = q.matching("check", _IDENTIFIER, "a check id")
    start, end = q.time_range(MAX_RESULTS_DAYS, f"{PREFIX}/results")
    limit = q.limit()
    after = q.cursor("results", (float, int))
    rows = await collector_of(request).in_db(queries.results_page,
                                   collector_of(request).store, mission, check, start,
                                   end, after, limit)
    more = len(rows) > limit
    body = await asyncio.get_running_loop().run_in_executor(
        None, _results_json, rows[:limit], more)
    return web.Response(text=body, content_type="application/json")


async def rollups(request: web.Request) -> web.Response:
    q = Params(request, ("mission", "check", "resolution", "from", "to", "limit", "cursor"))
    mission = q.mission()
    check = q.matching("check", _IDENTIFIER, "a check id")
    resolution_text = q.text("resolution", True)
    if resolution_text not in ("60", "3600"):
        raise _refuse(400, f"'resolution' must be 60 (minutes) or 3600 (hours), "
                           f"not {_shown(resolution_text)}")
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
    records = await collector_of(request).in_db(collector_of(request).store.list_probes)
    live = collector_of(request).state.probes
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


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_openapi_bytes(), content_type="application/json")


# --- the routes, and the OpenAPI document built from the same table ---

@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "path"]
    schema: dict
    description: str
    required: bool = False


_TIME_SCHEMA = {"anyOf": [{"type": "string", "format": "date-time"},
                          {"type": "string", "pattern": UNIX_PATTERN}]}
_MISSION_PARAM = Param("mission", "query", {"type": "string", "pattern": MISSION_PATTERN},
                       "mission code, e.g. FRA", required=True)
_CHECK_PARAM = Param("check", "query", {"type": "string", "pattern": IDENTIFIER_PATTERN},
                     "check id, e.g. internet-icmp", required=True)
_FROM = Param("from", "query", _TIME_SCHEMA, "start of the range, inclusive: RFC 3339 with "
              "an offset (encode + as %2B) or Unix seconds", required=True)
_TO = Param("to", "query", _TIME_SCHEMA, "end of the range, exclusive; after `from`",
            required=True)
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                  "default": DEFAULT_LIMIT}, "items per page")
_CURSOR = Param("cursor", "query", {"type": "string", "maxLength": MAX_CURSOR_CHARS},
                "`next_cursor` of the previous page, unchanged")


@dataclass(frozen=True)
class Endpoint:
    path: str
    handler: Handler
    summary: str
    description: str
    params: tuple[Param, ...]
    response: type[BaseModel]
    errors: tuple[int, ...] = (400, 401)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(f"{PREFIX}/missions", missions, "Every mission and its current access",
             "Missions of the inventory and missions probes have reported for, with the "
             "current access state overall and per group of checks.", (), MissionList),
    Endpoint(f"{PREFIX}/missions/{{code}}", mission, "One mission, with its checks",
             "The mission's access and the current state and newest figures of each check.",
             (Param("code", "path", {"type": "string", "pattern": MISSION_PATTERN},
                    "mission code, e.g. FRA", required=True),),
             MissionDetail, (400, 401, 404)),
    Endpoint(f"{PREFIX}/states", states, "Current state of every check",
             "One item per (mission, check), ordered by mission then check.",
             (Param("mission", "query", {"type": "string", "pattern": MISSION_PATTERN},
                    "only this mission's checks"), _LIMIT, _CURSOR), StatePage),
    Endpoint(f"{PREFIX}/intervals", intervals, "State or access intervals in a time range",
             "The periods overlapping [from, to), oldest first: of one check (`check`), or "
             "of the mission's access (`group`: * overall, or one group). Give exactly one "
             f"of them. At most {MAX_INTERVALS_DAYS} days per request.",
             (_MISSION_PARAM,
              Param("check", "query", {"type": "string", "pattern": IDENTIFIER_PATTERN},
                    "check id: that check's state intervals"),
              Param("group", "query", {"type": "string", "pattern": GROUP_PATTERN},
                    "group name, or * for the mission overall: access intervals"),
              _FROM, _TO, _LIMIT, _CURSOR), IntervalPage),
    Endpoint(f"{PREFIX}/results", results, "Raw results of a check",
             "Results measured in [from, to), ordered by measurement time, each as the "
             "probe sent it plus `received_at`. At most "
             f"{MAX_RESULTS_DAYS} days per request; raw results are kept for the "
             "collector's retention.raw_days only.",
             (_MISSION_PARAM, _CHECK_PARAM, _FROM, _TO, _LIMIT, _CURSOR), ResultPage),
    Endpoint(f"{PREFIX}/rollups", rollups, "Per-minute or per-hour summaries of a check",
             "Buckets starting in [from, to), oldest first. At most "
             f"{MAX_MINUTE_ROLLUPS_DAYS} days per request at resolution 60, "
             f"{MAX_HOUR_ROLLUPS_DAYS} at 3600.",
             (_MISSION_PARAM, _CHECK_PARAM,
              Param("resolution", "query", {"type": "integer", "enum": list(RESOLUTIONS)},
                    "bucket length in seconds", required=True),
              _FROM, _TO, _LIMIT, _CURSOR), RollupPage),
    Endpoint(f"{PREFIX}/probes", probes, "Registered probes",
             "Every registered probe with its status, and since the collector started the "
             "time of its last accepted batch and the backlog it reported.", (), ProbeList),
)


def add_routes(app: web.Application) -> None:
    """Adds the read API and its OpenAPI document to the collector's app."""
    _openapi_bytes()  # a model that cannot be described fails here, at start-up
    for endpoint in ENDPOINTS:
        app.router.add_get(endpoint.path, _for_readers(endpoint.handler), allow_head=False)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi, allow_head=False)


_ERRORS = {
    304: "the probe's check list has not changed (If-None-Match)",
    400: "a parameter is missing, unknown, malformed or out of range (the error says which)",
    401: "no bearer token, or a token that is unknown or revoked",
    403: "refused for this credential (the error says why)",
    404: "no such mission",
    413: "the body is over the collector's limit",
    422: "a field is out of range (details name each field)",
}


def _response(description: str, schema: dict | None) -> dict:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(codes: tuple[int, ...]) -> dict:
    return {str(code): _response(_ERRORS[code], {"$ref": _ref(ErrorBody)} if code != 304
                                 else None) for code in codes}


def _ref(model: type[BaseModel]) -> str:
    return f"#/components/schemas/{model.__name__}"


def _schemas(models: list[tuple[type[BaseModel], str]]) -> dict[str, dict]:
    """components.schemas: each model's JSON Schema with its nested models hoisted."""
    out: dict[str, dict] = {}
    for model, mode in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                         mode=mode)
        for name, part in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
            # Two models of one name must be one schema, or one would silently replace the
            # other (e.g. a figures model read differently as input and as output).
            if out.get(name, part) != part:
                raise RuntimeError(f"two different JSON schemas named {name}")
            out[name] = part
    return out


def _operation(endpoint: Endpoint) -> dict:
    params = [{"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
               "description": p.description} for p in endpoint.params]
    return {
        "operationId": endpoint.handler.__name__, "tags": ["read"],
        "summary": endpoint.summary, "description": endpoint.description,
        "security": [{"readToken": []}], "parameters": params,
        "responses": {"200": _response("OK", {"$ref": _ref(endpoint.response)}),
                      **_errors(endpoint.errors)},
    }


def openapi_document() -> dict:
    """The OpenAPI 3.1 description of everything under /api/v1."""
    paths: dict[str, dict] = {e.path: {"get": _operation(e)} for e in ENDPOINTS}
    paths[f"{PREFIX}/openapi.json"] = {"get": {
        "operationId": "openapi", "tags": ["read"], "security": [],
        "summary": "This document (no token needed)",
        "responses": {"200": _response("OpenAPI 3.1", {"type": "object"})}}}
    # The probes' side (collector/web.py, docs/protocol.md): same prefix, other credentials.
    paths[f"{PREFIX}/results"]["post"] = {
        "operationId": "ingest", "tags": ["probes"], "security": [{"probeCredential": []}],
        "summary": "A probe's batch of results (docs/protocol.md)",
        "parameters": [{"name": "Content-Encoding", "in": "header", "required": False,
                        "schema": {"type": "string", "enum": ["gzip"]}}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": _ref(Batch)}}}},
        "responses": {"200": _response("stored: every seq up to acked_through",
                                       {"$ref": _ref(Ack)}),
                      **_errors((400, 401, 403, 413, 422))}}
    paths[f"{PREFIX}/enroll"] = {"post": {
        "operationId": "enroll", "tags": ["probes"], "security": [],
        "summary": "A new probe trades its one-time enrollment token for its credential",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": _ref(EnrollRequest)}}}},
        "responses": {"200": _response("enrolled", {"$ref": _ref(Enrolled)}),
                      **_errors((400, 403))}}}
    paths[f"{PREFIX}/probe/checks"] = {"get": {
        "operationId": "probe_checks", "tags": ["probes"],
        "security": [{"probeCredential": []}],
        "summary": "The probe's checks from the central checks file",
        "parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                        "schema": {"type": "string"}}],
        "responses": {"200": _response("the check list, with an ETag",
                                       {"$ref": _ref(ProbeChecks)}),
                      **_errors((304, 401))}}}
    models: list[tuple[type[BaseModel], str]] = [
        (ErrorBody, "serialization"), *[(e.response, "serialization") for e in ENDPOINTS],
        (Ack, "serialization"), (Enrolled, "serialization"), (ProbeChecks, "serialization"),
        (Batch, "validation"), (EnrollRequest, "validation")]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Unhindered collector API", "version": "1",
                 "description": "Read-only access to missions, check states, intervals, raw "
                                "results and rollups (docs/api.md); and the probes' side of "
                                "the collector (docs/protocol.md)."},
        "paths": paths,
        "components": {
            "schemas": _schemas(models),
            "securitySchemes": {
                "readToken": {"type": "http", "scheme": "bearer", "description":
                              "a read token: unhindered-collector readers add --name NAME"},
                "probeCredential": {"type": "http", "scheme": "bearer", "description":
                                    "a probe's credential (docs/protocol.md)"},
            },
        },
        "tags": [{"name": "read", "description": "the read-only API"},
                 {"name": "probes", "description": "used by probes"}],
    }


@functools.cache
def _openapi_bytes() -> bytes:
    return json.dumps(openapi_document(), indent=1).encode()
