"""The probes' side of the web app: POST /api/v1/results (a batch in, an Ack out),
POST /api/v1/enroll (a one-time token traded for a credential) and
GET /api/v1/probe/checks (the probe's central check list). A batch is parsed and checked
here, then handed to the one `Collector.store_results`; the wire format is
docs/protocol.md."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import ValidationError

from collector.store.database import EnrollmentRefused
from collector.web.context import Refusal, bearer_token, collector_of, error_response
from unhindered.measurement import PROTOCOL_VERSION, Ack, Batch

log = logging.getLogger(__name__)


async def ingest(request: web.Request) -> web.Response:
    metrics = collector_of(request).metrics
    try:
        response = await _ingest(request)
    except Refusal as refusal:
        log.info("refused a batch from %s: %d %s", request.remote, refusal.status,
                 refusal.reason)
        response = error_response(refusal.status, refusal.reason, refusal.details)
    metrics.ingest_requests.labels(code=str(response.status)).inc()
    return response


async def _probe_of(request: web.Request):
    collector = collector_of(request)
    probe = await collector.in_db(collector.store.probe_for_token, bearer_token(request))
    if probe is None:
        raise Refusal(401, "unknown or revoked token: register the probe with "
                           "'unhindered-collector probes add' and use the credential it gets")
    return probe


async def probe_checks(request: web.Request) -> web.Response:
    """The probe's check list from the central checks file, with an ETag."""
    try:
        probe = await _probe_of(request)
    except Refusal as refusal:
        return error_response(refusal.status, refusal.reason)
    collector = collector_of(request)
    if collector.central is None:
        checks, version = [], "none"
    else:
        checks, version = await collector.in_db(collector.central.for_probe, probe.probe_id,
                                                probe.mission)
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
    collector = collector_of(request)
    config = collector.config
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
    # threads only took it from each other (13 % fewer results/s, commit 8d220f5).
    batch = await collector.in_db(parse_batch, raw)
    if (batch.probe_id, batch.mission) != (probe.probe_id, probe.mission):
        raise Refusal(403, f"this token belongs to probe {probe.probe_id} of mission "
                           f"{probe.mission}, not {batch.probe_id} of {batch.mission}")
    horizon = datetime.now(UTC) + timedelta(seconds=config.ingest.max_future_s)
    future = [m.seq for m in batch.measurements if m.started_at > horizon]
    if future:
        raise Refusal(422, f"measurement time is in the future for seqs {future[:10]}: "
                           "check the probe's clock (NTP)")

    new, duplicates = await collector.store_results(batch)
    ack = Ack(acked_through=batch.measurements[-1].seq, stored=len(new), duplicates=duplicates)
    return web.json_response(ack.model_dump())


async def enroll(request: web.Request) -> web.Response:
    """A new probe trades its one-time enrollment token for its credential."""
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        return error_response(400, "body must be JSON: {\"enrollment_token\": \"...\"}")
    token = data.get("enrollment_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        return error_response(400, "enrollment_token is missing")
    collector = collector_of(request)
    try:
        enrolled = await collector.in_db(collector.store.redeem, token)
    except EnrollmentRefused as refusal:
        log.info("refused an enrollment from %s: %s", request.remote, refusal)
        return error_response(403, str(refusal))
    log.info("probe %s (%s) enrolled from %s", enrolled.probe_id, enrolled.mission,
             request.remote)
    return web.json_response({"probe_id": enrolled.probe_id, "mission": enrolled.mission,
                              "token": enrolled.token})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/results", ingest)
    app.router.add_post("/api/v1/enroll", enroll)
    app.router.add_get("/api/v1/probe/checks", probe_checks)
