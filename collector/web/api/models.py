"""The read API's response models: what its handlers answer (serialised by pydantic)
and, through their JSON Schemas, the schemas of the OpenAPI document, so the document
describes exactly the bodies that are served. Also the bodies of the probes' routes
(collector/web/ingest.py), which the document covers but this API does not answer.

Only models: they import nothing of the web app; handlers.py, routes.py and openapi.py
import them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from unhindered.measurement import (
    DnsMeasurement,
    HttpMeasurement,
    IcmpMeasurement,
    TcpMeasurement,
)
from unhindered.path import PathRecord
from unhindered.states import State

# A check's state, or `retired`: its probe no longer runs it (docs/states.md). Access is
# retired when every check of the group (or mission) is.
StateOrRetired = State | Literal["retired"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Out):
    """A refusal, with a reason a person can act on."""

    error: str = Field(description="what was wrong, naming the parameter concerned")
    details: list[dict[str, Any]] | None = Field(
        None, description="per-field problems, when there are several (ingest only)")


class GroupAccess(_Out):
    """A mission's access through one group of checks: up while any of its checks is up."""

    group: str
    state: StateOrRetired
    since: AwareDatetime | None = Field(description="measurement time the state began")


class MissionSummary(_Out):
    """A mission and its current access: up only when every group of checks is up."""

    code: str
    name: str | None = Field(description="from the inventory; null for a mission not in it")
    in_inventory: bool
    access: StateOrRetired = Field(
        description="access over all groups (unknown before any result; retired when every "
                    "check of the mission is)")
    since: AwareDatetime | None = Field(description="measurement time `access` began")
    groups: list[GroupAccess]


class MissionList(_Out):
    items: list[MissionSummary]


class CheckStatus(_Out):
    """The current state of one check of one mission."""

    mission: str
    check_id: str
    kind: str
    group: str
    target: str
    probe_id: str = Field(description="the probe that sent the newest round")
    state: StateOrRetired = Field(description="retired: the probe no longer runs the check")
    since: AwareDatetime | None = Field(description="measurement time the state began")
    last_round_at: AwareDatetime = Field(description="measurement time of the newest round")
    last_ok: bool | None
    last_reason: str | None


class CheckDetail(CheckStatus):
    """A check's state with the figures of its newest round."""

    last_local_ok: bool | None
    figures: dict[str, Any] = Field(
        description="the newest round's figures, as in docs/protocol.md for its kind")
    rounds_total: int = Field(description="rounds stored for this check")
    rounds_failed: int


class MissionDetail(MissionSummary):
    checks: list[CheckDetail]


class StatePage(_Out):
    items: list[CheckStatus]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; "
                                                "null on the last page")


class Interval(_Out):
    """A period in one state. Intervals are exact: late results rewrite them."""

    started_at: AwareDatetime
    ended_at: AwareDatetime | None = Field(description="null for the current period")
    state: StateOrRetired
    cause: str
    # A check's period starts where the rounds' evidence places it, between these two
    # (docs/states.md); its end's are the next period's. Null when not known (access
    # intervals, the first round after unknown, periods from before collector 0007).
    started_after: AwareDatetime | None = Field(
        None, description="the change happened after this (the path last seen as before)")
    started_before: AwareDatetime | None = Field(
        None, description="and by this (the path first seen as after)")


class IntervalPage(_Out):
    mission: str
    check: str | None = Field(description="the check, for state intervals")
    group: str | None = Field(description="the group, for access intervals (* = overall)")
    items: list[Interval]
    next_cursor: str | None


# A raw result: the probe's Measurement (unhindered/measurement.py, docs/protocol.md) as it
# was sent, plus the time the collector received it.
_RECEIVED_AT = "when the collector stored the result"


class IcmpResult(IcmpMeasurement):
    received_at: AwareDatetime = Field(description=_RECEIVED_AT)


class TcpResult(TcpMeasurement):
    received_at: AwareDatetime = Field(description=_RECEIVED_AT)


class HttpResult(HttpMeasurement):
    received_at: AwareDatetime = Field(description=_RECEIVED_AT)


class DnsResult(DnsMeasurement):
    received_at: AwareDatetime = Field(description=_RECEIVED_AT)


Result = Annotated[IcmpResult | TcpResult | HttpResult | DnsResult,
                   Field(discriminator="kind")]
RESULT_TYPES: dict[str, type[BaseModel]] = {
    "icmp": IcmpResult, "tcp": TcpResult, "http": HttpResult, "dns": DnsResult}


class ResultPage(_Out):
    items: list[Result]
    next_cursor: str | None


class ControlResult(_Out):
    """One control measurement: the centre measuring a target with the probes' own check
    code (docs/control.md). `figures` are the kind's, as in docs/protocol.md."""

    key: str = Field(description="what was measured (kind and settings), shared by every "
                                 "mission whose check measures the same")
    kind: str
    target: str = Field(description="as measured: for dns, the centre's resolver when "
                                    "control.resolver is set")
    label: str = Field(description="URL, host, host:port or 'name TYPE @resolver'")
    settings: dict[str, Any] = Field(description="the check settings measured with")
    trigger: Literal["periodic", "failure"] = Field(
        description="failure: measured at once after a probe reported a failed round")
    measured_at: AwareDatetime
    duration_s: float
    ok: bool
    reason: str | None
    detail: str | None
    ip_version: Literal[4, 6] | None
    figures: dict[str, Any]


class ProbeView(_Out):
    """The mission's own newest round of the check, to read beside the control's."""

    mission: str
    check_id: str
    probe_id: str
    kind: str
    target: str
    last_round_at: AwareDatetime
    last_ok: bool | None
    last_reason: str | None
    figures: dict[str, Any]


class ControlPage(_Out):
    target: str | None = Field(description="the target asked for, when asked by target")
    key: str | None = Field(description="the control key of the mission's check, when asked "
                                        "by mission and check; null when the centre does "
                                        "not measure it (see `not_measured`)")
    not_measured: str | None = Field(
        None, description="why the centre does not measure the mission's check, if it "
                          "does not")
    probe: ProbeView | None = Field(
        None, description="the mission's newest round, when asked by mission and check")
    items: list[ControlResult]
    next_cursor: str | None


class Rollup(_Out):
    """The rounds of one check in one bucket (a minute or an hour)."""

    bucket_start: AwareDatetime
    rounds: int
    rounds_ok: int
    samples: int = Field(description="RTT values the rtt_* figures summarise")
    rtt_min_s: float | None
    rtt_median_s: float | None
    rtt_p95_s: float | None
    rtt_max_s: float | None
    sent: int | None = Field(description="ICMP echo requests (null for other kinds)")
    received: int | None
    loss_ratio: float | None = Field(description="(sent - received) / sent, ICMP only")


class RollupPage(_Out):
    mission: str
    check: str
    resolution_s: Literal[60, 3600]
    items: list[Rollup]
    next_cursor: str | None


class ProbeInfo(_Out):
    probe_id: str
    mission: str
    status: Literal["active", "enrolling", "revoked"] = Field(
        description="enrolling: registered, enrollment token not yet redeemed")
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None
    last_report_at: AwareDatetime | None = Field(
        description="last accepted batch since the collector started (null before)")
    backlog: int | None = Field(description="results queued at the probe, as it reported")
    results_since_start: int = Field(description="results stored since the collector started")


class ProbeList(_Out):
    items: list[ProbeInfo]


# The bodies of the probe-facing routes (collector/web/ingest.py), described here so that
# the document covers everything under /api/v1.
class EnrollRequest(_Out):
    enrollment_token: str


class Enrolled(_Out):
    probe_id: str
    mission: str
    token: str = Field(description="the probe's credential; shown once")


class ProbeChecks(_Out):
    version: str = Field(description="also the ETag")
    checks: list[dict[str, Any]]


class PathItem(_Out):
    """One path a probe recorded to a check's target (docs/path.md)."""

    mission: str
    check_id: str
    probe_id: str
    result_ok: bool = Field(description="the outcome of the round the path came with")
    received_at: AwareDatetime
    path: PathRecord


class PathPage(_Out):
    last_good: PathItem | None = Field(
        description="the check's newest baseline path (recorded while the check succeeded), "
                    "whenever it was recorded: what a failing path is compared with")
    items: list[PathItem] = Field(description="paths recorded in [from, to), newest first")
    next_cursor: str | None
