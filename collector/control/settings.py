"""The `control:` section of the collector's configuration (docs/control.md)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ControlSettings(BaseModel):
    """The centre's own measurements of the fleet's targets, to compare a mission's view
    with (docs/control.md). Off unless enabled: the collector then sends traffic to every
    target the probes measure, which an operator should decide."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="measure the probes' targets from the centre")
    interval_s: float = Field(
        300, ge=1, le=86_400,
        description="each distinct target (kind, target and settings) is measured this "
                    "often, whatever the number of missions that check it")
    on_failure: bool = Field(
        True, description="also measure a target at once when a probe reports a failed "
                          "round of it (at most once per failure_debounce_s per target)")
    failure_debounce_s: float = Field(
        60, ge=1, le=86_400,
        description="least time between two failure-triggered measurements of one target")
    max_concurrent: int = Field(4, ge=1, le=64,
                                description="control measurements running at once, at most")
    max_targets: int = Field(
        1_000, ge=1, le=100_000,
        description="distinct targets measured at most; beyond it the rest are left out "
                    "(and logged), which bounds the traffic, the table and the metrics")
    timeout_s: float = Field(
        30, gt=0, le=600,
        description="a control measurement taking longer than this (its check's own "
                    "timeout_s applies first) is stopped and stored as a timeout")
    resolver: str | None = Field(
        None, description="IP address of the centre's resolver: dns checks are asked of it "
                          "instead of the mission's resolver (which is often a private "
                          "address at the mission). Unset: the check's own resolver")
    probe_checks: bool = Field(
        False, description="also measure the targets of probes' own checks (from their "
                           "results: http URLs and icmp hosts). Off: only the central check "
                           "lists' targets, which the centre's operators wrote; a probe's "
                           "own target is whatever its credential holder reports, and the "
                           "centre would fetch it")
    private_targets: bool = Field(
        False, description="also measure targets at private, link-local and loopback "
                           "addresses (such an address usually names a different host at "
                           "each mission; labs need it)")
    icmp: bool = Field(
        True, description="measure icmp targets too, when the collector may open an ICMP "
                          "socket (raw, or the unprivileged datagram socket); skipped "
                          "otherwise")

    @field_validator("resolver")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError("the control resolver must be an IP address, not a "
                                 "host name") from None
        return value
