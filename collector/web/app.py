"""The collector's web app: a consumer of the Collector (collector/core.py), which it
starts and stops with itself. Routes: the probes' ingest (ingest.py), the read API (api/),
the status page (status/), and here /metrics, /healthz and the index. Every request passes
first through limits.py, which bounds what it may cost whoever sends it."""

from __future__ import annotations

import logging

from aiohttp import web

from collector.config import CollectorConfig
from collector.core import Collector
from collector.health import Health
from collector.store.database import DatabaseGone, Store
from collector.web import api, ingest, limits, status
from collector.web.context import COLLECTOR, collector_of

log = logging.getLogger(__name__)

EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEALTH = web.AppKey("health", Health)


async def metrics_endpoint(request: web.Request) -> web.Response:
    plain, gzipped = await collector_of(request).exposition.get()
    headers = {"Content-Type": EXPOSITION_CONTENT_TYPE, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=gzipped, headers=headers)
    return web.Response(body=plain, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """200 when a test write to the database succeeded within a second; else 503 and
    why (collector/health.py)."""
    verdict = await request.app[HEALTH].check()
    if not verdict.ok:
        return web.json_response({"status": "failing", "database": verdict.detail},
                                 status=503)
    return web.json_response({"status": "ok", "database": "ok",
                              "write_s": round(verdict.write_s or 0.0, 4)})


@web.middleware
async def database_gone(request: web.Request, handler) -> web.StreamResponse:
    """A SQLite file deleted or replaced under the collector (Store.check_file) fails
    every request that needs the database: 503 and why, rather than a 500; a probe keeps
    its batch and sends it again later."""
    try:
        return await handler(request)
    except DatabaseGone as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        return web.json_response({"error": str(exc)}, status=503)


async def index(request: web.Request) -> web.Response:
    return web.json_response({
        "service": "unhindered-collector",
        "endpoints": {"status page": "/status", "metrics": "/metrics", "health": "/healthz",
                      "api": "/api/v1/openapi.json", "ingest": "POST /api/v1/results"},
    })


def create_app(config: CollectorConfig, store: Store) -> web.Application:
    app = web.Application(client_max_size=config.ingest.max_body_bytes,
                          middlewares=[limits.bounded, database_gone])
    app[limits.LIMITS] = limits.RequestLimits(config.limits)
    collector = app[COLLECTOR] = Collector(config, store)
    app[HEALTH] = Health(collector.in_db, store)

    async def startup(app: web.Application) -> None:
        await collector.start()

    async def cleanup(app: web.Application) -> None:
        await collector.stop()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/healthz", healthz)
    ingest.add_routes(app)
    api.add_routes(app)
    status.add_routes(app)
    return app
