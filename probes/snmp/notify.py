"""Notifications: on every confirmed change of a check's state the probe sends checkDown or
checkUp, and on a change of the mission's access accessLost or accessRestored, to each
configured target (the collector and any other manager), as an SNMPv3 inform
(acknowledged, retried) or a trap.

Which changes notify: entering down sends checkDown; leaving down, or a first known state
that is not down, sends checkUp (so a manager learns every check's state after a probe
start); up <-> degraded sends nothing. Likewise for the access state."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import ntforg
from pysnmp.proto import rfc1902

from probes.checkstate import Change, State
from probes.snmp.values import Mib, check_row
from unhindered.snmp.settings import NotificationTarget

log = logging.getLogger(__name__)
CHECK_OBJECTS = ("unhCheckName", "unhCheckKind", "unhCheckTarget", "unhCheckState",
                 "unhCheckFailureReason", "unhCheckLastChange")
ACCESS_OBJECTS = ("unhProbeAccessState", "unhProbeAccessLastChange")
V2C_SECURITY_NAME = "v2c"  # the community's security name, for the agent too


def notification_of(change: Change) -> str | None:
    if change.new == State.DOWN:
        return "checkDown" if change.check else "accessLost"
    if change.old in (State.DOWN, State.UNKNOWN) and change.new != State.UNKNOWN:
        return "checkUp" if change.check else "accessRestored"
    return None


class Notifier:
    def __init__(self, engine: SnmpEngine, mib: Mib, targets: list[NotificationTarget],
                 identity: Callable[[], dict[str, object]]) -> None:
        """`identity()` gives the current unhProbeId and unhProbeMission (and the access
        scalars); the targets' users or community, with VACM notify views, are already in
        the engine."""
        self.engine = engine
        self.mib = mib
        self.targets = targets
        self.identity = identity
        self.originator = ntforg.NotificationOriginator()
        self.outcomes: Counter[tuple[str, str, str]] = Counter()  # (target, name, result)
        self._pending: set[asyncio.Future] = set()
        # The engine's own snmpTrapOID.0 instance (its name ends in .0 already).
        (trap_oid,) = engine.get_mib_builder().import_symbols("__SNMPv2-MIB", "snmpTrapOID")
        self.trap_oid = tuple(trap_oid.getName())
        self._configure()

    def _configure(self) -> None:
        engine = self.engine
        client_domains = set()
        for t in self.targets:
            host, port = t.host_port
            domain = udp6.DOMAIN_NAME if ":" in host else udp.DOMAIN_NAME
            if domain not in client_domains:
                transport = (udp6.Udp6AsyncioTransport() if domain == udp6.DOMAIN_NAME
                             else udp.UdpAsyncioTransport())
                config.add_transport(engine, domain, transport.open_client_mode())
                client_domains.add(domain)
            if t.version == "v3":
                security_name, level, model = t.user, "authPriv", 3
            else:
                security_name, level, model = V2C_SECURITY_NAME, "noAuthNoPriv", 1
            config.add_target_parameters(engine, f"p-{t.name}", security_name, level, model)
            config.add_target_address(engine, f"a-{t.name}", domain, (host, port),
                                      f"p-{t.name}", tagList=f"t-{t.name}",
                                      timeout=round(t.timeout_s * 100), retryCount=t.retries)
            config.add_notification_target(engine, f"n-{t.name}", f"p-{t.name}",
                                           f"t-{t.name}", t.type)

    def changed(self, change: Change) -> None:
        """A CheckStates listener: sends the notification the change calls for, if any."""
        name = notification_of(change)
        if name is None:
            return
        var_binds = [(self.trap_oid, rfc1902.ObjectIdentifier(self.mib.oid(name)))]
        identity = self.identity()
        var_binds += self.mib.scalar_bindings(
            {n: identity[n] for n in ("unhProbeId", "unhProbeMission")})
        if change.check is not None:
            row = check_row(change.check)
            var_binds += self.mib.row_bindings(change.check.index,
                                               {n: row[n] for n in CHECK_OBJECTS})
        else:
            var_binds += self.mib.scalar_bindings({n: identity[n] for n in ACCESS_OBJECTS})
        subject = change.check.check_id if change.check else "access"
        log.info("%s: %s -> %s, sending %s to %d targets", subject, change.old.name.lower(),
                 change.new.name.lower(), name, len(self.targets))
        for target in self.targets:
            self._send(target, name, subject, var_binds)

    def _send(self, target: NotificationTarget, name: str, subject: str, var_binds) -> None:
        if target.type == "trap":
            self.originator.send_varbinds(self.engine, f"n-{target.name}", None, b"",
                                          list(var_binds))
            self.outcomes[(target.name, name, "sent")] += 1
            return
        future = asyncio.get_running_loop().create_future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

        def answered(_engine, _handle, error_indication, error_status, _index, _binds,
                     _ctx) -> None:
            problem = error_indication or (error_status and error_status.prettyPrint())
            if problem:
                log.warning("%s for %s: inform to %s (%s) not acknowledged: %s", name,
                            subject, target.name, target.address, problem)
            result = "failed" if problem else "acknowledged"
            self.outcomes[(target.name, name, result)] += 1
            if not future.done():
                future.set_result(result)

        self.originator.send_varbinds(self.engine, f"n-{target.name}", None, b"",
                                      list(var_binds), answered)

    async def drain(self, wait_s: float) -> None:
        """Waits (up to `wait_s`) for the informs in flight: used at shutdown."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=wait_s)
