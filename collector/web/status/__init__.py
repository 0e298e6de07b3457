"""The collector's status page, for people without Grafana: GET /status (every monitored
mission's access) and GET /status/{code} (one mission: its checks, RTT and loss charts,
outages), server-rendered HTML with inline SVG, no JavaScript needed.

Text goes through gettext (the catalogues in unhindered/locale/, unhindered/i18n.py);
the language comes from ?lang= or Accept-Language, English by default.
Everything is read on the database thread (`_db`) or from the in-memory fleet state:
rendering never waits on the database on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import hashlib
import itertools
import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

from aiohttp import web
from babel import Locale
from babel.dates import format_skeleton, format_timedelta
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from collector import STATIC, TEMPLATES
from collector.state.timeline import ALL_GROUPS, LOCAL_GROUP
from collector.store.rollups import HOUR, MINUTE, Rollups, loss_ratio
from collector.store.schema import access_intervals
from collector.web.context import COLLECTOR, collector_of
from unhindered.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    load_translations,
    parse_accept_language,
    primary,
)
from unhindered.states import STATES, WORST_FIRST

SORTS = ("state", "name", "since")
REFRESH_S = 30
MISSION_REFRESH_S = 60
OUTAGE_WINDOW_S = 30 * 86_400
MAX_OUTAGES = 200
DAY = 86_400

STATUS_PAGE = web.AppKey("status_page", object)


# --- languages ---

def choose_language(request: web.Request) -> tuple[str, bool]:
    """(language, chosen explicitly by ?lang=)."""
    asked = primary(request.query.get("lang", ""))
    if asked in LANGUAGES:
        return asked, True
    for tag in parse_accept_language(request.headers.get("Accept-Language", "")):
        if primary(tag) in LANGUAGES:
            return primary(tag), False
    return DEFAULT_LANGUAGE, False


# --- formatting in the reader's language (numbers and dates by CLDR, through Babel) ---

class Formatter:
    def __init__(self, lang: str, now: float) -> None:
        self.lang, self.now = lang, now

    def number(self, value: float | int) -> str:
        return format_decimal(value, locale=self.lang)

    def ms(self, seconds: float | None) -> str:
        if seconds is None:
            return "—"
        ms = seconds * 1000
        return format_decimal(ms, format="#,##0.0" if ms < 100 else "#,##0", locale=self.lang)

    def pct(self, ratio: float | None) -> str:
        if ratio is None:
            return "—"
        # One decimal at most, with the locale's own pattern (spacing, sign position).
        return format_percent(round(ratio, 3), locale=self.lang, decimal_quantization=False)

    def utc(self, ts: float | None) -> str:
        if ts is None:
            return "—"
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")

    def iso(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def ago(self, ts: float | None) -> str:
        if ts is None:
            return "—"
        return format_timedelta(timedelta(seconds=ts - self.now), add_direction=True,
                                threshold=1.0, locale=self.lang)

    def duration(self, seconds: float) -> str:
        """Exact to the minute (to the second under a minute), two units at most."""
        seconds = max(0, round(seconds))
        if seconds < 60:
            return format_unit(seconds, "duration-second", length="narrow", locale=self.lang)
        parts = []
        for unit, size in (("day", DAY), ("hour", 3600), ("minute", 60)):
            count, seconds = divmod(seconds, size)
            if count or parts:
                parts.append((unit, count))
        parts = [(u, c) for u, c in parts[:2] if c]
        return " ".join(format_unit(c, f"duration-{u}", length="narrow", locale=self.lang)
                        for u, c in parts)


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


def _fleet_snapshot(app: web.Application) -> dict:
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
    checks_of: dict[str, list] = {}
    for (mission, _check), c in fleet.checks.items():
        if c.group != LOCAL_GROUP:
            checks_of.setdefault(mission, []).append(c)
    machines_of: dict[str, list[str]] = {}
    for key, state, _since in snapshot["machines"]:
        if snapshot["groups"].get(key, "internet") != LOCAL_GROUP:
            machines_of.setdefault(key[0], []).append(state)
    codes = (set(snapshot["access"]) | set(checks_of) | set(machines_of)
             | {p.mission for p in snapshot["probes"]})
    rows = []
    for code in codes:
        state, since = snapshot["access"].get(code, ("unknown", None))
        states = machines_of.get(code, [])
        row = MissionRow(code=code, name=name_of(inventory, code), state=state, since=since,
                         checks_up=sum(s == "up" for s in states), checks_total=len(states))
        if state != "unknown":  # an unknown mission's newest figures are stale
            row.rtt_s, row.loss = _figures(checks_of.get(code, []))
        rows.append(row)
    missing = [m for m in (inventory.missions if inventory is not None else ())
               if m.code not in codes]
    if unmonitored:
        rows.extend(MissionRow(code=m.code, name=m.name, state="unknown", since=None,
                               monitored=False) for m in missing)
    return rows, len(missing)


def _inventory(app: web.Application):
    """The collector's mission inventory, when it has one (names, duty stations)."""
    return app[COLLECTOR].inventory


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
        key = lambda r: (WORST_FIRST.index(r.state), *by_name(r))  # noqa: E731
    return sorted(rows, key=key, reverse=descending)


# Default direction of each sort: worst first, A to Z, newest change first.
_DEFAULT_DESCENDING = {"state": False, "name": False, "since": True}


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
    """collector/timeline.py writes an access cause as 'internet down, documents up';
    parsed, the states can be shown in the reader's language. None if it is not that."""
    pairs = []
    for part in cause.split(", "):
        group, _, state = part.rpartition(" ")
        if not group or state not in STATES:
            return None
        pairs.append((group, state))
    return pairs


def _mission_snapshot(app: web.Application, code: str, icmp_checks: list[str],
                      now: float) -> dict:
    timelines, store = app[COLLECTOR].timelines, app[COLLECTOR].store
    since = now - OUTAGE_WINDOW_S
    machines = {key[1]: (m.state, m.since) for key, m in timelines.machines.items()
                if key[0] == code}
    rollups = Rollups(store)
    return {
        "access": {g: v for (m, g), v in timelines.access.items() if m == code},
        "machines": machines,
        "groups": {key[1]: g for key, g in timelines.groups.items() if key[0] == code},
        "outages": [r for r in store.intervals(code, ALL_GROUPS, since, table=access_intervals)
                    if r.state != "up"],
        "check_intervals": {c: [r for r in store.intervals(code, c, since) if r.state != "up"]
                            for c in machines},
        "day": {c: rollups.query(code, c, MINUTE, now - DAY, now) for c in icmp_checks},
        "week": {c: rollups.query(code, c, HOUR, now - 7 * DAY, now) for c in icmp_checks},
        "probes": [p for p in store.list_probes() if p.mission == code],
    }


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


# --- charts: SmokePing-style, drawn here as SVG geometry ---

def loss_class(loss: float | None) -> str:
    if loss is None:
        return "lx"
    if loss <= 0:
        return "l0"
    if loss < 0.05:
        return "l1"
    if loss < 0.20:
        return "l2"
    return "l3"


def nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= raw:
            return m * magnitude
    return 10 * magnitude


@dataclass
class Chart:
    id: str
    span: str  # "day" or "week"
    width: int = 760
    height: int = 240
    left: int = 56
    right: int = 14
    top: int = 24
    bottom: int = 30
    band: str = ""
    lines: dict[str, str] = field(default_factory=dict)
    lost: str = ""
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    buckets: int = 0
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    loss: float | None = None
    bad_buckets: int = 0  # buckets with 20 % loss or more

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom


def make_chart(chart_id: str, span: str, rows: list, start: float, end: float,
               resolution: int, fmt: Formatter) -> Chart:
    c = Chart(chart_id, span)
    pw, ph = c.plot_right - c.left, c.plot_bottom - c.top
    c.buckets = len(rows)
    medians = [r.rtt_median_s for r in rows if r.rtt_median_s is not None]
    maxes = sorted(r.rtt_max_s for r in rows if r.rtt_max_s is not None)
    mins = [r.rtt_min_s for r in rows if r.rtt_min_s is not None]
    sent = sum(r.sent or 0 for r in rows)
    c.loss = (sent - sum(r.received or 0 for r in rows)) / sent if sent else None
    c.median_s = statistics.median(medians) if medians else None
    c.min_s = min(mins) if mins else None
    c.max_s = maxes[-1] if maxes else None
    c.bad_buckets = sum(1 for r in rows if loss_class(loss_ratio(r)) == "l3")

    # Scale: the band's top is clipped at the 98th percentile of the maxima, so one spike
    # does not flatten the day; never below 1.5 times the highest median.
    top = max(maxes[min(len(maxes) - 1, int(len(maxes) * 0.98))] if maxes else 0.0,
              1.5 * max(medians) if medians else 0.0) * 1000 or 10.0
    step = nice_step(top)
    y_max = math.ceil(top / step) * step
    c.y_ticks = [(c.plot_bottom - v / y_max * ph, fmt.number(round(v, 3)))
                 for v in (i * step for i in range(round(y_max / step) + 1))]

    def x(t: float) -> float:
        return c.left + (min(max(t, start), end) - start) / (end - start) * pw

    def y(seconds: float) -> float:
        return c.plot_bottom - min(seconds * 1000, y_max) / y_max * ph

    # A bucket is drawn as wide as the usual gap between buckets (probes that measure
    # less often than once a minute), and joined to the next one unless data is missing.
    gaps = [b.bucket_start - a.bucket_start for a, b in itertools.pairwise(rows)]
    width = max(resolution, min(statistics.median(gaps) if gaps else resolution,
                                10 * resolution))
    band, lost = [], []
    lines: dict[str, list[str]] = {}
    previous = None  # (bucket_start, y of its median)
    for r in rows:
        x0, x1 = x(r.bucket_start), x(r.bucket_start + width)
        if r.rtt_min_s is not None and r.rtt_max_s is not None:
            y_hi, y_lo = y(r.rtt_max_s), y(r.rtt_min_s)
            if y_lo - y_hi < 1:
                y_hi, y_lo = y_hi - 0.5, y_lo + 0.5
            band.append(f"M{x0:.1f} {y_hi:.1f}H{x1:.1f}V{y_lo:.1f}H{x0:.1f}Z")
        cls = loss_class(loss_ratio(r))
        if r.rtt_median_s is None:
            if r.sent:  # nothing came back: a red mark along the top
                lost.append(f"M{x0:.1f} {c.top}H{max(x1, x0 + 1):.1f}V{c.top + 6}"
                            f"H{x0:.1f}Z")
            previous = None
            continue
        ym = y(r.rtt_median_s)
        joined = previous is not None and r.bucket_start - previous[0] <= 1.5 * width
        path = (f"M{x0:.1f} {previous[1]:.1f}V{ym:.1f}" if joined else f"M{x0:.1f} {ym:.1f}")
        lines.setdefault(cls, []).append(f"{path}H{max(x1, x0 + 1):.1f}")
        previous = (r.bucket_start, ym)
    c.band, c.lost = "".join(band), "".join(lost)
    c.lines = {cls: "".join(parts) for cls, parts in sorted(lines.items())}

    # Time axis in UTC: every 3 hours over a day, every midnight over a week.
    tick = 3 * 3600 if span == "day" else DAY
    t = math.ceil(start / tick) * tick
    while t <= end:
        moment = datetime.fromtimestamp(t, UTC)
        label = (moment.strftime("%H:%M") if span == "day"
                 else format_skeleton("MMMEd", moment, locale=fmt.lang))
        c.x_ticks.append((x(t), label))
        t += tick
    return c


# --- HTTP ---

def endonym(code: str) -> str:
    """A language's name in itself, as a menu item: "Français", "Русский", "العربية"."""
    name = Locale.parse(code).get_display_name() or code
    return name[:1].upper() + name[1:]


class StatusPage:
    """The rendering environment of each language, built when first asked for."""

    def __init__(self) -> None:
        self._envs: dict[str, Environment] = {}
        self.filter_js = (TEMPLATES / "filter.js").read_text(encoding="utf-8").strip()
        digest = hashlib.sha256(self.filter_js.encode()).digest()
        self.csp = ("default-src 'none'; style-src 'self'; img-src 'self'; "
                    f"script-src 'sha256-{base64.b64encode(digest).decode()}'; "
                    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
        css = (STATIC / "status.css").read_bytes()
        self.css_url = f"/status/static/status.css?v={hashlib.sha256(css).hexdigest()[:12]}"

    def env(self, lang: str) -> Environment:
        env = self._envs.get(lang)
        if env is None:
            env = Environment(loader=FileSystemLoader(TEMPLATES),
                              autoescape=select_autoescape(default=True, default_for_string=True),
                              extensions=["jinja2.ext.i18n"], undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
            env.install_gettext_translations(load_translations(lang), newstyle=True)
            env.globals.update(LANGUAGES=LANGUAGES, STATES=WORST_FIRST,
                               css_url=self.css_url, filter_js=Markup(self.filter_js))
            self._envs[lang] = env
        return env

    async def render(self, request: web.Request, template: str, lang: str, explicit: bool,
                     now: float, status: int = 200, **context) -> web.Response:
        """Renders on a worker thread: 250 rows take tens of milliseconds of CPU, which the
        event loop (ingest) should not wait for. The context holds copies only."""
        context.setdefault("refresh", False)
        context.setdefault("refresh_s", None)  # None: a page that does not refresh

        def url(path: str, **params) -> str:
            """A link that keeps the reader's explicit language choice."""
            if explicit:
                params.setdefault("lang", lang)
            query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
            return path + ("?" + query if query else "")

        def here(**changes) -> str:
            """This page with some parameters changed (None removes one)."""
            params = dict(request.query)
            for key, value in changes.items():
                if value is None:
                    params.pop(key, None)
                else:
                    params[key] = value
            return request.path + ("?" + urlencode(params) if params else "")

        template = self.env(lang).get_template(template)
        html = await asyncio.get_running_loop().run_in_executor(None, functools.partial(
            template.render, lang=lang, dir=Locale.parse(lang).text_direction,
            fmt=Formatter(lang, now), lang_explicit=explicit, url=url, here=here,
            endonym=endonym, quote=lambda s: quote(s, safe=""), now=now, **context))
        response = web.Response(text=html, status=status, content_type="text/html", headers={
            "Content-Language": lang, "Vary": "Accept-Language", "Cache-Control": "no-cache",
            "Content-Security-Policy": self.csp, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin"})
        response.enable_compression()
        return response


async def overview(request: web.Request) -> web.Response:
    lang, explicit = choose_language(request)
    now = time.time()
    snapshot = await collector_of(request).in_db(_fleet_snapshot, request.app)
    unmonitored = request.query.get("unmonitored") == "1"
    rows, missing = mission_rows(snapshot, collector_of(request).state,
                                 _inventory(request.app), unmonitored)
    counts = {s: sum(r.state == s for r in rows) for s in WORST_FIRST}

    sort = request.query.get("sort", "state")
    sort = sort if sort in SORTS else "state"
    order = request.query.get("order")
    descending = order == "desc" if order in ("asc", "desc") else _DEFAULT_DESCENDING[sort]
    rows = sort_rows(rows, sort, descending)
    q = request.query.get("q", "").strip()
    state = request.query.get("state", "")
    state = state if state in WORST_FIRST else ""
    for r in rows:  # filtered rows stay in the page, hidden, for the live filter
        r.hidden = bool((q and q.casefold() not in r.search) or (state and r.state != state))
    refresh = request.query.get("refresh") != "0"
    return await request.app[STATUS_PAGE].render(
        request, "overview.html", lang, explicit, now, rows=rows, counts=counts,
        shown=sum(not r.hidden for r in rows), sort=sort, descending=descending,
        default_descending=_DEFAULT_DESCENDING, q=q, state=state, refresh=refresh,
        unmonitored=unmonitored, missing=missing,
        refresh_s=REFRESH_S)


async def mission(request: web.Request) -> web.Response:
    lang, explicit = choose_language(request)
    now = time.time()
    code = request.match_info["code"]
    page = request.app[STATUS_PAGE]
    inventory = _inventory(request.app)
    fleet = collector_of(request).state
    checks = {c.check_id: c for (m, _), c in fleet.checks.items() if m == code}
    icmp = sorted(c for c, check in checks.items() if check.kind == "icmp")
    snapshot = await collector_of(request).in_db(_mission_snapshot, request.app, code, icmp, now)
    known = checks or snapshot["machines"] or snapshot["access"] or snapshot["probes"]
    if not known and name_of(inventory, code) is None:
        return await page.render(request, "not_found.html", lang, explicit, now, status=404,
                           code=code)

    # Copies: the event loop goes on changing the fleet state while a thread renders.
    checks = {check_id: copy.copy(c) for check_id, c in checks.items()}
    check_rows = []
    for check_id in sorted(set(checks) | set(snapshot["machines"])):
        state, since = snapshot["machines"].get(check_id, ("unknown", None))
        check_rows.append({"id": check_id, "state": state, "since": since,
                           "check": checks.get(check_id),
                           "group": snapshot["groups"].get(check_id)})
    charts, outages = await asyncio.get_running_loop().run_in_executor(
        None, _charts_and_outages, snapshot, checks, icmp, now, Formatter(lang, now))
    access = snapshot["access"].get(ALL_GROUPS, ("unknown", None))
    groups = sorted((g, *v) for g, v in snapshot["access"].items() if g != ALL_GROUPS)
    probes = [(p, copy.copy(fleet.probes.get(p.probe_id))) for p in snapshot["probes"]]
    entry = inventory.mission(code) if name_of(inventory, code) is not None else None
    refresh = request.query.get("refresh") != "0"
    return await page.render(
        request, "mission.html", lang, explicit, now, code=code, entry=entry,
        state=access[0], since=access[1], groups=groups, checks=check_rows, charts=charts,
        outages=outages, window_days=OUTAGE_WINDOW_S // DAY, probes=probes,
        max_outages=MAX_OUTAGES, refresh=refresh, refresh_s=MISSION_REFRESH_S)


def _charts_and_outages(snapshot: dict, checks: dict, icmp: list[str], now: float,
                        fmt: Formatter) -> tuple[list[dict], list[Outage]]:
    charts = []
    for check_id in icmp:
        charts.append({
            "check": checks[check_id],
            "day": make_chart(f"c{len(charts)}d", "day", snapshot["day"][check_id],
                              now - DAY, now, MINUTE, fmt),
            "week": make_chart(f"c{len(charts)}w", "week", snapshot["week"][check_id],
                               now - 7 * DAY, now, HOUR, fmt)})
    return charts, outages_of(snapshot)


async def status_slash(request: web.Request) -> web.Response:
    raise web.HTTPFound("/status" + (f"?{request.query_string}" if request.query_string else ""))


def add_routes(app: web.Application) -> None:
    app[STATUS_PAGE] = StatusPage()
    app.router.add_get("/status", overview)
    app.router.add_get("/status/", status_slash)
    app.router.add_static("/status/static/", STATIC)
    app.router.add_get("/status/{code}", mission)
