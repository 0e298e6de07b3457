"""The probe's `path:` section (docs/probe-config.md). Its own module so that the config
loads it without the recorder."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unhindered.path import MAX_PATH_HOPS


class PathSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True, description="record the path to a check's target when its failure is "
                          "confirmed, and as a baseline (needs CAP_NET_RAW)")
    min_period_s: float = Field(
        600.0, ge=1, le=86_400,
        description="at most one recording per check in this many seconds, whatever "
                    "triggered it")
    baseline_every_s: float | None = Field(
        86_400.0, ge=60, le=30 * 86_400,
        description="record each check's path this often while it succeeds, the first "
                    "after its first successful round: the last good path to compare a "
                    "failing one with; null: never")
    max_hops: int = Field(30, ge=1, le=MAX_PATH_HOPS, description="the highest TTL sent")
    wait_s: float = Field(
        2.0, gt=0, le=30,
        description="seconds to wait for the answers to each window of TTLs")
    timeout_s: float = Field(
        30.0, gt=0, le=300,
        description="the recording's subprocess is killed after this long; no path is "
                    "attached then")

    @model_validator(mode="after")
    def _room_to_wait(self) -> PathSettings:
        # A cut path waits once for its first window and once for the retry.
        if self.timeout_s < 2 * self.wait_s + 1:
            raise ValueError("timeout_s must be at least 2 * wait_s + 1 s")
        return self
