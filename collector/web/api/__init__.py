"""The collector's read-only REST API under /api/v1 (docs/api.md): missions and their
access, check states, state and access intervals, raw results, rollups and probes, for
dashboards, scripts and reports, with a read token (`unhindered-collector readers add`).

The OpenAPI 3.1 document at /api/v1/openapi.json is built from the same pydantic models
the handlers answer with, and from the same table of endpoints the routes are added from,
so the document cannot drift from what is served. Hence the modules: models.py (the
response models), params.py (reading the query string: times, cursors, limits),
handlers.py (the handlers, behind a read token), routes.py (the one table of endpoints)
and openapi.py (the document built from that table); here, only adding the routes.
"""

from __future__ import annotations

from aiohttp import web

from collector.web.api.handlers import for_readers
from collector.web.api.openapi import openapi, openapi_bytes
from collector.web.api.params import PREFIX
from collector.web.api.routes import ENDPOINTS


def add_routes(app: web.Application) -> None:
    """Adds the read API and its OpenAPI document to the collector's app."""
    openapi_bytes()  # a model that cannot be described fails here, at start-up
    for endpoint in ENDPOINTS:
        app.router.add_get(endpoint.path, for_readers(endpoint.handler), allow_head=False)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi, allow_head=False)
