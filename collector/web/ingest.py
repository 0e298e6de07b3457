"""The probes' side of the web app: POST /api/v1/results (a batch in, an Ack out),
POST /api/v1/heartbeat (the probe is alive: 204), POST /api/v1/enroll (a one-time token
traded for a credential) and GET /api/v1/probe/checks (the probe's central check list).
A batch is parsed and checked here, then handed to the one `Collector.store_results`; the
wire format is docs/protocol.md.

A batch is never refused whole for one bad result: the probe would send it again for
ever, and nothing queued behind it would arrive. A result that breaks the wire's rules, or
that the store cannot take, is rejected alone, with its seq and why, and acknowledged
with the others, so that the probe deletes it and goes on. Only what identifies the
results (the body's JSON, the batch's fields, each result's seq) refuses the batch."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import ValidationError

from collector.config import CollectorConfig
from collector.store.database import EnrollmentRefused, ProbeRecord
from collector.web.context import Refusal, bearer_token, collector_of, error_response
from unhindered.heartbeat import HEARTBEAT_PATH, Heartbeat
from unhindered.measurement import (
    ACK_HEADER,
    ACK_WITH_REJECTED,
    PROTOCOL_VERSION,
    Ack,
    Batch,
    BatchEnvelope,
    BatchHead,
    CheckList,
    Rejected,
    RejectReason,
    clean_text,
    read_batch,
    read_measurement,
)
from unhindered.version import probe_version

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


@dataclass(frozen=True)
class Parsed:
    batch: Batch  # with the results that passed the wire's rules only (maybe none)
    acked_through: int  # the batch's highest seq, whatever became of its results
    rejected: list[Rejected]


def parse_batch(raw: bytes) -> Parsed:
    # The fast path: pydantic parses the JSON itself, without building Python dicts first,
    # strictly typed (unhindered/measurement.py read_batch). Anything it refuses goes the
    # slow way below, which says why and keeps the good results of a batch with bad ones.
    try:
        batch = read_batch(raw)
    except ValidationError:
        batch = None
    if batch is not None and batch.protocol == PROTOCOL_VERSION:
        return Parsed(batch, batch.measurements[-1].seq, [])
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise Refusal(400, "body is not valid JSON: nested too deep") from exc
    except ValueError as exc:  # also an integer of more than 4,300 digits
        raise Refusal(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Refusal(400, "body must be a JSON object (a batch)")
    if data.get("protocol") != PROTOCOL_VERSION:
        raise Refusal(400, f"unsupported protocol version {data.get('protocol')!r}: this "
                           f"collector speaks version {PROTOCOL_VERSION}")
    checks = _check_list(data.pop("checks", None), data.get("probe_id"))
    try:
        envelope = BatchEnvelope.model_validate(data, strict=True)
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]}
                   for e in exc.errors(include_url=False)[:20]]
        raise Refusal(422, f"invalid batch: {exc.error_count()} problem(s)", details) from exc
    return _one_by_one(envelope.model_copy(update={"checks": checks}), data["measurements"])


def _check_list(raw, probe_id) -> CheckList | None:
    """The batch's check list, read from its JSON text as on the fast path (its time from
    its RFC 3339 text). One that breaks the wire's rules is ignored, and logged, rather
    than the batch refused: it only retires checks (docs/states.md), and a batch refused
    would be sent again for ever."""
    if raw is None:
        return None
    try:
        return CheckList.model_validate_json(json.dumps(raw), strict=True)
    except (ValidationError, RecursionError) as exc:
        why = _problems(exc) if isinstance(exc, ValidationError) else "nested too deep"
        log.warning("ignored the check list of a batch from probe %r: %s", probe_id, why)
        return None


def _one_by_one(envelope: BatchEnvelope, items: list) -> Parsed:
    """Each result read on its own: those that break a rule are rejected, with why."""
    valid, rejected = [], []
    highest = 0
    for item, seq in zip(items, (m.seq for m in envelope.measurements), strict=True):
        in_order, highest = seq > highest, max(seq, highest)
        try:
            # In JSON again: a result is read from its JSON text, as on the fast path (a
            # time from its RFC 3339 text, strictly typed otherwise).
            m = read_measurement(json.dumps(item))
        except ValidationError as exc:
            rejected.append(Rejected(seq=seq, reason=RejectReason.INVALID,
                                     detail=_problems(exc)))
            continue
        except RecursionError:
            rejected.append(Rejected(seq=seq, reason=RejectReason.INVALID,
                                     detail="nested too deep"))
            continue
        if not in_order:
            rejected.append(Rejected(seq=seq, reason=RejectReason.OUT_OF_ORDER,
                                     detail="seqs must increase within a batch"))
        elif (m.probe_id, m.mission) != (envelope.probe_id, envelope.mission):
            rejected.append(Rejected(
                seq=seq, reason=RejectReason.WRONG_PROBE,
                detail=f"names probe {m.probe_id} of {m.mission}, its batch "
                       f"{envelope.probe_id} of {envelope.mission}"))
        else:
            valid.append(m)
    # The head's fields as they were read (a check list stays a CheckList, not a dict).
    head = {name: getattr(envelope, name) for name in BatchHead.model_fields}
    return Parsed(Batch.model_construct(**head, measurements=valid), highest, rejected)


def _problems(exc: ValidationError) -> str:
    """What is wrong with a result, field by field, on one line (the probe logs it)."""
    errors = exc.errors(include_url=False, include_input=False)
    text = "; ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] if e["loc"]
                     else e["msg"] for e in errors[:3])
    if len(errors) > 3:
        text += f"; and {len(errors) - 3} more"
    return clean_text(text, 500)  # a message may quote the input


def _within_history(batch: Batch, probe: ProbeRecord, config: CollectorConfig
                    ) -> tuple[Batch, list[Rejected]]:
    """Results older than the raw results the collector keeps, or than the probe's
    registration, are rejected. The raw results of a day past retention.raw_days are gone
    (pruned once rolled up): a late one would recompute that day's rollups from itself
    alone. Before its registration the probe did not exist: its clock was wrong, and the
    times would rewrite history; the clock error ingest allows ahead (max_future_s) is
    allowed behind too."""
    raw_days = config.retention.raw_days
    now = datetime.now(UTC)
    kept_since = now - timedelta(days=raw_days)
    registered = datetime.fromtimestamp(probe.created_at, UTC)
    allowed_from = registered - timedelta(seconds=config.ingest.max_future_s)
    if min((m.started_at for m in batch.measurements), default=now) >= max(kept_since,
                                                                            allowed_from):
        return batch, []
    keep, rejected = [], []
    for m in batch.measurements:
        if m.started_at < kept_since:
            rejected.append(Rejected(
                seq=m.seq, reason=RejectReason.TOO_OLD,
                detail=f"started at {m.started_at.isoformat()}: this collector keeps raw "
                       f"results {raw_days:g} days"))
        elif m.started_at < allowed_from:
            rejected.append(Rejected(
                seq=m.seq, reason=RejectReason.BEFORE_REGISTRATION,
                detail=f"started at {m.started_at.isoformat()}, before probe "
                       f"{probe.probe_id} was registered ({registered.isoformat()}): "
                       "check the probe's clock (NTP)"))
        else:
            keep.append(m)
    return batch.model_copy(update={"measurements": keep}), rejected


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
    parsed = await collector.in_db(parse_batch, raw)
    batch = parsed.batch
    if (batch.probe_id, batch.mission) != (probe.probe_id, probe.mission):
        raise Refusal(403, f"this token belongs to probe {probe.probe_id} of mission "
                           f"{probe.mission}, not {batch.probe_id} of {batch.mission}")
    horizon = datetime.now(UTC) + timedelta(seconds=config.ingest.max_future_s)
    future = [m.seq for m in batch.measurements if m.started_at > horizon]
    if future:
        raise Refusal(422, f"measurement time is in the future for seqs {future[:10]}: "
                           "check the probe's clock (NTP)")
    batch, too_early = _within_history(batch, probe, config)

    stored = await collector.store_results(
        batch, version=probe_version(request.headers.get("User-Agent")))
    rejected = sorted([*parsed.rejected, *too_early, *(
        Rejected(seq=seq, reason=RejectReason.STORE_REFUSED, detail=why)
        for seq, why in stored.refused)], key=lambda r: r.seq)
    if rejected:
        _note_rejected(collector, probe, rejected)
    ack = Ack(acked_through=parsed.acked_through, stored=len(stored.new),
              duplicates=stored.duplicates, rejected=rejected)
    reads_rejected = ACK_WITH_REJECTED in {
        v.strip() for v in request.headers.get(ACK_HEADER, "").split(",")}
    return web.json_response(ack.model_dump(exclude=None if reads_rejected else {"rejected"}))


def _note_rejected(collector, probe: ProbeRecord, rejected: list[Rejected]) -> None:
    """Counted by reason (the store counts its own refusals), and one log line."""
    for reason, n in Counter(r.reason for r in rejected).items():
        if reason != RejectReason.STORE_REFUSED:
            collector.metrics.ingest_rejected.labels(reason=reason).inc(n)
    shown = "; ".join(f"seq {r.seq} {r.reason} ({r.detail})" for r in rejected[:5])
    more = f"; and {len(rejected) - 5} more" if len(rejected) > 5 else ""
    log.warning("rejected %d result(s) of probe %s (%s): %s%s", len(rejected),
                probe.probe_id, probe.mission, shown, more)


async def heartbeat(request: web.Request) -> web.Response:
    """A probe that sent nothing else for its heartbeat period says it is alive: 204."""
    try:
        probe = await _probe_of(request)
        try:
            beat = Heartbeat.model_validate_json(await request.read() or b"{}")
        except ValidationError as exc:
            raise Refusal(422, f"invalid heartbeat: {_problems(exc)}") from exc
        except Exception as exc:  # e.g. a corrupt gzip stream
            raise Refusal(400, f"cannot read the body: {exc}") from exc
    except Refusal as refusal:
        return error_response(refusal.status, refusal.reason, refusal.details)
    await collector_of(request).heartbeat(probe.probe_id, probe.mission, beat.backlog)
    return web.Response(status=204)


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
    app.router.add_post(HEARTBEAT_PATH, heartbeat)
    app.router.add_post("/api/v1/enroll", enroll)
    app.router.add_get("/api/v1/probe/checks", probe_checks)
