"""Reading tables with GETBULK: every column of a table in the same requests (one column
per repeater, several rows per request), plus some scalars as non-repeaters in the
first request. snmpbulkwalk walks one subtree column after column; asking all columns at
once needs about a column's worth fewer round trips."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413.cmdgen import BulkCommandGeneratorSingleRun
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC192_SHA256,
    USM_PRIV_CFB128_AES,
    CommunityData,
    UdpTransportTarget,
    UsmUserData,
)
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto.rfc1902 import Null, ObjectName
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from collector.snmp.settings import Agent

Oid = tuple[int, ...]
# The high-level API (bulk_cmd) resolves every OID of every request and response through
# the MIB view: a third of the poller's CPU. We send raw OIDs through the same engine.
_LCD = CommandGeneratorLcdConfigurator()
_GETBULK = BulkCommandGeneratorSingleRun()
MAX_REPETITIONS = 24
FIRST_REPETITIONS = 8  # before we know how many rows the agent has
MAX_REQUESTS = 1_000  # a misbehaving agent must not keep a walk going for ever


class WalkError(Exception):
    """str() says what failed, for the log and the `outcome` label's neighbour."""


@dataclass
class Table:
    scalars: dict[Oid, object] = field(default_factory=dict)
    # row index -> column OID -> value
    rows: dict[Oid, dict[Oid, object]] = field(default_factory=dict)
    requests: int = 0


def credentials(agent: Agent):
    if agent.community is not None:
        return CommunityData(agent.community, mpModel=1)  # v2c
    assert agent.user is not None
    auth, priv = agent.user.keys()
    return UsmUserData(agent.user.name, auth, priv,
                       authProtocol=USM_AUTH_HMAC192_SHA256, privProtocol=USM_PRIV_CFB128_AES)


class Peer:
    """One agent: its transport target and credentials, made once (one target object per
    credential: sharing one across credentials confuses pysnmp's cache)."""

    def __init__(self, engine: SnmpEngine, agent: Agent) -> None:
        self.engine = engine
        self.agent = agent
        self.auth = credentials(agent)
        self.target: UdpTransportTarget | None = None
        # Rows seen by the last walk: the next one asks for one more per request, so that
        # a table of unchanged size comes back in one request without a column's worth of
        # rows from beyond it (every extra value costs decoding at both ends).
        self.rows_seen: int | None = None

    async def walk(self, columns: list[Oid], scalars: list[Oid] = ()) -> Table:
        if self.target is None:
            self.target = await UdpTransportTarget.create(
                (self.agent.address, self.agent.port), timeout=self.agent.timeout_s,
                retries=self.agent.retries)
        table = Table()
        # Non-repeaters are GETNEXTs: ask for the scalar's parent to get its .0 instance.
        pending_scalars = [s[:-1] for s in scalars]
        cursors = {c: c for c in columns}  # column -> last OID seen in it
        while cursors or pending_scalars:
            if table.requests >= MAX_REQUESTS:
                raise WalkError(f"gave up after {MAX_REQUESTS} requests")
            live = list(cursors)
            repetitions = (FIRST_REPETITIONS if self.rows_seen is None
                           else min(MAX_REPETITIONS, self.rows_seen + 1))
            error_indication, error_status, error_index, varbinds = await self._getbulk(
                len(pending_scalars), repetitions, [*pending_scalars,
                                                    *(cursors[c] for c in live)])
            table.requests += 1
            if error_indication:
                raise WalkError(str(error_indication))
            if int(error_status):
                raise WalkError(f"agent answered {error_status.prettyPrint()} at "
                                f"{int(error_index)}")
            for oid, value in varbinds[:len(pending_scalars)]:
                if tuple(oid) in scalars:
                    table.scalars[tuple(oid)] = value
            repeated = varbinds[len(pending_scalars):] if live else []
            pending_scalars = []
            width = len(live)
            if live and not repeated:
                raise WalkError("the agent sent no values for the table")
            done: set[Oid] = set()
            for i, (oid, value) in enumerate(repeated):
                column = live[i % width]
                oid = tuple(oid)
                if column in done:
                    continue
                if (isinstance(value, (EndOfMibView, NoSuchObject, NoSuchInstance))
                        or oid[:len(column)] != column or oid <= cursors[column]):
                    done.add(column)
                    continue
                cursors[column] = oid
                table.rows.setdefault(oid[len(column):], {})[column] = value
            # An agent may cut a response short (pysnmp's sends at most 64 values): the
            # columns it left out are asked again from where they stand.
            for column in done:
                cursors.pop(column, None)
        self.rows_seen = len(table.rows)
        return table

    async def _getbulk(self, non_repeaters: int, repetitions: int, oids: list[Oid]):
        """One GETBULK: (error indication, error status, error index, [(OID, value)])."""
        target_name, _params = _LCD.configure(self.engine, self.auth, self.target, b"")
        answer = asyncio.get_running_loop().create_future()

        def answered(_engine, _handle, error_indication, error_status, error_index,
                     varbinds, _ctx) -> None:
            if not answer.done():  # a cancelled walk no longer waits
                answer.set_result((error_indication, error_status, error_index, varbinds))

        _GETBULK.send_varbinds(self.engine, target_name, None, b"", non_repeaters,
                               repetitions, [(ObjectName(o), Null("")) for o in oids],
                               answered)
        return await answer
