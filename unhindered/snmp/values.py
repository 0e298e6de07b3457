"""UNHINDERED-MIB's value tables, shared by the probe's agent and notifications (which
encode) and the collector's receiver and pollers (which decode): column and scalar names,
enumerations, DateAndTime. The OIDs come by name from the compiled MIB (mibs/)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

MAX_U32 = 2**32 - 1
KINDS = {"icmp": 1, "tcp": 2, "http": 3, "dns": 4}  # unhCheckKind
TRUE, FALSE = 1, 2  # TruthValue
PROBE_SCALARS = (
    "unhProbeVersion", "unhProbeUptime", "unhProbeId", "unhProbeMission",
    "unhProbeOutboxDepth", "unhProbeLastAckTime", "unhProbeLastAckSeq", "unhProbeOutboxId",
    "unhProbeAccessState", "unhProbeAccessLastChange")
CHECK_COLUMNS = (
    "unhCheckName", "unhCheckKind", "unhCheckTarget", "unhCheckState", "unhCheckRttMedian",
    "unhCheckRttMin", "unhCheckRttMax", "unhCheckLoss", "unhCheckJitter",
    "unhCheckLastChange", "unhCheckFailureReason", "unhCheckLastRound", "unhCheckGroup",
    "unhCheckLastSeq", "unhCheckOk")
NOTIFICATIONS = ("checkDown", "checkUp", "accessLost", "accessRestored")


def date_and_time(at: datetime) -> bytes:
    """DateAndTime (RFC 2579), 11-octet form, in UTC ('+', 0, 0)."""
    at = at.astimezone(UTC)
    return struct.pack(">HBBBBBBcBB", at.year, at.month, at.day, at.hour, at.minute,
                       at.second, at.microsecond // 100_000, b"+", 0, 0)
