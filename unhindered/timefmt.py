"""Times for people, in logs and command output: ISO 8601 in UTC with a `Z`, to the
millisecond (`2026-12-03T17:20:00.123Z`). Imports nothing of the project, so that any
module may use it."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(t: float | datetime, timespec: str = "milliseconds") -> str:
    """`t` is seconds since the epoch or an aware datetime."""
    moment = t.astimezone(UTC) if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
