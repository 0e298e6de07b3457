"""The wire types, pydantic (what unhindered/measurement.py uses) against msgspec (typed
structs, strict decoding), for a decision: `python -m bench.bench_wire`. Needs no root, no
network and no lab; msgspec is not a project dependency (`.venv/bin/pip install msgspec`):
without it this part says so and skips.

The msgspec side mirrors unhindered/measurement.py below (the section between the
`>>> msgspec wire types` and `<<< msgspec wire types` lines): the same fields and
defaults, the union tagged on `kind`, the numeric bounds, lengths and patterns as
msgspec.Meta, unknown fields forbidden, frozen, and the model validators' cross-field
checks (received <= sent, one sample per reply, loss ratio, RTT statistics iff replies,
reason iff failed, started_at in UTC, a batch's seqs increasing and from one probe) in
__post_init__, which msgspec runs while decoding: their cost is in the figures. Before
timing, every batch is decoded by both and must give the same values, and the error
cases below must be refused by both (except where strictness differs, which is shown).

1. collector: realistic batches of 500 results (70 % icmp with 5 echo requests, some
   lost; tcp, https, dns; 2 % failed), built with the real pydantic models and encoded
   once the way the probe does (encode_result, with_seq, encode_batch). Timed per result,
   over several repetitions with the two libraries alternating, medians reported:
   decode + validate (read_batch, strict, as collector/web/ingest.py parse_batch
   does, against msgspec.json.Decoder(Batch).decode); model_dump() of each result
   (against msgspec.to_builtins); and the row the store writes (collector/store/database.py
   _row: the attributes, and the figures as JSON text). Also the probe's per-result
   cost: building a validated measurement, and encoding it for the outbox.
2. probe: in fresh interpreters (alternating, medians), the time to import the library
   and to define the wire types, then the first measurement built, validated and encoded
   to JSON, and the peak RSS (ru_maxrss) at the end.
3. the 422 path: what each library says about bad batches, as the API's details.
4. JSON Schema: Batch's schema from each (pydantic's model_json_schema is what
   collector/web/api/openapi.py puts in the OpenAPI document), compared keyword by
   keyword, and checked against the batches with jsonschema when it is installed.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, Goal, PartResult, table

# >>> msgspec wire types
# This section is also run on its own, in the footprint's fresh interpreter: it imports
# nothing but msgspec and the standard library.
try:
    import msgspec
    from msgspec import Meta, Struct
except ImportError:  # not a project dependency: run() says how to get it, and skips
    msgspec = None

    class Struct:  # a stand-in, so that this module imports without msgspec
        def __init_subclass__(cls, **_config: object) -> None:
            pass

    def Meta(**_constraints: object) -> None:
        return None

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

# msgspec matches patterns with Python's re.search, where "$" also matches before a final
# newline (pydantic's Rust regex does not): "(?!\n)" makes it the end of the text, and is
# a no-op in ECMA 262, so the JSON Schema pattern stays portable.
MIdentifier = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$(?!\n)")]
MMissionCode = Annotated[str, Meta(pattern=r"^[A-Z0-9][A-Z0-9-]{1,15}$(?!\n)")]
MSeconds = Annotated[float, Meta(ge=0, le=86_400)]
MAware = Annotated[datetime, Meta(tz=True)]
MShort = Annotated[str, Meta(max_length=16)]


class MFailureReason(StrEnum):
    """Why a round failed. A bounded set, so it can be a metric label."""

    TIMEOUT = "timeout"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    DNS = "dns"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    BODY_MISMATCH = "body_mismatch"
    UNEXPECTED_ANSWER = "unexpected_answer"
    ERROR = "error"


class _MStrict(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


# The docstrings are measurement.py's: both schemas carry them as descriptions.
class MIcmpFigures(_MStrict, kw_only=True):
    """One round of echo requests. RTTs are in seconds; a lost packet is a missing
    sample, never a zero, so the statistics are absent when nothing came back."""

    sent: Annotated[int, Meta(ge=0, le=10_000)]
    received: Annotated[int, Meta(ge=0)]
    duplicates: Annotated[int, Meta(ge=0)] = 0
    loss_ratio: Annotated[float, Meta(ge=0, le=1)]
    rtt_min_s: MSeconds | None = None
    rtt_median_s: MSeconds | None = None
    rtt_mean_s: MSeconds | None = None
    rtt_max_s: MSeconds | None = None
    rtt_stddev_s: MSeconds | None = None
    jitter_s: MSeconds | None = None
    samples_s: Annotated[list[MSeconds], Meta(max_length=10_000)] = []
    projected: bool = False

    def __post_init__(self) -> None:
        if self.received > self.sent:
            raise ValueError(f"received ({self.received}) exceeds sent ({self.sent})")
        if self.projected:
            if self.samples_s:
                raise ValueError("projected figures carry no samples")
        elif len(self.samples_s) != self.received:
            raise ValueError(
                f"{len(self.samples_s)} samples for {self.received} received packets")
        expected_loss = (self.sent - self.received) / self.sent if self.sent else 1.0
        if abs(self.loss_ratio - expected_loss) > 1e-6:
            raise ValueError(f"loss_ratio {self.loss_ratio} does not match sent/received")
        stats = (self.rtt_min_s, self.rtt_median_s, self.rtt_max_s,
                 *(() if self.projected else (self.rtt_mean_s,)))
        if self.received and any(s is None for s in stats):
            raise ValueError("RTT statistics are required when packets were received")
        if not self.received and any(s is not None for s in stats):
            raise ValueError("RTT statistics must be absent when nothing was received")


class MTlsFigures(_MStrict, kw_only=True):
    """The TLS side of a tcp (with tls) or https round; absent fields did not happen."""

    tls_s: MSeconds | None = None
    tls_version: MShort | None = None
    tls_cert_not_after: MAware | None = None


class MTcpFigures(MTlsFigures, kw_only=True):
    """Time to complete the TCP handshake (absent when it did not complete), then
    optionally a TLS handshake."""

    connect_s: MSeconds | None = None


class MHttpFigures(MTlsFigures, kw_only=True):
    """An HTTP(S) request, phase by phase, for the last request of the redirect chain."""

    dns_s: MSeconds | None = None
    connect_s: MSeconds | None = None
    first_byte_s: MSeconds | None = None
    transfer_s: MSeconds | None = None
    status_code: Annotated[int, Meta(ge=100, le=599)] | None = None
    http_version: MShort | None = None
    redirects: Annotated[int, Meta(ge=0, le=100)] = 0
    final_url: Annotated[str, Meta(max_length=2048)] | None = None
    body_bytes: Annotated[int, Meta(ge=0)] | None = None
    body_matched: bool | None = None


class MDnsFigures(_MStrict, kw_only=True):
    """One query to one resolver."""

    query_s: MSeconds | None = None
    rcode: MShort | None = None
    answers: Annotated[list[Annotated[str, Meta(max_length=512)]], Meta(max_length=100)] = []
    transport: Literal["udp", "tcp"] | None = None


class _MMeasurementBase(_MStrict, kw_only=True, tag_field="kind"):
    kind: ClassVar[str]  # the tag, readable like pydantic's field (the store reads m.kind)
    seq: Annotated[int, Meta(ge=1)] | None = None
    probe_id: MIdentifier
    mission: MMissionCode
    check_id: MIdentifier
    group: MIdentifier = "internet"
    target: Annotated[str, Meta(min_length=1, max_length=255)]
    ip_version: Literal[4, 6] | None = None
    started_at: MAware
    duration_s: Annotated[float, Meta(ge=0)]
    ok: bool
    reason: MFailureReason | None = None
    detail: Annotated[str, Meta(max_length=500)] | None = None
    confirmation: bool = False
    local_ok: bool | None = None
    interval_s: Annotated[float, Meta(gt=0, le=86_400)] | None = None

    def __post_init__(self) -> None:
        # pydantic's field validator _utc; a frozen Struct is set through force_setattr.
        msgspec.structs.force_setattr(self, "started_at", self.started_at.astimezone(UTC))
        if self.ok and self.reason is not None:
            raise ValueError("a successful measurement has no failure reason")
        if not self.ok and self.reason is None:
            raise ValueError("a failed measurement needs a failure reason")


class MIcmpMeasurement(_MMeasurementBase, kw_only=True, tag="icmp"):
    kind: ClassVar[str] = "icmp"
    figures: MIcmpFigures


class MTcpMeasurement(_MMeasurementBase, kw_only=True, tag="tcp"):
    kind: ClassVar[str] = "tcp"
    figures: MTcpFigures


class MHttpMeasurement(_MMeasurementBase, kw_only=True, tag="http"):
    kind: ClassVar[str] = "http"
    figures: MHttpFigures


class MDnsMeasurement(_MMeasurementBase, kw_only=True, tag="dns"):
    kind: ClassVar[str] = "dns"
    figures: MDnsFigures


MAnyMeasurement = MIcmpMeasurement | MTcpMeasurement | MHttpMeasurement | MDnsMeasurement


class MBatch(_MStrict, kw_only=True):
    """The body of POST /api/v1/results."""

    protocol: int
    probe_id: MIdentifier
    mission: MMissionCode
    outbox_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$(?!\n)")]
    backlog: Annotated[int, Meta(ge=0)] | None = None
    measurements: Annotated[list[MAnyMeasurement], Meta(min_length=1, max_length=5_000)]

    def __post_init__(self) -> None:
        previous = 0
        for m in self.measurements:
            if m.seq is None:
                raise ValueError("every measurement in a batch needs a seq")
            if m.probe_id != self.probe_id or m.mission != self.mission:
                raise ValueError(
                    f"measurement seq {m.seq} names probe {m.probe_id}/{m.mission}, "
                    f"batch is from {self.probe_id}/{self.mission}")
            if m.seq <= previous:
                raise ValueError(f"seqs must increase within a batch ({m.seq} after {previous})")
            previous = m.seq
# <<< msgspec wire types


BATCH = 500  # results per batch, the probe's default batch_max_size
BATCHES = 8  # batches decoded per timed pass
REPEATS = 15  # timed passes of each library
SPAWNS = 9  # fresh interpreters per library, for import time and peak RSS
FAIL_RATIO = 0.02
PARTIAL_LOSS_RATIO = 0.03  # icmp rounds with one of the 5 echo requests lost
# Per 20 results: 14 icmp, 2 tcp, 2 https, 2 dns.
KINDS = ("icmp",) * 14 + ("tcp", "tcp", "http", "http", "dns", "dns")
INSTALL = f"{Path(PYTHON).parent}/pip install msgspec"


def _median(values: list[float]) -> float:
    return statistics.median(values)


# --- the batches, as a probe sends them ----------------------------------------------------


def build_results(rng: random.Random, count: int, probe_id: str, mission: str,
                  t0: datetime) -> list[Any]:
    """`count` results built with the real pydantic models, as the checks build them."""
    from unhindered.measurement import (
        DnsFigures,
        DnsMeasurement,
        FailureReason,
        HttpFigures,
        HttpMeasurement,
        IcmpFigures,
        IcmpMeasurement,
        TcpFigures,
        TcpMeasurement,
    )

    results = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        n = i % len(KINDS)
        ok = rng.random() >= FAIL_RATIO
        base = 0.004 + n * 0.011
        common = {
            "probe_id": probe_id, "mission": mission, "check_id": f"{kind}-{n}",
            "group": "internet" if n % 3 else "documents", "ip_version": 4,
            "started_at": t0 + timedelta(seconds=i * 0.5, microseconds=rng.randrange(10**6)),
            "interval_s": 30.0, "ok": ok, "local_ok": True,
            "reason": None if ok else FailureReason.TIMEOUT,
            "detail": None if ok else "no reply within 2.0 s",
        }
        if kind == "icmp":
            sent = 5
            received = 0 if not ok else 4 if rng.random() < PARTIAL_LOSS_RATIO else 5
            samples = sorted(round(base + rng.random() * 0.003, 9) for _ in range(received))
            figures = IcmpFigures(
                sent=sent, received=received, loss_ratio=(sent - received) / sent,
                rtt_min_s=samples[0] if samples else None,
                rtt_median_s=statistics.median(samples) if samples else None,
                rtt_mean_s=statistics.fmean(samples) if samples else None,
                rtt_max_s=samples[-1] if samples else None,
                rtt_stddev_s=statistics.pstdev(samples) if samples else None,
                jitter_s=rng.random() * 0.001, samples_s=samples)
            results.append(IcmpMeasurement(target=f"192.0.2.{n + 1}",
                                           duration_s=2.0 + rng.random(), figures=figures,
                                           **common))
        elif kind == "tcp":
            tls = n % 2 == 0
            figures = TcpFigures(
                connect_s=base + rng.random() * 0.003 if ok else None,
                tls_s=base * 2 + rng.random() * 0.003 if ok and tls else None,
                tls_version="TLSv1.3" if ok and tls else None,
                tls_cert_not_after=datetime(2027, 3, 1, tzinfo=UTC) if ok and tls else None)
            results.append(TcpMeasurement(target=f"198.51.100.{n}",
                                          duration_s=base * 3 + rng.random() * 0.01,
                                          figures=figures, **common))
        elif kind == "http":
            figures = HttpFigures(
                dns_s=0.001 + rng.random() * 0.002, connect_s=base + rng.random() * 0.003,
                tls_s=base * 2 + rng.random() * 0.003, tls_version="TLSv1.3",
                tls_cert_not_after=datetime(2027, 3, 1, tzinfo=UTC),
                first_byte_s=base * 3 + rng.random() * 0.01 if ok else None,
                transfer_s=0.002 + rng.random() * 0.002 if ok else None,
                status_code=200 if ok else None, http_version="HTTP/1.1",
                redirects=1, final_url=f"https://www.example.org/documents/{n}",
                body_bytes=5120 + n if ok else None,
                body_matched=True if ok else None) if ok else HttpFigures(dns_s=0.001)
            results.append(HttpMeasurement(target=f"https://example.org/documents/{n}",
                                           duration_s=base * 8 + rng.random() * 0.05,
                                           figures=figures, **common))
        else:
            figures = DnsFigures(
                query_s=base + rng.random() * 0.003, rcode="NOERROR",
                answers=sorted(["192.0.2.53", "2001:db8::53"][:1 + n % 2]),
                transport="udp") if ok else DnsFigures()
            results.append(DnsMeasurement(target="www.example.org",
                                          duration_s=base + rng.random() * 0.003,
                                          figures=figures, **common))
    return results


def build_batches(count: int = BATCHES, seed: int = 2025) -> list[bytes]:
    """`count` batches of BATCH results, encoded once the way the probe encodes them:
    each result as the outbox stores it (encode_result), with its seq (with_seq), spliced
    into a batch (encode_batch)."""
    from unhindered.measurement import encode_batch, encode_result, with_seq

    rng = random.Random(seed)
    probe_id, mission = "fra-1", "FRA"
    t0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
    bodies, seq = [], 1
    for b in range(count):
        results = build_results(rng, BATCH, probe_id, mission, t0 + timedelta(hours=b))
        texts = [with_seq(seq + i, encode_result(m)) for i, m in enumerate(results)]
        seq += BATCH
        bodies.append(encode_batch(probe_id, mission, uuid.UUID(int=rng.getrandbits(128)).hex,
                                   BATCH * (count - b - 1), texts).encode())
    return bodies


# --- what the store does with a result -----------------------------------------------------


def msgspec_row(m: Any, outbox_id: str, received_at: float) -> tuple:
    """collector/store/database.py _row with msgspec: the figures' JSON as text."""
    return (m.probe_id, outbox_id, m.seq, m.mission, m.check_id, m.kind, m.group, m.target,
            m.ip_version, m.started_at.timestamp(), m.duration_s, m.ok,
            m.reason.value if m.reason else None, m.detail, m.confirmation, m.local_ok,
            m.interval_s, msgspec.json.encode(m.figures).decode(), received_at)


def check_same(bodies: list[bytes]) -> dict[str, Any]:
    """Both decode every batch to the same values; and how alike the stored figures are."""
    from collector.store.database import _row
    from unhindered.measurement import Batch, FailureReason

    if [r.value for r in FailureReason] != [r.value for r in MFailureReason]:
        raise AssertionError("MFailureReason differs from FailureReason")
    decoder = msgspec.json.Decoder(MBatch)
    identical = results = 0
    for raw in bodies:
        ours, theirs = Batch.model_validate_json(raw), decoder.decode(raw)
        a = json.loads(ours.model_dump_json())
        b = json.loads(msgspec.json.encode(theirs))
        if a != b:
            raise AssertionError("pydantic and msgspec decode a batch differently")
        for p, m in zip(ours.measurements, theirs.measurements, strict=True):
            pr, mr = _row(p, ours.outbox_id, 0.0), msgspec_row(m, ours.outbox_id, 0.0)
            if pr[:-2] != mr[:-2] or json.loads(pr[-2]) != json.loads(mr[-2]):
                raise AssertionError(f"store rows differ: {pr} / {mr}")
            identical += pr[-2] == mr[-2]
            results += 1
    kinds = {k: sum(raw.count(f'"kind":"{k}"'.encode()) for raw in bodies) for k in set(KINDS)}
    return {"results": results, "figures_identical": identical, "kinds": kinds,
            "bytes_per_result": sum(map(len, bodies)) / results}


# --- 1. per-result costs -------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def time_collector(bodies: list[bytes], repeats: int) -> dict[str, dict[str, list[float]]]:
    """µs per result of each step, per library, one value per repetition."""
    from collector.store.database import _row
    from unhindered.measurement import read_batch

    decoder = msgspec.json.Decoder(MBatch)
    n = len(bodies) * BATCH
    out: dict[str, dict[str, list[float]]] = {"pydantic": {}, "msgspec": {}}

    def pydantic_pass() -> dict[str, float]:
        batches: list[Any] = []
        decode = _timed(lambda: batches.extend(read_batch(raw) for raw in bodies))
        dump = _timed(lambda: [m.model_dump() for b in batches for m in b.measurements])
        row = _timed(lambda: [_row(m, b.outbox_id, 0.0) for b in batches
                              for m in b.measurements])

        def checks() -> None:  # the model validators' Python, called again on their own
            for b in batches:
                b._one_probe_in_order()
                for m in b.measurements:
                    type(m)._utc(m.started_at)
                    m._reason_iff_failed()
                    if m.kind == "icmp":
                        m.figures._consistent()
        return {"decode": decode, "checks": _timed(checks), "dump": dump, "row": row}

    def msgspec_pass() -> dict[str, float]:
        batches: list[Any] = []
        decode = _timed(lambda: batches.extend(decoder.decode(raw) for raw in bodies))
        builtins = (datetime,)  # datetimes stay objects, as in model_dump()
        dump = _timed(lambda: [msgspec.to_builtins(m, builtin_types=builtins)
                               for b in batches for m in b.measurements])
        row = _timed(lambda: [msgspec_row(m, b.outbox_id, 0.0) for b in batches
                              for m in b.measurements])

        def checks() -> None:  # the __post_init__ checks, called again on their own
            for b in batches:
                b.__post_init__()
                for m in b.measurements:
                    m.__post_init__()
                    if m.kind == "icmp":
                        m.figures.__post_init__()
        return {"decode": decode, "checks": _timed(checks), "dump": dump, "row": row}

    passes = {"pydantic": pydantic_pass, "msgspec": msgspec_pass}
    for name in passes:  # a warm-up pass each: first-use costs are part 2's
        passes[name]()
    for r in range(repeats):
        for name in (("pydantic", "msgspec") if r % 2 == 0 else ("msgspec", "pydantic")):
            for step, seconds in passes[name]().items():
                out[name].setdefault(step, []).append(seconds / n * 1e6)
    return out


def time_probe(bodies: list[bytes], repeats: int) -> dict[str, dict[str, list[float]]]:
    """The probe's side, per result: a validated measurement built from the check's
    figures (pydantic: the constructors, as unhindered/probing do; msgspec: msgspec.convert,
    since a Struct's constructor checks no types or constraints), then encoded for the
    outbox (encode_result against msgspec.json.encode)."""
    from unhindered.measurement import (
        DnsFigures,
        DnsMeasurement,
        HttpFigures,
        HttpMeasurement,
        IcmpFigures,
        IcmpMeasurement,
        TcpFigures,
        TcpMeasurement,
        encode_result,
    )

    data = [m for raw in bodies[:2] for m in json.loads(raw)["measurements"]]
    for m in data:  # what a check has in hand: objects, not JSON text
        m.pop("seq")
        m["started_at"] = datetime.fromisoformat(m["started_at"])
    classes = {"icmp": (IcmpMeasurement, IcmpFigures), "tcp": (TcpMeasurement, TcpFigures),
               "http": (HttpMeasurement, HttpFigures), "dns": (DnsMeasurement, DnsFigures)}
    mclasses = {"icmp": MIcmpMeasurement, "tcp": MTcpMeasurement, "http": MHttpMeasurement,
                "dns": MDnsMeasurement}
    n = len(data)

    def pydantic_pass() -> dict[str, float]:
        built: list[Any] = []

        def build() -> None:
            for d in data:
                model, figures = classes[d["kind"]]
                built.append(model(**{**d, "figures": figures(**d["figures"])}))
        return {"build": _timed(build),
                "encode": _timed(lambda: [encode_result(m) for m in built])}

    def msgspec_pass() -> dict[str, float]:
        built: list[Any] = []
        encode = msgspec.json.encode

        def build() -> None:
            for d in data:
                built.append(msgspec.convert(d, mclasses[d["kind"]]))
        return {"build": _timed(build),
                "encode": _timed(lambda: [encode(m) for m in built])}

    passes = {"pydantic": pydantic_pass, "msgspec": msgspec_pass}
    for name in passes:
        passes[name]()
    out: dict[str, dict[str, list[float]]] = {"pydantic": {}, "msgspec": {}}
    for r in range(repeats):
        for name in (("pydantic", "msgspec") if r % 2 == 0 else ("msgspec", "pydantic")):
            for step, seconds in passes[name]().items():
                out[name].setdefault(step, []).append(seconds / n * 1e6)
    return out


# --- 2. the probe's first measurement, in a fresh interpreter ----------------------------

_FOOTPRINT = r"""
import json, resource, sys, time, types, __future__
import datetime, enum, re, typing  # both sides need these: not counted
def status(key):
    with open("/proc/self/status") as lines:
        return int(next(l for l in lines if l.startswith(key + ":")).split()[1])
def rss():
    return status("VmRSS")
def hwm():  # this image's peak, to check ru_maxrss against (see footprint)
    return status("VmHWM")
lib = sys.argv[1]
base = rss()
t0 = time.perf_counter()
if lib == "pydantic":
    from pydantic import BaseModel, Field
else:
    import msgspec
t1 = time.perf_counter()
if lib == "pydantic":
    import unhindered.measurement as w
else:
    source = open(sys.argv[2]).read()
    section = source[source.index("# >>> msgspec wire types"):
                     source.index("# <<< msgspec wire types")]
    w = types.ModuleType("wire_msgspec")
    sys.modules[w.__name__] = w
    exec(compile(section, sys.argv[2], "exec", __future__.annotations.compiler_flag,
                 dont_inherit=True), w.__dict__)
t2 = time.perf_counter()
rss_types = rss()
samples = [0.0121, 0.0123, 0.0124, 0.0127, 0.0131]
figures = dict(sent=5, received=5, loss_ratio=0.0, rtt_min_s=0.0121, rtt_median_s=0.0124,
               rtt_mean_s=0.01252, rtt_max_s=0.0131, rtt_stddev_s=0.00034, jitter_s=0.0002,
               samples_s=samples)
common = dict(probe_id="fra-1", mission="FRA", check_id="internet-icmp", group="internet",
              target="192.0.2.10", ip_version=4, duration_s=2.05, ok=True, local_ok=True,
              interval_s=30.0, started_at=datetime.datetime.now(datetime.UTC))
if lib == "pydantic":
    m = w.IcmpMeasurement(figures=w.IcmpFigures(**figures), **common)
    text = w.encode_result(m).encode()
else:
    m = msgspec.convert({**common, "figures": figures}, w.MIcmpMeasurement)
    text = msgspec.json.encode(m)
t3 = time.perf_counter()
assert b'"samples_s":[0.0121,' in text, text
print(json.dumps({"base_kib": base, "import_s": t1 - t0, "types_s": t2 - t1,
                  "first_s": t3 - t2, "rss_types_kib": rss_types, "rss_kib": rss(),
                  "hwm_kib": hwm(),
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "modules": len(sys.modules)}))
"""


def footprint(spawns: int) -> dict[str, dict[str, list[float]]]:
    """Each child is started by a shell, not by this process: Linux folds the old image's
    peak into ru_maxrss at exec, and subprocess spawns with vfork, so a child spawned from
    here would report this (large) bench process's peak as its own ru_maxrss. The shell
    forks the child from its own small image (the "; exit" keeps it from exec-ing in
    place). The child's VmHWM (its image's peak) is recorded too, as a check."""
    out: dict[str, dict[str, list[float]]] = {"pydantic": {}, "msgspec": {}}
    for r in range(spawns):
        for lib in (("pydantic", "msgspec") if r % 2 == 0 else ("msgspec", "pydantic")):
            argv = ["/bin/sh", "-c", '"$0" "$@"; exit $?', PYTHON, "-c", _FOOTPRINT, lib,
                    __file__]
            done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"the {lib} footprint run failed: {done.stderr[-2000:]}")
            for key, value in json.loads(done.stdout).items():
                out[lib].setdefault(key, []).append(value)
    return out


# --- 3. the 422 path -----------------------------------------------------------------------


def _msgspec_details(exc: Exception) -> list[dict[str, str]]:
    """What a msgspec parse_batch could put in the 422 details: its one error, the path
    split off its message ("... - at `$.measurements[3].figures`")."""
    message = str(exc)
    match = re.fullmatch(r"(.*) - at `\$(.*)`", message, re.DOTALL)
    if match is None:
        return [{"field": "", "error": message}]
    path = re.sub(r"\[(\d+)\]", r".\1", match.group(2)).lstrip(".")
    return [{"field": path, "error": match.group(1)}]


def _faults() -> list[tuple[str, Callable[[dict], Any]]]:
    def fig(i: int, **changes: Any) -> Callable[[dict], Any]:
        return lambda b: b["measurements"][i]["figures"].update(changes)

    def meas(i: int, **changes: Any) -> Callable[[dict], Any]:
        return lambda b: b["measurements"][i].update(changes)

    def drop(i: int, key: str) -> Callable[[dict], Any]:
        return lambda b: b["measurements"][i].pop(key)

    def swap_seqs(b: dict) -> None:
        ms = b["measurements"]
        ms[4]["seq"], ms[5]["seq"] = ms[5]["seq"], ms[4]["seq"]

    return [
        ("received > sent (model validator)", fig(3, received=6)),
        ("loss_ratio off (model validator)", fig(3, loss_ratio=0.5)),
        ("failed without a reason (model validator)", meas(3, ok=False)),
        ("probe_id pattern", meas(3, probe_id="fra 1")),
        ("check_id with a final newline", meas(3, check_id="icmp-0\n")),
        ("unknown field", meas(3, colour="red")),
        ("unknown kind", meas(3, kind="udp")),
        ("sent out of range", fig(3, sent=10_001)),
        ("duration_s not a number", meas(3, duration_s="fast")),
        ("started_at without a zone", meas(3, started_at="2025-06-01T08:00:00")),
        ("target missing", drop(3, "target")),
        ("seqs out of order (batch validator)", swap_seqs),
        ("another probe's result (batch)", meas(3, probe_id="fra-2")),
        ("no measurements", lambda b: b.update(measurements=[])),
        ("sent as \"5\" (a string)", fig(3, sent="5")),
        ("sent as 5.0 (a float)", fig(3, sent=5.0)),
    ]


def errors(raw: bytes) -> tuple[list[list[str]], list[list[str]], list[str]]:
    """Single faults, then one batch with four: what each says, as 422 details."""
    from collector.web.context import Refusal
    from collector.web.ingest import parse_batch

    decoder = msgspec.json.Decoder(MBatch)
    good = json.loads(raw)
    good["measurements"] = good["measurements"][:10]

    def both(body: dict) -> tuple[list[dict], list[dict]]:
        data = json.dumps(body).encode()
        try:
            # A result's own faults reject it alone (issue 12): they are its details here.
            ours: list[dict] = [{"field": f"seq {r.seq}", "error": f"{r.reason}: {r.detail}"}
                                for r in parse_batch(data).rejected]
        except Refusal as refusal:
            ours = refusal.details or [{"field": "", "error": refusal.reason}]
        try:
            decoder.decode(data)
            theirs: list[dict] = []
        except msgspec.ValidationError as exc:
            theirs = _msgspec_details(exc)
        return ours, theirs

    def cell(details: list[dict]) -> str:
        if not details:
            return "accepted"
        d = details[0]
        return f"{d['field'] or '(batch)'}: {d['error']}"[:90]

    single, differ = [], []
    for name, fault in _faults():
        body = json.loads(json.dumps(good))
        fault(body)
        ours, theirs = both(body)
        single.append([name, cell(ours), cell(theirs)])
        if bool(ours) != bool(theirs):
            differ.append(name)
    body = json.loads(json.dumps(good))
    ms = body["measurements"]
    ms[1]["duration_s"] = -1
    ms[2]["figures"]["received"] = 6
    ms[4]["probe_id"] = "fra 1"
    ms[5]["colour"] = "red"
    ms[7]["figures"]["sent"] = 10_001
    ms[8]["started_at"] = "2025-06-01T08:00:00"
    ours, theirs = both(body)
    many = [[str(len(ours)), str(len(theirs))]]
    for i in range(max(len(ours), len(theirs))):
        many.append([cell(ours[i:i + 1]) if i < len(ours) else "",
                     cell(theirs[i:i + 1]) if i < len(theirs) else ""])
    return single, many, differ


# --- 4. JSON Schema ------------------------------------------------------------------------

_KEYWORDS = ("pattern", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength",
             "minItems", "maxItems", "default", "enum", "const", "format", "discriminator",
             "oneOf", "anyOf", "required", "additionalProperties", "description", "title")


def _count(node: Any, counts: dict[str, int]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _KEYWORDS:
                counts[key] = counts.get(key, 0) + 1
            if key == "properties":  # its keys are field names, not keywords
                for prop in value.values():
                    _count(prop, counts)
            else:
                _count(value, counts)
    elif isinstance(node, list):
        for item in node:
            _count(item, counts)


def schemas(bodies: list[bytes]) -> tuple[list[list[str]], list[str]]:
    from unhindered.measurement import Batch

    ref = "#/components/schemas/{name}"
    ours = Batch.model_json_schema(ref_template=ref.replace("{name}", "{model}"),
                                   mode="validation")
    (top,), components = msgspec.json.schema_components([MBatch], ref_template=ref)
    theirs = {**components[top["$ref"].rsplit("/", 1)[1]],
              "$defs": {k: v for k, v in components.items() if k != "MBatch"}}
    counts: dict[str, dict[str, int]] = {"pydantic": {}, "msgspec": {}}
    _count(ours, counts["pydantic"])
    _count(theirs, counts["msgspec"])
    rows = [[k, str(counts["pydantic"].get(k, 0)), str(counts["msgspec"].get(k, 0))]
            for k in _KEYWORDS]
    rows.append(["definitions ($defs)", str(len(ours.get("$defs", {}))),
                 str(len(theirs["$defs"]))])
    rows.append(["size (JSON bytes)", f"{len(json.dumps(ours)):,}",
                 f"{len(json.dumps(theirs)):,}"])
    notes = []
    union = ours["properties"]["measurements"]["items"]
    notes.append(f"pydantic's union: {sorted(k for k in union if k != 'oneOf')} + oneOf; "
                 f"mapping {json.dumps(union.get('discriminator', {}).get('mapping'))}")
    munion = theirs["properties"]["measurements"]["items"]
    notes.append(f"msgspec's union: {sorted(k for k in munion if k != 'anyOf')} + anyOf; "
                 f"mapping {json.dumps(munion.get('discriminator', {}).get('mapping'))}")
    icmp_kind = theirs["$defs"]["MIcmpMeasurement"]["properties"]["kind"]
    notes.append(f"kind in an icmp result: pydantic "
                 f"{json.dumps(ours['$defs']['IcmpMeasurement']['properties']['kind'])}, "
                 f"msgspec {json.dumps(icmp_kind)}")
    notes.append(f"required in an icmp result: pydantic "
                 f"{ours['$defs']['IcmpMeasurement']['required']}, msgspec "
                 f"{theirs['$defs']['MIcmpMeasurement']['required']}")
    notes.append(f"started_at: pydantic "
                 f"{json.dumps(ours['$defs']['IcmpMeasurement']['properties']['started_at'])}"
                 f", msgspec "
                 f"{json.dumps(theirs['$defs']['MIcmpMeasurement']['properties']['started_at'])}")
    notes.append(f"rtt_min_s: pydantic "
                 f"{json.dumps(ours['$defs']['IcmpFigures']['properties']['rtt_min_s'])}, "
                 f"msgspec "
                 f"{json.dumps(theirs['$defs']['MIcmpFigures']['properties']['rtt_min_s'])}")
    try:
        import jsonschema
    except ImportError:
        notes.append("jsonschema is not installed: the schemas were not checked on batches")
        return rows, notes
    for name, schema in (("pydantic", ours), ("msgspec", theirs)):
        # Resolve #/components/schemas/X as the OpenAPI document would.
        document = {**schema, "components": {"schemas": schema["$defs"]}}
        validator = jsonschema.Draft202012Validator(document)
        bad = sum(1 for raw in bodies if not validator.is_valid(json.loads(raw)))
        notes.append(f"{name}'s schema (draft 2020-12, jsonschema): {len(bodies) - bad} of "
                     f"{len(bodies)} real batches valid")
    return rows, notes


# --- the part ------------------------------------------------------------------------------


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def run(repeats: int = REPEATS, batches: int = BATCHES, spawns: int = SPAWNS) -> PartResult:
    part = PartResult("wire")
    if msgspec is None:
        part.text = (f"skipped: msgspec is not installed (not a project dependency). For this "
                     f"comparison only: {INSTALL}")
        return part
    bodies = build_batches(batches)
    same = check_same(bodies)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(same["kinds"].items()))
    lines = [f"pydantic {_version('pydantic')} (pydantic-core {_version('pydantic_core')}), "
             f"msgspec {msgspec.__version__}; {len(bodies)} batches of {BATCH} results "
             f"({kinds}), {same['bytes_per_result']:.0f} bytes of JSON a result; both decode "
             f"them to the same values; stored figures JSON byte-identical for "
             f"{same['figures_identical']} of {same['results']} results", ""]

    coll = time_collector(bodies, repeats)
    probe = time_probe(bodies, repeats)
    rows = []
    labels = [("decode", "collector: decode + validate a batch (per result)"),
              ("checks", "  of which the cross-field checks' Python (run alone)"),
              ("dump", "collector: model_dump() / to_builtins per result"),
              ("row", "collector: the store's row (_row: figures to JSON text)")]
    for figures, steps in ((coll, labels), (probe, [
            ("build", "probe: build + validate a measurement"),
            ("encode", "probe: encode it for the outbox (JSON)")])):
        for step, label in steps:
            p, m = _median(figures["pydantic"][step]), _median(figures["msgspec"][step])
            spread = (f"{min(figures['pydantic'][step]):.2f}-"
                      f"{max(figures['pydantic'][step]):.2f} / "
                      f"{min(figures['msgspec'][step]):.2f}-{max(figures['msgspec'][step]):.2f}")
            rows.append([label, f"{p:.2f}", f"{m:.2f}", _ratio(p, m), spread])
            if step in ("decode", "dump", "row"):
                part.goals.append(Goal(f"{label} (no goal)", f"{p:.2f} µs (pydantic)",
                                       f"{m:.2f} µs (msgspec)", _ratio(p, m), None))
    lines += [f"per result, median of {repeats} passes over {len(bodies) * BATCH:,} results:",
              table(["step", "pydantic µs", "msgspec µs", "ratio", "range p / m"], rows), ""]

    fp = footprint(spawns)
    rows = []
    for key, label, scale, unit in (
            ("import_s", "import the library", 1e3, "ms"),
            ("types_s", "define the wire types (import the module)", 1e3, "ms"),
            ("first_s", "first measurement: build + validate + encode", 1e3, "ms"),
            ("base_kib", "RSS before (interpreter + stdlib)", 1 / 1024, "MiB"),
            ("rss_types_kib", "RSS after the types", 1 / 1024, "MiB"),
            ("maxrss_kib", "peak RSS (ru_maxrss) after the first", 1 / 1024, "MiB"),
            ("hwm_kib", "peak RSS (VmHWM, as a check)", 1 / 1024, "MiB"),
            ("modules", "modules in sys.modules at the end", 1, "")):
        p, m = _median(fp["pydantic"][key]) * scale, _median(fp["msgspec"][key]) * scale
        digits = 0 if key == "modules" else 2 if unit == "ms" else 1
        rows.append([label, f"{p:.{digits}f} {unit}", f"{m:.{digits}f} {unit}", _ratio(p, m)])
    peak_p = _median(fp["pydantic"]["maxrss_kib"]) / 1024
    peak_m = _median(fp["msgspec"]["maxrss_kib"]) / 1024
    grow_p = peak_p - _median(fp["pydantic"]["base_kib"]) / 1024
    grow_m = peak_m - _median(fp["msgspec"]["base_kib"]) / 1024
    rows.append(["peak RSS growth over the bare interpreter", f"{grow_p:.1f} MiB",
                 f"{grow_m:.1f} MiB", _ratio(grow_p, grow_m)])
    part.goals.append(Goal("probe: peak RSS after the first measurement (no goal)",
                           f"{peak_p:.1f} MiB (pydantic)", f"{peak_m:.1f} MiB (msgspec)",
                           _ratio(peak_p, peak_m), None))
    imp_p = sum(_median(fp["pydantic"][k]) for k in ("import_s", "types_s")) * 1e3
    imp_m = sum(_median(fp["msgspec"][k]) for k in ("import_s", "types_s")) * 1e3
    part.goals.append(Goal("probe: import + wire types (no goal)", f"{imp_p:.1f} ms (pydantic)",
                           f"{imp_m:.1f} ms (msgspec)", _ratio(imp_p, imp_m), None))
    lines += [f"a fresh interpreter each, median of {spawns}:",
              table(["probe, first measurement", "pydantic", "msgspec", "ratio"], rows), ""]

    single, many, differ = errors(bodies[0])
    lines += ["the 422 path: single faults in a batch of 10 (details[0], as parse_batch gives "
              "it; msgspec's path split off its message):",
              table(["fault", "pydantic (parse_batch)", "msgspec"], single)]
    if differ:
        lines.append(f"accepted by one, refused by the other: {'; '.join(differ)}")
    lines += ["", "six faults in one batch: the details each gives",
              table(["pydantic", "msgspec"], many), ""]

    rows, notes = schemas(bodies)
    lines += ["JSON Schema of Batch: keywords used (pydantic model_json_schema, validation "
              "mode; msgspec.json.schema_components):",
              table(["keyword", "pydantic", "msgspec"], rows), *notes]
    part.text = "\n".join(lines)
    return part


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module.replace("_", "-"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_wire",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"timed passes of each library ({REPEATS})")
    parser.add_argument("--batches", type=int, default=BATCHES,
                        help=f"batches of {BATCH} results in a pass ({BATCHES})")
    parser.add_argument("--spawns", type=int, default=SPAWNS,
                        help=f"fresh interpreters per library for the footprint ({SPAWNS})")
    args = parser.parse_args(argv)
    if msgspec is None:
        print(f"cannot run bench.bench_wire: msgspec is not installed (not a project "
              f"dependency); for this comparison only: {INSTALL}", file=sys.stderr)
        return 2
    from bench.run import load, machine

    print(f"machine: {machine()}; load average: {load()}", flush=True)
    started = time.monotonic()
    result = run(repeats=args.repeats, batches=args.batches, spawns=args.spawns)
    print(f"== wire ({time.monotonic() - started:.0f} s, load average after: {load()})\n"
          f"{result.text}\n")
    if result.goals:
        print("== figures\n" + table(
            ["part", "figure", "ours", "peer", "ratio"],
            [[result.name, g.name, g.ours, g.reference, g.ratio] for g in result.goals]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
