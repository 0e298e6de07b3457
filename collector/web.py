"""The collector's HTTP side: result ingest, /metrics, /healthz."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import ValidationError

from collector import api, statuspage
from collector.alerting.push import AlertPusher
from collector.central import CentralChecks
from collector.config import CollectorConfig
from collector.inventory import Inventory
from collector.metrics import Metrics, RenderedMetrics
from collector.rollups import Rollups
from collector.state import FleetState
from collector.store import EnrollmentRefused, Store
from collector.timeline import Timelines
from probes.measurement import PROTOCOL_VERSION, Ack, Batch

log = logging.getLogger(__name__)
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STORE = web.AppKey("store", Store)
STATE = web.AppKey("state", FleetState)
METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", CollectorConfig)
DB_THREAD = web.AppKey("db_thread", ThreadPoolExecutor)
TIMELINES = web.AppKey("timelines", Timelines)
INVENTORY = web.AppKey("inventory", Inventory)
CENTRAL = web.AppKey("central", object)
EXPOSITION = web.AppKey("exposition", RenderedMetrics)
BACKGROUND = web.AppKey("background", list)
SNMP = web.AppKey("snmp", object)

SILENCE_CHECK_S = 2.0
ROLLUP_PERIOD_S = 30.0
PRUNE_PERIOD_S = 3_600.0


class Refusal(Exception):
    """A request we refuse: the status and a reason the probe's operator can act on."""

    def __init__(self, status: int, reason: str, details: list | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.details = status, reason, details


def _error(status: int, reason: str, details: list | None = None) -> web.Response:
    body: dict = {"error": reason}
    if details:
        body["details"] = details
    return web.json_response(body, status=status)


async def _db(request: web.Request, fn, *args):
    return await in_db(request.app, fn, *args)


async def in_db(app: web.Application, fn, *args):
    # One thread owns the database: SQLite wants a single writer, and the event loop
    # must never wait on a disk flush.
    return await asyncio.get_running_loop().run_in_executor(app[DB_THREAD], fn, *args)


async def ingest(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    try:
        response = await _ingest(request)
    except Refusal as refusal:
        log.info("refused a batch from %s: %d %s", request.remote, refusal.status,
                 refusal.reason)
        response = _error(refusal.status, refusal.reason, refusal.details)
    metrics.ingest_requests.labels(code=str(response.status)).inc()
    return response


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    return token.strip()


async def _probe_of(request: web.Request):
    probe = await _db(request, request.app[STORE].probe_for_token, bearer_token(request))
    if probe is None:
        raise Refusal(401, "unknown or revoked token: register the probe with "
                           "'unhindered-collector probes add' and use the credential it gets")
    return probe


async def probe_checks(request: web.Request) -> web.Response:
    """The probe's check list from the central checks file, with an ETag."""
    try:
        probe = await _probe_of(request)
    except Refusal as refusal:
        return _error(refusal.status, refusal.reason)
    central = request.app[CENTRAL]
    if central is None:
        checks, version = [], "none"
    else:
        checks, version = await _db(request, central.for_probe, probe.probe_id, probe.mission)
    etag = f'"{version}"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.json_response({"version": version, "checks": checks}, headers={"ETag": etag})


def parse_batch(raw: bytes) -> Batch:
    # The fast path: pydantic parses the JSON itself, without building Python dicts first.
    # Anything it refuses goes the slow way below, which says why.
    try:
        batch = Batch.model_validate_json(raw)
    except ValidationError:
        batch = None
    if batch is not None and batch.protocol == PROTOCOL_VERSION:
        return batch
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refusal(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Refusal(400, "body must be a JSON object (a batch)")
    if data.get("protocol") != PROTOCOL_VERSION:
        raise Refusal(400, f"unsupported protocol version {data.get('protocol')!r}: this "
                           f"collector speaks version {PROTOCOL_VERSION}")
    try:
        return Batch.model_validate(data)
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]}
                   for e in exc.errors()[:20]]
        raise Refusal(422, f"invalid batch: {exc.error_count()} problem(s)", details) from exc


async def _ingest(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    probe = await _probe_of(request)

    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise Refusal(413, f"body exceeds {config.ingest.max_body_bytes} bytes after "
                           "decompression: send smaller batches") from exc
    except Exception as exc:  # e.g. a corrupt gzip stream
        raise Refusal(400, f"cannot read the body: {exc}") from exc
    # Parsing a large batch takes milliseconds of CPU: not on the event loop. On the
    # database thread rather than a pool: parsing holds the GIL, and several parsing
    # threads only took it from each other (15 % fewer results/s, docs/benchmarks.md).
    batch = await in_db(request.app, parse_batch, raw)
    if (batch.probe_id, batch.mission) != (probe.probe_id, probe.mission):
        raise Refusal(403, f"this token belongs to probe {probe.probe_id} of mission "
                           f"{probe.mission}, not {batch.probe_id} of {batch.mission}")
    horizon = datetime.now(UTC) + timedelta(seconds=config.ingest.max_future_s)
    future = [m.seq for m in batch.measurements if m.started_at > horizon]
    if future:
        raise Refusal(422, f"measurement time is in the future for seqs {future[:10]}: "
                           "check the probe's clock (NTP)")

    new, duplicates = await store_results(request.app, batch)
    ack = Ack(acked_through=batch.measurements[-1].seq, stored=len(new), duplicates=duplicates)
    return web.json_response(ack.model_dump())


async def store_results(app: web.Application, batch: Batch) -> tuple[list, int]:
    """Stores a batch's new results (those whose (probe, outbox, seq) is not stored yet)
    and folds them into the states: HTTP pushes and SNMP polls both come through here."""
    new, duplicates = await in_db(app, app[STORE].store_batch, batch, time.time())
    # Acknowledged from here on: the results are committed. States follow from them.
    state = app[STATE]
    for m in new:
        state.apply(m)
    if new:
        await in_db(app, app[TIMELINES].apply, new)
    state.note_report(batch.probe_id, batch.mission, len(new), batch.backlog)
    metrics = app[METRICS]
    metrics.ingest_results.labels(outcome="stored").inc(len(new))
    metrics.ingest_results.labels(outcome="duplicate").inc(duplicates)
    return new, duplicates


async def enroll(request: web.Request) -> web.Response:
    """A new probe trades its one-time enrollment token for its credential."""
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "body must be JSON: {\"enrollment_token\": \"...\"}")
    token = data.get("enrollment_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        return _error(400, "enrollment_token is missing")
    try:
        enrolled = await _db(request, request.app[STORE].redeem, token)
    except EnrollmentRefused as refusal:
        log.info("refused an enrollment from %s: %s", request.remote, refusal)
        return _error(403, str(refusal))
    log.info("probe %s (%s) enrolled from %s", enrolled.probe_id, enrolled.mission,
             request.remote)
    return web.json_response({"probe_id": enrolled.probe_id, "mission": enrolled.mission,
                              "token": enrolled.token})


async def metrics_endpoint(request: web.Request) -> web.Response:
    plain, gzipped = await request.app[EXPOSITION].get()
    headers = {"Content-Type": EXPOSITION_CONTENT_TYPE, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=gzipped, headers=headers)
    return web.Response(body=plain, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    try:
        await _db(request, request.app[STORE].ping)
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
    app = web.Application(client_max_size=config.ingest.max_body_bytes)
    state = FleetState()
    policy = config.states.policy()
    inventory = config.load_inventory()
    timelines = Timelines(store, lambda mission: inventory.policy_for(mission, policy))
    rollups = Rollups(store)
    alerting = config.alerting
    pusher = (AlertPusher(alerting.alertmanager_url, alerting.resend_s,
                          check_states=timelines.check_states)
              if alerting.alertmanager_url else None)
    if pusher is not None:
        timelines.observers.append(pusher.observe)
    app[CONFIG] = config
    app[STORE] = store
    app[STATE] = state
    app[TIMELINES] = timelines
    app[INVENTORY] = inventory
    app[CENTRAL] = CentralChecks(config.checks_file) if config.checks_file else None
    app[METRICS] = Metrics(state, timelines, inventory)
    app[EXPOSITION] = RenderedMetrics(app[METRICS])
    app[DB_THREAD] = ThreadPoolExecutor(1, thread_name_prefix="db")

    async def in_db(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(app[DB_THREAD], fn, *args)

    async def every(period: float, what: str, job) -> None:
        """Runs job() on the database thread every `period` seconds, for ever."""
        while True:
            await asyncio.sleep(period)
            try:
                await in_db(job)
            except Exception:
                log.exception("%s failed", what)

    async def startup(app: web.Application) -> None:
        await in_db(store.migrate)
        latest = await in_db(store.latest_per_check)
        counts = await in_db(store.round_counts)
        state.load(latest, counts)
        await in_db(timelines.load, latest)
        log.info("state rebuilt from the store: %d checks", len(state.checks))
        # What start-up loaded lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise stall every thread for tens of ms.
        gc.collect()
        gc.freeze()
        app[EXPOSITION].warm()
        retention_s = config.retention.raw_days * 86_400
        minute_retention_s = config.retention.rollup_1m_days * 86_400
        app[BACKGROUND] = [
            *app[METRICS].runtime.start(),
            asyncio.create_task(every(SILENCE_CHECK_S, "checking for silent checks",
                                      lambda: timelines.tick(time.time()))),
            asyncio.create_task(every(ROLLUP_PERIOD_S, "computing rollups",
                                      lambda: rollups.run(time.time()))),
            asyncio.create_task(every(PRUNE_PERIOD_S, "pruning raw results",
                                      lambda: rollups.prune(time.time(), retention_s,
                                                           minute_retention_s))),
        ]
        if pusher is not None:  # a fleet-wide outage's hold ends with time, not a change
            app[BACKGROUND].append(asyncio.create_task(
                every(SILENCE_CHECK_S, "re-checking held alerts", pusher.reconcile)))
        if config.snmp.enabled:
            from collector.snmp.service import SnmpService  # pysnmp loads only when used
            app[SNMP] = SnmpService(config.snmp, app)
            await app[SNMP].start()

    async def cleanup(app: web.Application) -> None:
        for task in app[BACKGROUND]:
            task.cancel()
        app[METRICS].runtime.stop()
        if SNMP in app:
            await app[SNMP].stop()
        app[EXPOSITION].close()
        if pusher is not None:
            pusher.close()
        app[DB_THREAD].shutdown(wait=True)
        store.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_get("/", index)
    app.router.add_post("/api/v1/results", ingest)
    app.router.add_post("/api/v1/enroll", enroll)
    app.router.add_get("/api/v1/probe/checks", probe_checks)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/healthz", healthz)
    api.add_routes(app)
    statuspage.add_routes(app)
    return app
