"""The one Measurement type: what a check returns, what the outbox stores, what the HTTP
body carries and what the collector stores. The wire format is documented in
docs/protocol.md; change both together and bump PROTOCOL_VERSION on any incompatible
change.
"""

from __future__ import annotations

import json
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
    field_validator,
    model_validator,
)

PROTOCOL_VERSION = 1

# Identifiers end up in URLs, file names and Prometheus labels: keep them plain.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
MissionCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,15}$")]
Seconds = Annotated[float, Field(ge=0, le=86_400)]


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
    model_config = ConfigDict(extra="forbid", frozen=True)


class IcmpFigures(_Strict):
    """One round of echo requests. RTTs are in seconds; a lost packet is a missing
    sample, never a zero, so the statistics are absent when nothing came back."""

    sent: Annotated[int, Field(ge=0, le=10_000)]
    received: NonNegativeInt
    duplicates: NonNegativeInt = 0
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


class TlsFigures(_Strict):
    """The TLS side of a tcp (with tls) or https round; absent fields did not happen."""

    tls_s: Seconds | None = None  # handshake time
    tls_version: Annotated[str, Field(max_length=16)] | None = None  # e.g. TLSv1.3
    # Earliest notAfter over the certificate chain the server presented.
    tls_cert_not_after: AwareDatetime | None = None


class TcpFigures(TlsFigures):
    """Time to complete the TCP handshake (absent when it did not complete), then
    optionally a TLS handshake."""

    connect_s: Seconds | None = None


class HttpFigures(TlsFigures):
    """An HTTP(S) request, phase by phase, for the last request of the redirect chain."""

    dns_s: Seconds | None = None
    connect_s: Seconds | None = None
    first_byte_s: Seconds | None = None  # request sent to first byte of the answer
    transfer_s: Seconds | None = None  # first byte to last byte of the body
    status_code: Annotated[int, Field(ge=100, le=599)] | None = None
    http_version: Annotated[str, Field(max_length=16)] | None = None
    redirects: Annotated[int, Field(ge=0, le=100)] = 0
    final_url: Annotated[str, Field(max_length=2048)] | None = None
    body_bytes: NonNegativeInt | None = None
    body_matched: bool | None = None  # None when no body_regex is configured


class DnsFigures(_Strict):
    """One query to one resolver."""

    query_s: Seconds | None = None
    rcode: Annotated[str, Field(max_length=16)] | None = None  # NOERROR, NXDOMAIN, ...
    answers: Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=100)] = (
        Field(default_factory=list))  # sorted
    transport: Literal["udp", "tcp"] | None = None  # tcp after a truncated UDP answer


class _MeasurementBase(_Strict):
    seq: Annotated[int, Field(ge=1)] | None = None
    probe_id: Identifier
    mission: MissionCode
    check_id: Identifier
    group: Identifier = "internet"
    target: Annotated[str, Field(min_length=1, max_length=255)]
    ip_version: Literal[4, 6] | None = None
    started_at: AwareDatetime
    duration_s: NonNegativeFloat
    ok: bool
    reason: FailureReason | None = None
    detail: Annotated[str, Field(max_length=500)] | None = None
    confirmation: bool = False
    # Whether the probe's own side (default gateway, resolver) was healthy at the time;
    # None when not checked. A failure with local_ok false is the mission's LAN, not the
    # target.
    local_ok: bool | None = None
    # The check's configured interval, so the collector knows when silence means unknown.
    interval_s: Annotated[float, Field(gt=0, le=86_400)] | None = None

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


class Batch(_Strict):
    """The body of POST /api/v1/results."""

    protocol: int
    probe_id: Identifier
    mission: MissionCode
    outbox_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    backlog: NonNegativeInt | None = None  # results still queued at the probe after these
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


class Ack(_Strict):
    """The collector's answer: every seq up to acked_through is safely stored."""

    protocol: int = PROTOCOL_VERSION
    acked_through: int
    stored: int
    duplicates: int


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
                 results: list[str]) -> str:
    """The JSON of a Batch whose measurements are `results`, each already with its seq."""
    head = json.dumps({
        "protocol": PROTOCOL_VERSION,
        "probe_id": probe_id,
        "mission": mission,
        "outbox_id": outbox_id,
        "backlog": backlog,
    })
    return head[:-1] + ', "measurements": [' + ",".join(results) + "]}"
