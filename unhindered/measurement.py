"""The one Measurement type: what a check returns, what the outbox stores, what the HTTP
body carries and what the collector stores. The wire format is documented in
docs/protocol.md; change both together and bump PROTOCOL_VERSION on any incompatible
change.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    TypeAdapter,
    field_validator,
    model_validator,
)

from unhindered.path import PathRecord

PROTOCOL_VERSION = 1

# Identifiers end up in URLs, file names and Prometheus labels: keep them plain.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
MissionCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,15}$")]
Seconds = Annotated[float, Field(ge=0, le=86_400)]

# Bounds past which the collector's store or its time arithmetic would fail (a seq of 2**63
# does not fit a BIGINT; year 1 with an offset cannot be moved to UTC): refused here, where
# the refusal can say why, rather than answered with a 500.
MAX_INT64 = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=MAX_INT64)]
Seq = Annotated[int, Field(ge=1, le=MAX_INT64)]
# No probe measured before 2000; the collector refuses times ahead of its own clock anyway
# (ingest.max_future_s), the upper bound only keeps absurd ones out of the arithmetic.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# Free text (a target, a detail, what a server answered) is stored, logged and shown: no
# control character (C0, DEL, C1). PostgreSQL refuses NUL in text, a newline forges log
# lines, and none of them belongs in a one-line field. A pattern rather than a Python
# validator: pydantic-core checks it without leaving Rust, on the collector's hot path.
# (Lone surrogates, which UTF-8 cannot carry, pydantic refuses in any str.)
NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*$"


def text_field(max_length: int, min_length: int = 0):
    """The type of a free-text wire field of at most `max_length` characters."""
    return Annotated[str, Field(min_length=min_length or None, max_length=max_length,
                                pattern=NO_CONTROLS)]


Target = text_field(255, min_length=1)  # also the checks' settings (unhindered/checks/)
_UNFIT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_text(text: str, limit: int) -> str:
    """`text` made fit for a free-text field of at most `limit` characters: each control
    character as a visible escape (``\\x00``), a lone surrogate as U+FFFD. For text the
    probe does not choose (what a monitored server answered, an error's message), so that
    no server can make the probe produce a result the collector must refuse."""
    if _UNFIT.search(text) is not None:
        text = _UNFIT.sub(_visible, text)
    return text[:limit]


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return "\ufffd" if "\ud800" <= char <= "\udfff" else f"\\x{ord(char):02x}"


class FailureReason(StrEnum):
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


class _Strict(BaseModel):
    # Finite numbers only: pydantic reads Infinity and NaN, which JSON does not have, and
    # no figure or duration can be either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class IcmpFigures(_Strict):
    """One round of echo requests. RTTs are in seconds; a lost packet is a missing
    sample, never a zero, so the statistics are absent when nothing came back."""

    sent: Annotated[int, Field(ge=0, le=10_000)]
    received: NonNegativeInt
    duplicates: Count = 0
    loss_ratio: Annotated[float, Field(ge=0, le=1)]
    rtt_min_s: Seconds | None = None
    rtt_median_s: Seconds | None = None
    rtt_mean_s: Seconds | None = None
    rtt_max_s: Seconds | None = None
    rtt_stddev_s: Seconds | None = None
    # RFC 3550 interarrival jitter: the probe's running estimate for this check, updated
    # with this round's consecutive replies. None until two replies have been seen.
    jitter_s: Seconds | None = None
    samples_s: list[Seconds] = Field(default_factory=list, max_length=10_000)
    # True for figures read back from a probe's SNMP agent (docs/snmp-collector.md): they carry
    # min/median/max and loss in per-mille, but no samples and no mean.
    projected: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> IcmpFigures:
        if self.received > self.sent:
            raise ValueError(f"received ({self.received}) exceeds sent ({self.sent})")
        if self.projected:
            if self.samples_s:
                raise ValueError("projected figures carry no samples")
        elif len(self.samples_s) != self.received:
            raise ValueError(
                f"{len(self.samples_s)} samples for {self.received} received packets"
            )
        # Nothing sent (the name did not resolve) counts as everything lost.
        expected_loss = (self.sent - self.received) / self.sent if self.sent else 1.0
        if abs(self.loss_ratio - expected_loss) > 1e-6:
            raise ValueError(f"loss_ratio {self.loss_ratio} does not match sent/received")
        stats = (self.rtt_min_s, self.rtt_median_s, self.rtt_max_s,
                 *(() if self.projected else (self.rtt_mean_s,)))
        if self.received and any(s is None for s in stats):
            raise ValueError("RTT statistics are required when packets were received")
        if not self.received and any(s is not None for s in stats):
            raise ValueError("RTT statistics must be absent when nothing was received")
        return self


def _absent(value: object) -> bool:
    return value is None


def evidence(max_length: int | None = None):
    """An evidence field (what a comparison with the centre's control needs): left out of
    the JSON when it did not happen rather than sent as null, since a result goes out
    every few seconds per check."""
    return Field(None, exclude_if=_absent, max_length=max_length)


# SHA-256 of a DER certificate, base64url without padding: 43 characters, not hex's 64.
Fingerprint = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]
MAX_CHAIN = 10  # certificates of a presented chain that are fingerprinted
MAX_NAMES = 10  # leaf subject alternative names reported
MAX_ADDRESSES = 16  # addresses of a name's answer set reported
MAX_REDIRECT_CHAIN = 10  # redirect locations reported


class TlsFigures(_Strict):
    """The TLS side of a tcp (with tls) or https round; absent fields did not happen."""

    tls_s: Seconds | None = None  # handshake time
    tls_version: text_field(16) | None = None  # e.g. TLSv1.3
    # Earliest notAfter over the certificate chain the server presented.
    tls_cert_not_after: AwareDatetime | None = None
    # True: the chain verified for the name (system store or the check's ca_file); false:
    # it did not, and the chain fields below are what the server presented all the same
    # (the evidence of an interception); absent: not verified (tls_verify off).
    tls_verified: bool | None = evidence()
    tls_chain: list[Fingerprint] | None = evidence(MAX_CHAIN)  # as presented, leaf first
    tls_issuer: text_field(256) | None = evidence()  # the leaf's, RFC 4514
    tls_names: list[text_field(255)] | None = evidence(MAX_NAMES)  # the leaf's SANs


class TcpFigures(TlsFigures):
    """Time to complete the TCP handshake (absent when it did not complete), then
    optionally a TLS handshake."""

    connect_s: Seconds | None = None
    # For a name target: the address connected to, the system resolver's answer set
    # (sorted) and which resolver that is.
    address: text_field(45) | None = evidence()
    dns_answers: list[text_field(45)] | None = evidence(MAX_ADDRESSES)
    resolver: text_field(64) | None = evidence()


class HttpFigures(TlsFigures):
    """An HTTP(S) request, phase by phase, for the last request of the redirect chain."""

    dns_s: Seconds | None = None
    # As for tcp, of the last request's host when it is a name.
    address: text_field(45) | None = evidence()
    dns_answers: list[text_field(45)] | None = evidence(MAX_ADDRESSES)
    resolver: text_field(64) | None = evidence()
    connect_s: Seconds | None = None
    first_byte_s: Seconds | None = None  # request sent to first byte of the answer
    transfer_s: Seconds | None = None  # first byte to last byte of the body
    status_code: Annotated[int, Field(ge=100, le=599)] | None = None
    http_version: text_field(16) | None = None
    redirects: Annotated[int, Field(ge=0, le=100)] = 0
    final_url: text_field(2048) | None = None
    body_bytes: Count | None = None
    body_matched: bool | None = None  # None when no body_regex is configured
    # Each redirect's target, absolute, in order (the last is final_url).
    redirect_chain: list[text_field(2048)] | None = evidence(MAX_REDIRECT_CHAIN)
    title: text_field(200) | None = evidence()  # the body's first <title>


class DnsFigures(_Strict):
    """One query to one resolver."""

    query_s: Seconds | None = None
    rcode: text_field(16) | None = None  # NOERROR, NXDOMAIN, ...
    answers: Annotated[list[text_field(512)], Field(max_length=100)] = (
        Field(default_factory=list))  # sorted
    transport: Literal["udp", "tcp"] | None = None  # tcp after a truncated UDP answer


class _MeasurementBase(_Strict):
    seq: Seq | None = None
    probe_id: Identifier
    mission: MissionCode
    check_id: Identifier
    group: Identifier = "internet"
    target: Target
    ip_version: Literal[4, 6] | None = None
    started_at: Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
    duration_s: NonNegativeFloat
    ok: bool
    reason: FailureReason | None = None
    detail: text_field(500) | None = None
    confirmation: bool = False
    # Whether the probe's own side (default gateway, resolver) was healthy at the time;
    # None when not checked. A failure with local_ok false is the mission's LAN, not the
    # target.
    local_ok: bool | None = None
    # The check's configured interval, so the collector knows when silence means unknown.
    interval_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    # The path to the target recorded after a confirmed failure or as a daily baseline
    # (docs/path.md); on the check's first result after the recording ended.
    path: PathRecord | None = Field(None, exclude_if=_absent)

    @field_validator("started_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _reason_iff_failed(self) -> _MeasurementBase:
        if self.ok and self.reason is not None:
            raise ValueError("a successful measurement has no failure reason")
        if not self.ok and self.reason is None:
            raise ValueError("a failed measurement needs a failure reason")
        return self


class IcmpMeasurement(_MeasurementBase):
    kind: Literal["icmp"] = "icmp"
    figures: IcmpFigures


class TcpMeasurement(_MeasurementBase):
    kind: Literal["tcp"] = "tcp"
    figures: TcpFigures


class HttpMeasurement(_MeasurementBase):
    kind: Literal["http"] = "http"
    figures: HttpFigures


class DnsMeasurement(_MeasurementBase):
    kind: Literal["dns"] = "dns"
    figures: DnsFigures


AnyMeasurement = IcmpMeasurement | TcpMeasurement | HttpMeasurement | DnsMeasurement
Measurement = Annotated[AnyMeasurement, Field(discriminator="kind")]


MAX_CHECKS = 10_000  # checks in one probe's check list


class CheckList(_Strict):
    """The checks a probe runs now, and since when: the time its configuration (local file
    and central list) took effect, at start, reload or a new central list. A check of the
    probe's mission it ran before and is missing from `ids` is retired from `since` on
    (docs/states.md); its rounds from before `since` still count."""

    since: Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
    ids: Annotated[list[Identifier], Field(max_length=MAX_CHECKS)]

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("ids")
    @classmethod
    def _unique(cls, ids: list[str]) -> list[str]:
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"check ids listed twice: {', '.join(twice[:5])}")
        return ids


class BatchHead(_Strict):
    """A batch but its measurements."""

    protocol: int
    probe_id: Identifier
    mission: MissionCode
    outbox_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    backlog: Count | None = None  # results still queued at the probe after these
    # Results this outbox dropped unsent (a full disk or its size bound) since it was
    # created: a running count, so a batch sent twice counts nothing twice.
    dropped: Count | None = None
    # The checks the probe runs now; absent from older probes (and SNMP polls), whose
    # checks are never retired.
    checks: CheckList | None = None


class Batch(BatchHead):
    """The body of POST /api/v1/results."""

    measurements: Annotated[list[Measurement], Field(min_length=1, max_length=5_000)]

    @model_validator(mode="after")
    def _one_probe_in_order(self) -> Batch:
        previous = 0
        for m in self.measurements:
            if m.seq is None:
                raise ValueError("every measurement in a batch needs a seq")
            if m.probe_id != self.probe_id or m.mission != self.mission:
                raise ValueError(
                    f"measurement seq {m.seq} names probe {m.probe_id}/{m.mission}, "
                    f"batch is from {self.probe_id}/{self.mission}"
                )
            if m.seq <= previous:
                raise ValueError(f"seqs must increase within a batch ({m.seq} after {previous})")
            previous = m.seq
        return self


class Identified(BaseModel):
    """A measurement as far as the collector must read it to answer for it: its seq."""

    model_config = ConfigDict(extra="allow", frozen=True)

    seq: Seq


class BatchEnvelope(BatchHead):
    """A batch whose measurements are read one by one (collector/web/ingest.py), so that
    one bad result is refused alone: each need only be an object with its seq here."""

    measurements: Annotated[list[Identified], Field(min_length=1, max_length=5_000)]


# --- reading a batch as the collector does ---
# Strictly typed: what Python would let pass ("yes" for true, "11" for 11, 1 for true) is
# refused, so that a value means one thing on the wire. Times are still read from their
# RFC 3339 text, which is what JSON carries.

_measurement = TypeAdapter(Measurement)


def read_batch(raw: bytes | str) -> Batch:
    return Batch.model_validate_json(raw, strict=True)


def read_measurement(raw: bytes | str) -> AnyMeasurement:
    return _measurement.validate_json(raw, strict=True)


class RejectReason(StrEnum):
    """Why the collector refused one result of a batch while storing the others. A
    bounded set: the label of unhindered_ingest_rejected_results_total."""

    INVALID = "invalid"  # a field breaks the wire's rules; the detail names it
    OUT_OF_ORDER = "out_of_order"  # its seq is not above those before it in the batch
    WRONG_PROBE = "wrong_probe"  # it names another probe or mission than its batch
    TOO_OLD = "too_old"  # older than the collector keeps raw results (retention.raw_days)
    BEFORE_REGISTRATION = "before_registration"  # older than the probe's registration
    STORE_REFUSED = "store_refused"  # the database refused it


class Rejected(BaseModel):
    """One result the collector will never store; the probe deletes it all the same."""

    model_config = ConfigDict(frozen=True)

    seq: int
    reason: str  # a RejectReason; a str, so that a probe reads reasons added later
    detail: str = ""


# A probe that reads `rejected` in the Ack says so with this request header; for the
# others the collector leaves the field out: probes before it refuse an unknown field in
# the Ack, and would send the batch again for ever.
ACK_HEADER, ACK_WITH_REJECTED = "Unhindered-Ack", "rejected"


class Ack(BaseModel):
    """The collector's answer: every seq up to acked_through is done with, stored now,
    stored before (duplicates) or rejected, and the probe deletes them. Fields it does not
    know are ignored, so that a newer collector may say more."""

    model_config = ConfigDict(frozen=True)

    protocol: int = PROTOCOL_VERSION
    acked_through: int
    stored: int
    duplicates: int
    rejected: list[Rejected] = Field(default_factory=list)


# --- the batch on the wire, as the probe writes it ---
# A result is encoded once, when the outbox stores it, without its seq (which the outbox's
# row id gives); a batch splices the stored texts in, each with its seq, instead of
# decoding and re-encoding them.

def encode_result(measurement: AnyMeasurement) -> str:
    """A measurement's JSON without its seq: what the outbox stores."""
    return measurement.model_dump_json(exclude={"seq"})


def with_seq(seq: int, encoded: str) -> str:
    """A stored result (encode_result) with its seq as the first field."""
    return f'{{"seq":{seq},{encoded[1:]}'


def encode_batch(probe_id: str, mission: str, outbox_id: str, backlog: int,
                 results: list[str], dropped: int | None = None,
                 checks: CheckList | None = None) -> str:
    """The JSON of a Batch whose measurements are `results`, each already with its seq."""
    fields = {
        "protocol": PROTOCOL_VERSION,
        "probe_id": probe_id,
        "mission": mission,
        "outbox_id": outbox_id,
        "backlog": backlog,
        "dropped": dropped,
    }
    if checks is not None:
        fields["checks"] = checks.model_dump(mode="json")
    head = json.dumps(fields)
    return head[:-1] + ', "measurements": [' + ",".join(results) + "]}"


# Times travel in seconds to the microsecond, the resolution ping reports: finer digits are
# the clock's noise, cost the mission's link (a round's figures came to 60 % more
# compressed bytes with all 17 digits of a float) and say nothing a reader could use.
TIME_DIGITS = 6


def to_microseconds(figures: BaseModel) -> BaseModel:
    """`figures` with every time (a field named `*_s`: a float or a list of them) rounded
    to the microsecond."""
    update: dict[str, float | list[float]] = {}
    for name, value in figures:
        if not name.endswith("_s") or value is None:
            continue
        if isinstance(value, float):
            update[name] = round(value, TIME_DIGITS)
        elif isinstance(value, list) and all(isinstance(v, float) for v in value):
            update[name] = [round(v, TIME_DIGITS) for v in value]
    return figures.model_copy(update=update) if update else figures
