"""The heartbeat a probe sends when it has sent nothing else for `collector.heartbeat_s`
(docs/protocol.md#heartbeat): a few bytes that tell the collector the probe and its way
to the centre are alive, so that a mission cut off entirely is known within
`states.probe_silent_s` rather than after its checks' silent allowance."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from unhindered.measurement import Count

HEARTBEAT_PATH = "/api/v1/heartbeat"


class Heartbeat(BaseModel):
    """The body of POST /api/v1/heartbeat; the probe is the one its credential names."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    backlog: Count = 0  # results queued at the probe, not yet acknowledged
