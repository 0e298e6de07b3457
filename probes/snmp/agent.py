"""The probe's SNMP agent: answers GET, GETNEXT and GETBULK for UNHINDERED-MIB from the
probe's live state (the check states, the outbox figures), read-only.

Instead of pysnmp's MIB tree of instance objects, which would have to be kept in step with
the checks, a small instrumentation controller answers from a sorted snapshot of the values,
rebuilt from the live state at most every SNAPSHOT_S: a request is answered from one
moment, a walk costs one rebuild per SNAPSHOT_S rather than one per request, and the memory
is one list of (OID, value) pairs."""

from __future__ import annotations

import bisect
import logging
import socket
import time
from collections.abc import Callable

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto import rfc1905
from pysnmp.smi.instrum import AbstractMibInstrumController

from unhindered.snmp.settings import AgentSettings
from unhindered.snmp.udp import bind_socket

log = logging.getLogger(__name__)
SNAPSHOT_S = 0.5
# The agent's own transport domain: plain UDP is left to the notification originator, whose
# client socket must not be the agent's (bound perhaps to loopback only).
AGENT_DOMAIN_SUFFIX = (1,)

Bindings = list[tuple[tuple[int, ...], object]]


class StateInstrum(AbstractMibInstrumController):
    """Serves `bindings()`'s values under `root`; VACM decides who sees what (acFun)."""

    def __init__(self, root: tuple[int, ...], bindings: Callable[[], Bindings]) -> None:
        self.root = root
        self._bindings = bindings
        self._oids: list[tuple[int, ...]] = []
        self._values: dict[tuple[int, ...], object] = {}
        self._taken = -SNAPSHOT_S

    def _snapshot(self) -> None:
        if time.monotonic() - self._taken < SNAPSHOT_S:
            return
        pairs = sorted(self._bindings())
        self._oids = [oid for oid, _value in pairs]
        self._values = dict(pairs)
        self._taken = time.monotonic()

    @staticmethod
    def _hidden(name, value, index: int, ctx: dict) -> bool:
        check = ctx.get("acFun")
        return bool(check and check("read", (name, value), **{**ctx, "idx": index}))

    def read_variables(self, *var_binds, **ctx):
        self._snapshot()
        answers = []
        for i, (name, _value) in enumerate(var_binds):
            oid = tuple(name)
            value = self._values.get(oid)
            if value is None or self._hidden(name, value, i, ctx):
                # An object of ours with a wrong instance, or nothing of ours at all.
                ours = oid[:len(self.root)] == self.root and any(
                    o[:-1] == oid[:len(o) - 1] for o in self._oids)
                value = rfc1905.noSuchInstance if ours else rfc1905.noSuchObject
            answers.append((name, value))
        return answers

    def read_next_variables(self, *var_binds, **ctx):
        self._snapshot()
        answers = []
        for i, (name, _value) in enumerate(var_binds):
            at = bisect.bisect_right(self._oids, tuple(name))
            while at < len(self._oids):
                oid = self._oids[at]
                if not self._hidden(name.clone(oid), self._values[oid], i, ctx):
                    answers.append((name.clone(oid), self._values[oid]))
                    break
                at += 1
            else:
                answers.append((name, rfc1905.endOfMibView))
        return answers


def start_agent(engine: SnmpEngine, settings: AgentSettings, instrum: StateInstrum
                ) -> socket.socket:
    """Serves `instrum` on the configured address; returns the bound socket."""
    sock = bind_socket(*settings.address, "SNMP agent")
    if sock.family == socket.AF_INET6:
        domain, transport = udp6.DOMAIN_NAME, udp6.Udp6AsyncioTransport()
    else:
        domain, transport = udp.DOMAIN_NAME, udp.UdpAsyncioTransport()
    config.add_transport(engine, domain + AGENT_DOMAIN_SUFFIX,
                         transport.open_server_mode(sock=sock))
    snmp_context = context.SnmpContext(engine)
    snmp_context.unregister_context_name(b"")
    snmp_context.register_context_name(b"", instrum)
    for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder,
                      cmdrsp.BulkCommandResponder):
        responder(engine, snmp_context)
    log.info("SNMP agent listening on %s (udp port %d)", settings.listen,
             sock.getsockname()[1])
    return sock
