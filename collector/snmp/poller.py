"""Polling probes' SNMP agents (missions configured under `snmp.probes`): every interval
one GETBULK walk of the probe scalars and the check table; each row's newest round becomes
a Measurement stored through the same path as an HTTP batch. The row's
(unhProbeOutboxId, unhCheckLastSeq) is the result's identity, so a round the probe also
pushed over HTTP is stored once, whichever came first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from math import gcd

from pydantic import TypeAdapter, ValidationError

from collector.snmp import mib
from collector.snmp.walk import Oid, Peer, WalkError
from collector.store.database import Stored
from unhindered.measurement import (
    PROTOCOL_VERSION,
    Batch,
    CheckList,
    FailureReason,
    Identifier,
    Measurement,
    clean_text,
)
from unhindered.snmp.values import CHECK_COLUMNS, TRUE

log = logging.getLogger(__name__)

PROBE_SCALARS = ("unhProbeId", "unhProbeMission", "unhProbeOutboxId", "unhProbeOutboxDepth")
MICRO = 1e-6
# What the probe's agent serves as the RTT of the kinds that make one attempt
# (probes.snmp.values.figures).
ONE_ATTEMPT = {"tcp": "connect_s", "http": "first_byte_s", "dns": "query_s"}

_measurement = TypeAdapter(Measurement)


class PollError(Exception):
    pass


def _text(value) -> str:
    return bytes(value).decode("utf-8")


def measurement_of(row: dict[str, object], probe_id: str, mission: str,
                   interval_s: float) -> Measurement | None:
    """The newest round of one check-table row; None before the check's first round."""
    seq = int(row["unhCheckLastSeq"])
    if seq == 0:
        return None
    kind = mib.names("unhCheckKind")[int(row["unhCheckKind"])]
    ok = int(row["unhCheckOk"]) == TRUE
    reason_text = _text(row["unhCheckFailureReason"])
    reason, detail = None, "read from the probe's SNMP agent"
    if not ok:
        try:
            reason = FailureReason(reason_text)
        except ValueError:
            # The agent's text as the wire's free-text rule allows it (no control
            # characters), within the detail's 500 characters.
            reason, detail = FailureReason.ERROR, f"{detail}: {clean_text(reason_text, 400)}"
    median, low, high = (int(row[c]) * MICRO for c in
                         ("unhCheckRttMedian", "unhCheckRttMin", "unhCheckRttMax"))
    figures: dict = {}
    if kind == "icmp":
        # Loss comes in per-mille without the packet count: the smallest sent/received
        # pair with that loss stands in (docs/snmp-collector.md); `projected` says so.
        lost = int(row["unhCheckLoss"])
        sent = 1000 // gcd(lost, 1000)
        received = sent - lost * sent // 1000
        figures = {"sent": sent, "received": received, "loss_ratio": lost / 1000,
                   "projected": True}
        if received:
            figures.update(rtt_min_s=low, rtt_median_s=median, rtt_max_s=high)
        if int(row["unhCheckJitter"]):  # 0: none estimated yet
            figures["jitter_s"] = int(row["unhCheckJitter"]) * MICRO
    elif ok:
        # The other kinds make one attempt, whose time the probe puts in all three RTTs.
        figures = {ONE_ATTEMPT[kind]: median}
    return _measurement.validate_python({
        "seq": seq, "probe_id": probe_id, "mission": mission, "kind": kind,
        "check_id": _text(row["unhCheckName"]), "group": _text(row["unhCheckGroup"]) or
        "internet", "target": _text(row["unhCheckTarget"]),
        "started_at": mib.date_and_time(bytes(row["unhCheckLastRound"])),
        "duration_s": 0.0, "ok": ok, "reason": reason, "detail": detail,
        "interval_s": interval_s, "figures": figures,
    })


def batch_of(scalars: dict[str, object], rows: list[dict[str, object]], probe_id: str,
             mission: str, interval_s: float,
             polled_at: datetime | None = None) -> tuple[Batch | None, list[str]]:
    """The rows as one batch, in seq order, and the names of the rows refused. Checks that
    the agent is the expected probe. As over HTTP, a row the wire's rules refuse (or whose
    seq another row holds) is refused alone: the others are stored.

    The agent's table is the probe's check list: a walk reads every row to the table's end
    (or fails), so a check missing from it is one the probe no longer runs, retired from
    `polled_at` (docs/states.md), the first the collector can know of it."""
    seen = (_text(scalars.get("unhProbeId", b"")), _text(scalars.get("unhProbeMission", b"")))
    if seen != (probe_id, mission):
        raise PollError(f"the agent says it is probe {seen[0]!r} of {seen[1]!r}, "
                        f"configured as {probe_id} of {mission}")
    by_seq: dict[int, Measurement] = {}
    refused: list[str] = []
    for r in rows:
        if len(r) < len(CHECK_COLUMNS):
            continue  # a row added or removed while the walk went on: the next poll reads it
        try:
            m = measurement_of(r, probe_id, mission, interval_s)
        except (KeyError, IndexError, ValueError, TypeError):  # ValidationError too
            m = False
        if m is None:
            continue
        if m is False or m.seq in by_seq:
            refused.append(clean_text(bytes(r.get("unhCheckName", b"")).decode(
                "utf-8", "backslashreplace"), 64))
            continue
        by_seq[m.seq] = m
    if not by_seq:
        return None, refused
    checks = None
    if polled_at is not None:
        names = {bytes(r["unhCheckName"]).decode("utf-8", "replace") for r in rows
                 if "unhCheckName" in r}
        # A name no rule lets through has no stored rounds to retire: left out.
        checks = CheckList(since=polled_at, ids=sorted(n for n in names if _is_id(n)))
    return Batch(protocol=PROTOCOL_VERSION, probe_id=probe_id, mission=mission,
                 outbox_id=_text(scalars["unhProbeOutboxId"]),
                 backlog=int(scalars["unhProbeOutboxDepth"]), checks=checks,
                 measurements=[by_seq[seq] for seq in sorted(by_seq)]), refused


_identifier = TypeAdapter(Identifier)


def _is_id(name: str) -> bool:
    try:
        _identifier.validate_python(name)
    except ValidationError:
        return False
    return True


class ProbePoller:
    def __init__(self, peer: Peer, probe_id: str,
                 store: Callable[[Batch], Awaitable[Stored]],
                 outcome: Callable[[str], None], refused: Callable[[int], None]) -> None:
        self.peer = peer
        self.probe_id = probe_id
        self.store = store
        self.outcome = outcome  # counts polls by outcome
        self.refused = refused  # counts rows refused alone
        self.columns: dict[Oid, str] = {mib.oid(c): c for c in CHECK_COLUMNS}
        self.scalars: dict[Oid, str] = {(*mib.oid(s), 0): s for s in PROBE_SCALARS}

    async def poll(self) -> int:
        """One walk; returns how many new results it stored."""
        agent = self.peer.agent
        try:
            table = await self.peer.walk(list(self.columns), list(self.scalars))
            scalars = {self.scalars[o]: v for o, v in table.scalars.items()}
            rows = [{self.columns[c]: v for c, v in row.items()}
                    for row in table.rows.values()]
            batch, refused = batch_of(scalars, rows, self.probe_id, agent.mission,
                                      agent.interval_s, polled_at=datetime.now(UTC))
        except (WalkError, PollError, ValidationError, KeyError, ValueError) as exc:
            self.outcome("error")
            log.warning("polling probe %s at %s:%d failed: %s", self.probe_id,
                        agent.address, agent.port, exc)
            return 0
        self.outcome("ok")
        if refused:
            self.refused(len(refused))
            log.warning("polling probe %s: refused %d row(s) that break the wire's rules: %s",
                        self.probe_id, len(refused), ", ".join(map(repr, refused[:5])))
        if batch is None:
            return 0
        return len((await self.store(batch)).new)

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.peer.agent.interval_s)
