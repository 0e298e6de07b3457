"""The status page's request handlers (GET /status, GET /status/{code}) and the
rendering environment (`StatusPage`: Jinja2 with gettext, per language) they share.

A handler reads the in-memory fleet state on the event loop (which alone writes it),
has the database read on the collector's database thread (snapshot.py), and renders on a
worker thread, from copies only: neither the database nor rendering holds up ingest.
The package's `add_routes` puts these on the app.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import hashlib
import time
from urllib.parse import quote, urlencode

from aiohttp import web
from babel import Locale
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from collector import STATIC, TEMPLATES
from collector.state.timeline import ALL_GROUPS
from collector.store.rollups import DAY, HOUR, MINUTE
from collector.web.context import COLLECTOR, collector_of
from collector.web.status.charts import make_chart
from collector.web.status.formatting import Formatter, choose_language, endonym
from collector.web.status.snapshot import (
    DEFAULT_DESCENDING,
    MAX_OUTAGES,
    OUTAGE_WINDOW_S,
    SORTS,
    Outage,
    fleet_snapshot,
    mission_rows,
    mission_snapshot,
    name_of,
    outages_of,
    sort_rows,
)
from unhindered.i18n import LANGUAGES, load_translations
from unhindered.states import WORST_FIRST

REFRESH_S = 30
MISSION_REFRESH_S = 60

STATUS_PAGE = web.AppKey("status_page", object)


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


def _inventory(app: web.Application):
    """The collector's mission inventory, when it has one (names, duty stations)."""
    return app[COLLECTOR].inventory


async def overview(request: web.Request) -> web.Response:
    lang, explicit = choose_language(request)
    now = time.time()
    snapshot = await collector_of(request).in_db(fleet_snapshot, request.app)
    unmonitored = request.query.get("unmonitored") == "1"
    rows, missing = mission_rows(snapshot, collector_of(request).state,
                                 _inventory(request.app), unmonitored)
    counts = {s: sum(r.state == s for r in rows) for s in WORST_FIRST}

    sort = request.query.get("sort", "state")
    sort = sort if sort in SORTS else "state"
    order = request.query.get("order")
    descending = order == "desc" if order in ("asc", "desc") else DEFAULT_DESCENDING[sort]
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
        default_descending=DEFAULT_DESCENDING, q=q, state=state, refresh=refresh,
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
    snapshot = await collector_of(request).in_db(mission_snapshot, request.app, code, icmp, now)
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
        paths=snapshot["paths"],
        max_outages=MAX_OUTAGES, refresh=refresh, refresh_s=MISSION_REFRESH_S)


def _charts_and_outages(snapshot: dict, checks: dict, icmp: list[str], now: float,
                        fmt: Formatter) -> tuple[list[dict], list[Outage]]:
    """On a worker thread: a day and a week chart per ICMP check, and the outages."""
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
