"""The icmp check's settings, and the probe-wide ICMP engine's (the `icmp:` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unhindered.checks.base import CheckBase


class IcmpSettings(BaseModel):
    """The probe-wide ICMP engine settings (the `icmp:` section of the probe's config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    socket: Literal["auto", "raw", "datagram"] = Field(
        "auto", description="auto: raw when privileged, else the unprivileged datagram socket")
    min_gap_s: float = Field(0.001, ge=0, le=1,
                             description="least time between any two packets the probe sends")


class IcmpCheck(CheckBase):
    kind: Literal["icmp"] = Field(description="ICMP echo requests (ping)")
    count: int = Field(5, ge=1, le=100, description="echo requests per round")
    packet_interval_s: float = Field(
        0.5, ge=0.01, le=10, description="seconds between the requests of one round")
    payload_bytes: int = Field(56, ge=16, le=1400,
                               description="bytes of payload in each echo request")
