"""The probe's live state as UNHINDERED-MIB values: what the agent serves and what the
notifications carry. Every OID and syntax comes by name from the compiled MIB, so the
enterprise number is set in one place (mibs/UNHINDERED-MIB)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

from probes.checkstate import EPOCH, CheckState, CheckStates
from probes.outbox import OutboxStats
from unhindered.measurement import AnyMeasurement
from unhindered.snmp import mibs
from unhindered.snmp.values import (
    CHECK_COLUMNS,
    FALSE,
    KINDS,
    MAX_U32,
    NOTIFICATIONS,
    PROBE_SCALARS,
    TRUE,
    date_and_time,
)


def _micro(seconds: float | None) -> int:
    return 0 if seconds is None else min(MAX_U32, round(seconds * 1_000_000))


def figures(m: AnyMeasurement | None) -> dict[str, int]:
    """RTT median/min/max and jitter in microseconds, loss in per-mille. ICMP has real
    statistics; the other kinds make one attempt, whose time is all three RTTs (TCP: the
    connection, HTTP: request to first byte, DNS: the query) and whose loss is 0 or 1000."""
    if m is None:
        return {"unhCheckRttMedian": 0, "unhCheckRttMin": 0, "unhCheckRttMax": 0,
                "unhCheckLoss": 0, "unhCheckJitter": 0}
    f = m.figures
    if m.kind == "icmp":
        rtts = (f.rtt_median_s, f.rtt_min_s, f.rtt_max_s)
        loss, jitter = f.loss_ratio, f.jitter_s
    else:
        one = {"tcp": "connect_s", "http": "first_byte_s", "dns": "query_s"}[m.kind]
        rtts = (getattr(f, one),) * 3
        loss, jitter = (0.0 if m.ok else 1.0), None
    return {"unhCheckRttMedian": _micro(rtts[0]), "unhCheckRttMin": _micro(rtts[1]),
            "unhCheckRttMax": _micro(rtts[2]), "unhCheckLoss": round(loss * 1000),
            "unhCheckJitter": _micro(jitter)}


def check_row(entry: CheckState) -> dict[str, object]:
    m = entry.newest
    return {
        "unhCheckName": entry.check_id,
        "unhCheckKind": KINDS[entry.kind],
        "unhCheckTarget": entry.target[:255],
        "unhCheckState": int(entry.state),
        **figures(m),
        "unhCheckLastChange": date_and_time(entry.since),
        "unhCheckFailureReason": "" if m is None or m.reason is None else str(m.reason),
        "unhCheckLastRound": date_and_time(m.started_at if m else EPOCH),
        "unhCheckGroup": entry.group,
        "unhCheckLastSeq": min(entry.newest_seq, MAX_U32),
        "unhCheckOk": TRUE if m is not None and m.ok else FALSE,
    }


@dataclass
class ProbeFacts:
    """What the probe scalars show besides the check states."""

    probe_id: str
    mission: str
    outbox_id: str
    started: float  # time.monotonic() at start
    outbox: OutboxStats | None = None


def _version() -> str:
    try:
        return metadata.version("unhindered")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


def probe_scalars(facts: ProbeFacts, states: CheckStates) -> dict[str, object]:
    o = facts.outbox
    acked_at = datetime.fromtimestamp(o.last_ack_at, UTC) if o and o.last_ack_at else EPOCH
    return {
        "unhProbeVersion": VERSION,
        "unhProbeUptime": int((time.monotonic() - facts.started) * 100) % 2**32,
        "unhProbeId": facts.probe_id,
        "unhProbeMission": facts.mission,
        "unhProbeOutboxDepth": min(o.depth, MAX_U32) if o else 0,
        "unhProbeLastAckTime": date_and_time(acked_at),
        "unhProbeLastAckSeq": min(o.acked_through, MAX_U32) if o else 0,
        "unhProbeOutboxId": facts.outbox_id,
        "unhProbeAccessState": int(states.access),
        "unhProbeAccessLastChange": date_and_time(states.access_since),
    }


class Mib:
    """UNHINDERED-MIB's objects, loaded into a pysnmp MibBuilder (the engine's)."""

    def __init__(self, builder) -> None:
        mibs.add_to(builder)
        names = ("unhinderedMIB", *PROBE_SCALARS, *CHECK_COLUMNS, *NOTIFICATIONS)
        self._objects = dict(zip(names, builder.import_symbols("UNHINDERED-MIB", *names),
                                 strict=True))
        self.root = self.oid("unhinderedMIB")

    def oid(self, name: str) -> tuple[int, ...]:
        return tuple(self._objects[name].getName())

    def value(self, name: str, raw: object):
        """`raw` in the object's syntax (a pysnmp value), checked against its constraints."""
        return self._objects[name].getSyntax().clone(raw)

    def scalar_bindings(self, values: dict[str, object]) -> list[tuple[tuple[int, ...], object]]:
        return [((*self.oid(n), 0), self.value(n, v)) for n, v in values.items()]

    def row_bindings(self, index: int, values: dict[str, object]
                     ) -> list[tuple[tuple[int, ...], object]]:
        return [((*self.oid(n), index), self.value(n, v)) for n, v in values.items()]
