"""The SNMP notification receiver: v2c traps and v3 traps/informs from probes.

A notification is accepted only when its credentials (a v2c community or a v3 user from
`snmp.receiver.senders`) belong to a probe, and the unhProbeId / unhProbeMission it
carries name that same probe and its registered mission. Everything else is dropped and
counted (engine.Drops). Informs are acknowledged by the engine (pysnmp answers the
Response PDU) whatever we make of their content: a retry would carry the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import ntfrcv

from collector.snmp import mib
from collector.snmp.engine import Drops, add_user
from collector.snmp.settings import ReceiverSettings

log = logging.getLogger(__name__)

SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)  # SNMPv2-MIB::snmpTrapOID.0
CHECK_NOTIFICATIONS = ("checkDown", "checkUp")


@dataclass(frozen=True)
class Notification:
    name: str  # checkDown, checkUp, accessLost, accessRestored
    probe_id: str  # whose credentials signed it
    mission: str
    values: dict[str, object]  # object name -> value (str, int or datetime)
    source: str  # sender's address, for logs
    check_index: int | None = None

    @property
    def changed_at(self) -> datetime:
        key = "unhCheckLastChange" if self.name in CHECK_NOTIFICATIONS else \
            "unhProbeAccessLastChange"
        return self.values[key]  # type: ignore[return-value]


class Malformed(ValueError):
    pass


def decode(trap_oid: tuple, varbinds: list) -> tuple[str, dict[str, object], int | None]:
    """(notification name, object values, check index) or Malformed."""
    name = mib.notification_names().get(trap_oid)
    if name is None:
        raise Malformed(f"not an UNHINDERED-MIB notification: {trap_oid}")
    values: dict[str, object] = {}
    index = None
    wanted = {mib.oid(o): o for o in mib.notification_objects(name)}
    for oid, value in varbinds:
        prefix, instance = tuple(oid[:-1]), int(oid[-1])
        obj = wanted.get(prefix)
        if obj is None:
            continue  # SMIv2 allows more objects than the NOTIFICATION-TYPE lists
        values[obj] = _value(obj, value)
        if obj.startswith("unhCheck"):
            index = instance
    missing = [o for o in wanted.values() if o not in values]
    if missing:
        raise Malformed(f"{name} lacks {', '.join(missing)}")
    return name, values, index


def _value(obj: str, value) -> object:
    if obj in ("unhCheckLastChange", "unhProbeAccessLastChange"):
        try:
            return mib.date_and_time(bytes(value))
        except (ValueError, TypeError) as exc:
            raise Malformed(f"{obj}: {exc}") from exc
    if obj in ("unhCheckKind", "unhCheckState", "unhProbeAccessState"):
        labels = mib.names(obj)
        try:
            return labels[int(value)]
        except (KeyError, TypeError, ValueError) as exc:
            raise Malformed(f"{obj}: {value!r} is not one of {sorted(labels)}") from exc
    try:
        return bytes(value).decode("utf-8")
    except (TypeError, UnicodeDecodeError) as exc:
        raise Malformed(f"{obj}: not UTF-8 text") from exc


class Receiver:
    """Registers the senders' credentials on the shared engine and hands each accepted
    notification to `deliver` (called on the event loop)."""

    def __init__(self, engine: SnmpEngine, settings: ReceiverSettings, drops: Drops,
                 deliver: Callable[[Notification], None]) -> None:
        self.engine = engine
        self.drops = drops
        self.deliver = deliver
        self.sender_of: dict[str, str] = {}  # security name -> probe id
        for i, sender in enumerate(settings.senders):
            if sender.community is not None:
                security_name = f"uh-trap-{i}"
                config.add_v1_system(engine, security_name, sender.community,
                                     securityName=security_name)
            else:
                assert sender.user is not None
                security_name = sender.user.name
                add_user(engine, sender.user)
            self.sender_of[security_name] = sender.probe_id
        self._receiver = ntfrcv.NotificationReceiver(engine, self._received)

    def close(self) -> None:
        self._receiver.close(self.engine)

    def _received(self, engine, state_reference, context_engine_id, context_name,
                  varbinds, _ctx) -> None:
        context = engine.observer.get_execution_context("rfc3412.receiveMessage:request")
        security_name = str(context.get("securityName", ""))
        address = context.get("transportAddress", ("?", 0))
        source = f"{address[0]}:{address[1]}"
        probe_id = self.sender_of.get(security_name)
        if probe_id is None:
            # Credentials the engine knows but that are not a sender's (a poller's
            # community, say): not a probe's notification.
            self.drops["bad_community" if context.get("securityModel") in (1, 2)
                       else "bad_credentials"] += 1
            log.info("dropped a notification from %s: credentials of no probe", source)
            return
        try:
            varbinds = [(tuple(oid), value) for oid, value in varbinds]
            trap_oid = next((tuple(v) for oid, v in varbinds if oid == SNMP_TRAP_OID), None)
            if trap_oid is None:
                raise Malformed("no snmpTrapOID.0")
            name, values, index = decode(trap_oid, varbinds)
        except (Malformed, TypeError, ValueError) as exc:
            self.drops["malformed"] += 1
            log.info("dropped a notification from %s (probe %s): %s", source, probe_id, exc)
            return
        if values["unhProbeId"] != probe_id:
            self.drops["unknown_probe"] += 1
            log.warning("dropped %s from %s: signed by probe %s but names probe %s", name,
                        source, probe_id, values["unhProbeId"])
            return
        self.deliver(Notification(name=name, probe_id=probe_id,
                                  mission=str(values["unhProbeMission"]), values=values,
                                  source=source, check_index=index))
