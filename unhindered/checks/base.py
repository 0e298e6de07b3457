"""The fields every check kind shares in a config file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unhindered.measurement import Identifier, Target


class CheckBase(BaseModel):
    """Fields common to every check, in a probe's config or the centre's check lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier = Field(description="unique within the probe; names the check everywhere")
    group: Identifier = Field(
        "internet", description="what access the check proves, e.g. internet, documents"
    )
    target: Target = Field(description="IP address or host name")
    # 10 s: a target lost is mailed within 30 s (p95) of the cut; the first failing round
    # alone can come a whole interval after it (docs/benchmarks.md, "Alerts").
    interval_s: float = Field(
        10.0, ge=0.1, le=86_400, description="seconds between rounds (under 1 s: labs only)")
    timeout_s: float = Field(2.0, gt=0, le=60, description="seconds to wait for an answer")
    ip_version: Literal[4, 6] | None = Field(
        None, description="address family; required for a host name with both families"
    )
    confirm_count: int = Field(
        2, ge=0, le=10,
        description="after a round that changes the outcome, re-check up to this many times")
    confirm_interval_s: float = Field(
        2.0, ge=0.1, le=60,
        description="a confirmation round starts this many seconds after the round before "
                    "it started (or when that one ends, if later)")
    # 4 s: a failing ICMP round at the defaults lasts 4 s (5 requests 0.5 s apart, then
    # the 2 s timeout), so its rounds follow back to back and an outage's end is placed
    # within about 2 s (docs/states.md, "When an outage starts and ends").
    retry_interval_s: float = Field(
        4.0, ge=0, le=86_400,
        description="while the check fails, a round starts this many seconds after the "
                    "previous one (or when it ends, if later) instead of every interval_s; "
                    "0: off")
