"""The collector's SNMP side, started and stopped with the Collector (collector/core.py):
one engine, the notification receiver, the probe and router pollers, and their series on
/metrics. Results it polls go through `Collector.store_results`, as HTTP pushes do."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine

from collector.snmp.engine import Drops
from collector.snmp.exporter import SnmpExporter
from collector.snmp.poller import ProbePoller
from collector.snmp.receiver import CheckChange, Notification, Receiver
from collector.snmp.router import RouterPoller, RouterReading
from collector.snmp.settings import SnmpSettings
from collector.snmp.walk import Peer
from unhindered.measurement import RejectReason
from unhindered.snmp.udp import bind_socket
from unhindered.timefmt import iso_utc

if TYPE_CHECKING:  # the Collector imports this module when SNMP is configured
    from collector.core import Collector

log = logging.getLogger(__name__)


class SnmpService:
    def __init__(self, settings: SnmpSettings, collector: Collector) -> None:
        self.settings = settings
        self.collector = collector
        self.engine = SnmpEngine()
        self.drops = Drops(self.engine)
        self.readings: dict[tuple[str, str], RouterReading] = {}
        self.exporter = SnmpExporter(self.drops, self.readings)
        self.receiver: Receiver | None = None
        self.tasks: list[asyncio.Task] = []
        self.pending: set[asyncio.Task] = set()

    async def start(self) -> None:
        settings = self.settings
        self.collector.metrics.registry.register(self.exporter)
        if settings.receiver is not None:
            receiver = settings.receiver
            # Bound here, so that a port in use stops the start with a clear error
            # (pysnmp would bind later, inside the loop, and only log it).
            sock = bind_socket(receiver.host, receiver.port, "SNMP receiver")
            if sock.family == socket.AF_INET6:
                domain, transport = udp6.DOMAIN_NAME, udp6.Udp6AsyncioTransport()
            else:
                domain, transport = udp.DOMAIN_NAME, udp.UdpAsyncioTransport()
            config.add_transport(self.engine, domain, transport.open_server_mode(sock=sock))
            self.receiver = Receiver(self.engine, receiver, self.drops, self._deliver,
                                     self.collector.config.ingest.max_future_s)
            log.info("receiving SNMP notifications on %s port %d", receiver.host,
                     sock.getsockname()[1])
        for agent in settings.probes:
            poller = ProbePoller(Peer(self.engine, agent), agent.probe_id, self._store,
                                 self._counting("probe"), self._refused)
            self.tasks.append(asyncio.create_task(poller.run()))
        for router in settings.routers:
            poller = RouterPoller(Peer(self.engine, router), self.readings,
                                  self._counting("router"))
            self.tasks.append(asyncio.create_task(poller.run()))

    async def stop(self) -> None:
        for task in [*self.tasks, *self.pending]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.pending, return_exceptions=True)
        if self.receiver is not None:
            self.receiver.close()
        self.engine.close_dispatcher()
        self.collector.metrics.registry.unregister(self.exporter)

    def _counting(self, kind: str):
        def outcome(result: str) -> None:
            self.exporter.polls[(kind, result)] += 1
        return outcome

    def _refused(self, rows: int) -> None:
        self.collector.metrics.ingest_rejected.labels(reason=RejectReason.INVALID).inc(rows)

    async def _store(self, batch):
        return await self.collector.store_results(batch)

    # --- notifications ---

    def _deliver(self, notification: Notification) -> None:
        # Called inside the engine's datagram callback: the database work goes to a task.
        task = asyncio.get_running_loop().create_task(self._apply(notification))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _apply(self, n: Notification) -> None:
        collector = self.collector
        try:
            probe = await collector.in_db(collector.store.probe, n.probe_id)
            if probe is None or probe.revoked_at is not None or probe.mission != n.mission:
                self.drops["unknown_probe"] += 1
                log.warning("dropped %s from %s: probe %s of mission %s is not registered "
                            "(unhindered-collector probes add) or revoked", n.name, n.source,
                            n.probe_id, n.mission)
                return
            self.exporter.received[n.name] += 1
            if not isinstance(n.change, CheckChange):
                log.info("probe %s of %s: %s (access %s since %s)", n.probe_id, n.mission,
                         n.name, n.change.state.value, iso_utc(n.changed_at))
                return
            await self._apply_check(n, n.change)
        except Exception:
            log.exception("applying %s from %s failed", n.name, n.source)

    async def _apply_check(self, n: Notification, change: CheckChange) -> None:
        # Every value here passed the receiver's checks (receiver.CheckChange).
        collector = self.collector
        check_id, state = change.check_id, change.state.value
        cause = f"snmp {n.name}" + (f" ({change.reason.value})" if change.reason else "")
        timelines = collector.timelines
        group = timelines.groups.get((n.mission, check_id))
        collector.state.note_check(n.mission, check_id, change.kind, change.target,
                                   n.probe_id, group or "internet")
        changed = await collector.in_db(
            timelines.confirm, n.mission, check_id, group, n.changed_at.timestamp(),
            state, cause)
        log.info("probe %s of %s: %s %s -> %s at %s%s", n.probe_id, n.mission, n.name,
                 check_id, state, iso_utc(n.changed_at), "" if changed else " (no change)")
