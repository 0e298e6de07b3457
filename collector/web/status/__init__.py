"""The collector's status page, for people without Grafana: GET /status (every monitored
mission's access) and GET /status/{code} (one mission: its checks, RTT and loss charts,
outages), server-rendered HTML with inline SVG, no JavaScript needed.

Text goes through gettext (the catalogues in unhindered/locale/, unhindered/i18n.py);
the language comes from ?lang= or Accept-Language, English by default.
Everything is read on the database thread (`Collector.in_db`) or from the in-memory fleet
state: rendering never waits on the database on the event loop.

The modules, each importing only those before it:
- formatting.py: the reader's language; numbers, dates and durations in it (Babel);
- snapshot.py: what is read on the database thread for a page, mission rows, outages;
- charts.py: the RTT and loss charts as SVG geometry;
- views.py: the request handlers and the Jinja2 environment of each language.
"""

from __future__ import annotations

from aiohttp import web

from collector import STATIC
from collector.web.status.views import STATUS_PAGE, StatusPage, mission, overview, status_slash


def add_routes(app: web.Application) -> None:
    app[STATUS_PAGE] = StatusPage()
    app.router.add_get("/status", overview)
    app.router.add_get("/status/", status_slash)
    app.router.add_static("/status/static/", STATIC)
    app.router.add_get("/status/{code}", mission)
