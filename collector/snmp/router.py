"""Polling a mission router's standard IF-MIB (RFC 2863) for the dashboards: interface
state, traffic and error counters, kept as the newest reading per interface."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from collector.snmp.walk import Peer, WalkError
from unhindered.measurement import clean_text

log = logging.getLogger(__name__)

# IF-MIB is a standard every router serves: its OIDs are fixed by RFC 2863.
IF_DESCR = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_OPER_STATUS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
IF_IN_ERRORS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 14)
IF_OUT_ERRORS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 20)
IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
IF_HC_IN_OCTETS = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)
IF_HC_OUT_OCTETS = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10)
COLUMNS = [IF_DESCR, IF_OPER_STATUS, IF_IN_ERRORS, IF_OUT_ERRORS, IF_NAME, IF_HC_IN_OCTETS,
           IF_HC_OUT_OCTETS]


@dataclass(frozen=True)
class Interface:
    name: str  # ifName, else ifDescr
    oper_status: int  # 1 up, 2 down, 3 testing, 4 unknown, 5 dormant, 6 notPresent, 7 ...
    in_octets: int | None
    out_octets: int | None
    in_errors: int | None
    out_errors: int | None


@dataclass
class RouterReading:
    mission: str
    router: str
    interfaces: list[Interface]
    polled_at: float


def interfaces_of(rows: dict, limit: int) -> list[Interface]:
    found = []
    for index in sorted(rows):
        row = rows[index]
        if IF_OPER_STATUS not in row:
            continue
        name = bytes(row.get(IF_NAME, b"")).decode("utf-8", "replace") or \
            bytes(row.get(IF_DESCR, b"")).decode("utf-8", "replace") or f"if{index[0]}"

        def number(column, row=row):
            return int(row[column]) if column in row else None

        # The `ifname` label: at most 64 characters, control characters shown escaped
        # (a NUL or a newline from a router has no place in /metrics), as free text on
        # the wire.
        found.append(Interface(name=clean_text(name, 64),
                               oper_status=int(row[IF_OPER_STATUS]),
                               in_octets=number(IF_HC_IN_OCTETS),
                               out_octets=number(IF_HC_OUT_OCTETS),
                               in_errors=number(IF_IN_ERRORS),
                               out_errors=number(IF_OUT_ERRORS)))
    return found[:limit]


class RouterPoller:
    def __init__(self, peer: Peer, readings: dict[tuple[str, str], RouterReading],
                 outcome) -> None:
        self.peer = peer
        self.readings = readings  # shared with the metrics exporter
        self.outcome = outcome

    async def poll(self) -> bool:
        router = self.peer.agent
        try:
            table = await self.peer.walk(COLUMNS)
        except WalkError as exc:
            self.outcome("error")
            log.warning("polling router %s of %s at %s:%d failed: %s", router.name,
                        router.mission, router.address, router.port, exc)
            return False
        self.outcome("ok")
        self.readings[(router.mission, router.name)] = RouterReading(
            router.mission, router.name, interfaces_of(table.rows, router.max_interfaces),
            time.time())
        return True

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.peer.agent.interval_s)
