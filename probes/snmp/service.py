"""The probe's SNMP side: ONE SnmpEngine for the process (engines are slow to build and
about 1 MB each), carrying the USM users, the v2c community, the agent and the notifier.
Imported only when the config has an `snmp:` section, so probes without SNMP never load
pysnmp."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterator

from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import rfc1902

from probes.checkstate import CheckStates
from probes.outbox import Outbox
from probes.snmp.agent import StateInstrum, start_agent
from probes.snmp.notify import V2C_SECURITY_NAME, Notifier
from probes.snmp.values import Mib, ProbeFacts, check_row, probe_scalars
from unhindered.snmp.settings import SnmpSettings

log = logging.getLogger(__name__)
OUTBOX_REFRESH_S = 2.0  # how fresh unhProbeOutboxDepth and the acknowledgement figures are
NOTIFY_VIEW = (1, 3, 6)  # sysUpTime, snmpTrapOID and our objects
DEBUG_VARIABLE = "UNHINDERED_SNMP_DEBUG"  # e.g. msgproc,secmod,app (pysnmp's categories)

# Packets the engine refused, by reason: the engine's own counters (SNMPv2-MIB,
# SNMP-MPD-MIB, SNMP-USER-BASED-SM-MIB), read by name. unknown_engine_id also counts the
# engine-ID discovery that every SNMPv3 manager does first.
DROP_COUNTERS = {
    "parse_error": ("__SNMPv2-MIB", "snmpInASNParseErrs"),
    "bad_version": ("__SNMPv2-MIB", "snmpInBadVersions"),
    "bad_community": ("__SNMPv2-MIB", "snmpInBadCommunityNames"),
    "unknown_security_model": ("__SNMP-MPD-MIB", "snmpUnknownSecurityModels"),
    "invalid_message": ("__SNMP-MPD-MIB", "snmpInvalidMsgs"),
    "unknown_pdu_handler": ("__SNMP-MPD-MIB", "snmpUnknownPDUHandlers"),
    "unknown_engine_id": ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownEngineIDs"),
    "unknown_user": ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames"),
    "wrong_digest": ("__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests"),
    "decryption_error": ("__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors"),
    "not_in_time_window": ("__SNMP-USER-BASED-SM-MIB", "usmStatsNotInTimeWindows"),
    "unsupported_security_level": ("__SNMP-USER-BASED-SM-MIB",
                                   "usmStatsUnsupportedSecLevels"),
}


def _secrets(settings: SnmpSettings) -> list[str]:
    """The pass phrases and the community, as the engine is given them."""
    secrets: list[str] = []
    for user in settings.users:
        secrets.extend(user.keys())
    community = settings.read_community()
    return secrets if community is None else [*secrets, community]


class SnmpService:
    def __init__(self, settings: SnmpSettings, states: CheckStates, facts: ProbeFacts,
                 outbox: Outbox) -> None:
        self.settings = settings
        self.states = states
        self.facts = facts
        self.outbox = outbox
        if os.environ.get(DEBUG_VARIABLE):  # pysnmp's own tracing, for diagnosis only
            from probes.snmp import trace

            # pysnmp writes pass phrases, keys and the community into its trace: they
            # are withheld on the way to the log (probes/snmp/trace.py).
            trace.start(os.environ[DEBUG_VARIABLE], _secrets(settings))
        engine_id = settings.engine_id
        self.engine = SnmpEngine(
            snmpEngineID=rfc1902.OctetString(hexValue=engine_id) if engine_id else None)
        self.mib = Mib(self.engine.get_mib_builder())
        self._add_principals()
        self.undecodable = 0
        self._guard_decoding()
        self.notifier: Notifier | None = None
        if settings.notify:
            self.notifier = Notifier(self.engine, self.mib, list(settings.notify),
                                     lambda: probe_scalars(self.facts, self.states))
            states.listeners.append(self.notifier.changed)
        self.sock: socket.socket | None = None
        self._refresher: asyncio.Task | None = None

    def _add_principals(self) -> None:
        """USM users (SHA-256 + AES-128), the v2c community, and their VACM views: read
        UNHINDERED-MIB when the agent runs, send notifications when a target uses them."""
        s, engine = self.settings, self.engine
        read = self.mib.root if s.agent is not None else ()
        for user in s.users:
            auth, priv = user.keys()
            config.add_v3_user(engine, user.name, config.USM_AUTH_HMAC192_SHA256, auth,
                               config.USM_PRIV_CFB128_AES, priv)
            notifies = any(t.version == "v3" and t.user == user.name for t in s.notify)
            config.add_vacm_user(engine, 3, user.name, "authPriv", readSubTree=read,
                                 notifySubTree=NOTIFY_VIEW if notifies else ())
        community = s.read_community()
        if community is not None:
            config.add_v1_system(engine, V2C_SECURITY_NAME, community)
            notifies = any(t.version == "v2c" for t in s.notify)
            config.add_vacm_user(engine, 2, V2C_SECURITY_NAME, "noAuthNoPriv",
                                 readSubTree=read,
                                 notifySubTree=NOTIFY_VIEW if notifies else ())

    def _guard_decoding(self) -> None:
        """Some malformed packets make pysnmp 7.1 with pyasn1 0.6 raise out of its decoder
        (a TypeError, not the ProtocolError it handles): asyncio would log a traceback per
        packet, so a stream of garbage would flood the log. They are dropped and counted
        here instead (this engine only)."""
        dispatcher = self.engine.message_dispatcher
        receive = dispatcher.receive_message

        def guarded(*args, **kwargs):
            try:
                return receive(*args, **kwargs)
            except Exception as exc:
                self.undecodable += 1
                log.debug("dropped an SNMP packet pysnmp could not decode: %r", exc)
                return b""

        dispatcher.receive_message = guarded

    def received(self) -> int:
        (packets,) = self.engine.get_mib_builder().import_symbols("__SNMPv2-MIB", "snmpInPkts")
        return int(packets.syntax)

    def bindings(self) -> list:
        bindings = self.mib.scalar_bindings(probe_scalars(self.facts, self.states))
        for entry in self.states.rows():
            bindings += self.mib.row_bindings(entry.index, check_row(entry))
        return bindings

    async def start(self) -> None:
        self.facts.outbox = await self.outbox.stats()
        if self.settings.agent is not None:
            self.sock = start_agent(self.engine, self.settings.agent,
                                    StateInstrum(self.mib.root, self.bindings))
        self._refresher = asyncio.create_task(self._refresh(), name="snmp-outbox-figures")

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(OUTBOX_REFRESH_S)
            self.facts.outbox = await self.outbox.stats()

    def dropped(self) -> Iterator[tuple[str, int]]:
        builder = self.engine.get_mib_builder()
        for reason, (module, name) in DROP_COUNTERS.items():
            (counter,) = builder.import_symbols(module, name)
            yield reason, int(counter.syntax)
        yield "undecodable", self.undecodable

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self.notifier is not None:
            await self.notifier.drain(wait_s=5)
        self.engine.close_dispatcher()
