"""The collector's web app: a consumer of the Collector (collector/core.py), which it
starts and stops with itself. Routes: the probes' ingest (ingest.py), the read API (api/),
the status page (status/), and here /metrics, /healthz and the index. Every request passes
first through limits.py, which bounds what it may cost whoever sends it."""

from __future__ import annotations

from aiohttp import web

from collector.config import CollectorConfig
from collector.core import Collector
from collector.store.database import Store
from collector.web import api, ingest, limits, status
from collector.web.context import COLLECTOR, collector_of

EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics_endpoint(request: web.Request) -> web.Response:
    plain, gzipped = await collector_of(request).exposition.get()
    headers = {"Content-Type": EXPOSITION_CONTENT_TYPE, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=gzipped, headers=headers)
    return web.Response(body=plain, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    collector = collector_of(request)
    try:
        await collector.in_db(collector.store.ping)
    except Exception as exc:
        return web.json_response({"status": "failing", "database": str(exc)}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


async def index(request: web.Request) -> web.Response:
    return web.json_response({
        "service": "unhindered-collector",
        "endpoints": {"status page": "/status", "metrics": "/metrics", "health": "/healthz",
                      "api": "/api/v1/openapi.json", "ingest": "POST /api/v1/results"},
    })


def create_app(config: CollectorConfig, store: Store) -> web.Application:
    app = web.Application(client_max_size=config.ingest.max_body_bytes,
                          middlewares=[limits.bounded])
    app[limits.LIMITS] = limits.RequestLimits(config.limits)
    collector = app[COLLECTOR] = Collector(config, store)

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
