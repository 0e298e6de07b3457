"""The SNMP notification receiver: v2c traps and v3 traps/informs from probes.

A notification is accepted only when its credentials (a v2c community or a v3 user from
`snmp.receiver.senders`) belong to a probe, its values pass the rules an HTTP result is
held to (the wire types of unhindered/measurement.py: identifiers, mission code, target,
time bounds, failure reasons, kinds; the states of unhindered/states.py), and the
unhProbeId / unhProbeMission it carries name that same probe and its registered mission.
Everything else is dropped and counted (engine.Drops), and logged once with the values
quoted (`shown`). Informs are acknowledged by the engine (pysnmp answers the Response PDU)
whatever we make of their content: a retry would carry the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import ntfrcv

from collector.snmp import mib
from collector.snmp.engine import Drops, add_user
from collector.snmp.settings import ReceiverSettings
from unhindered.measurement import (
    EARLIEST,
    LATEST,
    AnyMeasurement,
    FailureReason,
    Identifier,
    MissionCode,
    Target,
)
from unhindered.states import State
from unhindered.timefmt import iso_utc

log = logging.getLogger(__name__)

SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)  # SNMPv2-MIB::snmpTrapOID.0
CHECK_NOTIFICATIONS = ("checkDown", "checkUp")
DOWN_NOTIFICATIONS = ("checkDown", "accessLost")


def shown(value: object, limit: int = 60) -> str:
    """A value from the network as a log line or an error may show it: quoted and escaped
    by repr (a newline in it cannot start a forged log line), and shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


# The kinds HTTP results have: the wire types' own discriminators.
KINDS = frozenset(m.model_fields["kind"].default for m in get_args(AnyMeasurement))


def _kind(value: str) -> str:
    if value not in KINDS:
        raise ValueError(f"expected one of {', '.join(sorted(KINDS))}")
    return value


Kind = Annotated[str, AfterValidator(_kind)]
# A measured time as HTTP results have it.
Moment = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
# unhCheckFailureReason is "" when the check is not down.
Reason = Annotated[FailureReason | None, BeforeValidator(lambda value: value or None)]


class _Objects(BaseModel):
    """A notification's objects, by their MIB names (the aliases), checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckChange(_Objects):
    """checkDown, checkUp."""

    probe_id: Identifier = Field(alias="unhProbeId")
    mission: MissionCode = Field(alias="unhProbeMission")
    check_id: Identifier = Field(alias="unhCheckName")
    kind: Kind = Field(alias="unhCheckKind")
    target: Target = Field(alias="unhCheckTarget")
    state: State = Field(alias="unhCheckState")
    reason: Reason = Field(alias="unhCheckFailureReason")
    changed_at: Moment = Field(alias="unhCheckLastChange")


class AccessChange(_Objects):
    """accessLost, accessRestored."""

    probe_id: Identifier = Field(alias="unhProbeId")
    mission: MissionCode = Field(alias="unhProbeMission")
    state: State = Field(alias="unhProbeAccessState")
    changed_at: Moment = Field(alias="unhProbeAccessLastChange")


@dataclass(frozen=True)
class Notification:
    name: str  # checkDown, checkUp, accessLost, accessRestored
    probe_id: str  # whose credentials signed it
    change: CheckChange | AccessChange
    source: str  # sender's address, for logs
    check_index: int | None = None

    @property
    def mission(self) -> str:
        return self.change.mission

    @property
    def changed_at(self) -> datetime:
        return self.change.changed_at


class Malformed(ValueError):
    """str() is safe to log: values in it are quoted and shortened (`shown`)."""


def decode(trap_oid: tuple, varbinds: list
           ) -> tuple[str, CheckChange | AccessChange, int | None]:
    """(notification name, its checked objects, check index) or Malformed."""
    name = mib.notification_names().get(trap_oid)
    if name is None:
        raise Malformed(f"not an UNHINDERED-MIB notification: {shown(trap_oid, 80)}")
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
    model = CheckChange if name in CHECK_NOTIFICATIONS else AccessChange
    try:
        change = model.model_validate(values)
    except ValidationError as exc:
        raise Malformed(f"{name}: {_described(exc)}") from None
    _consistent(name, change)
    return name, change, index


def _described(exc: ValidationError) -> str:
    """The first refused object, its value quoted, and how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    message = first["msg"].removeprefix("Value error, ")[:160]
    text = f"{first['loc'][0]} {shown(first['input'])}: {message}"
    return text + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")


def _consistent(name: str, change: CheckChange | AccessChange) -> None:
    """checkDown and accessLost are changes to down (with a failure reason for a check),
    checkUp and accessRestored to up or degraded (without one), as the probe sends them
    (docs/snmp.md): like an HTTP result, whose reason goes with its outcome."""
    down = name in DOWN_NOTIFICATIONS
    state = "unhCheckState" if isinstance(change, CheckChange) else "unhProbeAccessState"
    if change.state == State.UNKNOWN or (change.state == State.DOWN) != down:
        raise Malformed(f"{name} with {state} {change.state.value}")
    if isinstance(change, CheckChange) and (change.reason is None) == down:
        raise Malformed(f"{name} {'without' if down else 'with'} unhCheckFailureReason")


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
            raise Malformed(f"{obj}: {shown(str(value))} is not one of {sorted(labels)}"
                            ) from exc
    try:
        return bytes(value).decode("utf-8")
    except (TypeError, UnicodeDecodeError) as exc:
        raise Malformed(f"{obj}: not UTF-8 text") from exc


class Receiver:
    """Registers the senders' credentials on the shared engine and hands each accepted
    notification to `deliver` (called on the event loop)."""

    def __init__(self, engine: SnmpEngine, settings: ReceiverSettings, drops: Drops,
                 deliver: Callable[[Notification], None], max_future_s: float) -> None:
        self.engine = engine
        self.drops = drops
        self.deliver = deliver
        self.max_future_s = max_future_s  # ingest.max_future_s, as for HTTP results
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
            name, change, index = decode(trap_oid, varbinds)
        except Malformed as exc:
            self.drops["malformed"] += 1
            log.info("dropped a notification from %s (probe %s): %s", source, probe_id, exc)
            return
        except (TypeError, ValueError) as exc:  # pyasn1 values that are not what they say
            self.drops["malformed"] += 1
            log.info("dropped a notification from %s (probe %s): %s", source, probe_id,
                     shown(exc, 200))
            return
        if change.changed_at.timestamp() > time.time() + self.max_future_s:
            self.drops["malformed"] += 1
            log.warning("dropped %s from %s: its time %s is in the future (check the "
                        "probe's clock)", name, source, iso_utc(change.changed_at))
            return
        if change.probe_id != probe_id:
            self.drops["unknown_probe"] += 1
            log.warning("dropped %s from %s: signed by probe %s but names probe %s", name,
                        source, probe_id, change.probe_id)
            return
        self.deliver(Notification(name=name, probe_id=probe_id, change=change,
                                  source=source, check_index=index))
