"""The SNMP side's series on /metrics (names in docs/snmp-collector.md): what the receiver took and
dropped, how polls went, and the routers' interfaces. A custom collector: it reads the
counters and readings as they are when /metrics renders (on the metrics thread)."""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from collector.snmp.engine import Drops
from collector.snmp.router import RouterReading


class SnmpExporter:
    def __init__(self, drops: Drops, readings: dict[tuple[str, str], RouterReading]) -> None:
        self.drops = drops
        self.readings = readings
        self.received: Counter[str] = Counter()  # notification name -> accepted
        self.polls: Counter[tuple[str, str]] = Counter()  # (kind, outcome) -> polls

    def describe(self) -> list:
        return []  # no registration-time collect: the engine may not exist yet

    def collect(self):
        dropped = CounterMetricFamily(
            "unhindered_snmp_dropped", "Inbound SNMP messages dropped, by reason.",
            labels=["reason"])
        for reason, count in self.drops.totals().items():
            dropped.add_metric([reason], count)
        received = CounterMetricFamily(
            "unhindered_snmp_notifications_received",
            "Notifications accepted from probes, by notification.", labels=["notification"])
        for name in ("checkDown", "checkUp", "accessLost", "accessRestored"):
            received.add_metric([name], self.received[name])
        polls = CounterMetricFamily(
            "unhindered_snmp_polls", "SNMP polls (one walk of one agent), by what was "
            "polled (probe or router) and outcome (ok or error).", labels=["kind", "outcome"])
        for (kind, outcome), count in sorted(self.polls.items()):
            polls.add_metric([kind, outcome], count)
        yield from (dropped, received, polls)
        yield from self._routers()

    def _routers(self):
        labels = ["ifname", "mission", "router"]
        oper = GaugeMetricFamily(
            "unhindered_router_if_oper_status",
            "IF-MIB ifOperStatus of the router's interface: 1 up, 2 down, 3 testing, "
            "4 unknown, 5 dormant, 6 notPresent, 7 lowerLayerDown.", labels=labels)
        counters = {
            "in_octets": CounterMetricFamily(
                "unhindered_router_if_in_octets", "IF-MIB ifHCInOctets: bytes received.",
                labels=labels),
            "out_octets": CounterMetricFamily(
                "unhindered_router_if_out_octets", "IF-MIB ifHCOutOctets: bytes sent.",
                labels=labels),
            "in_errors": CounterMetricFamily(
                "unhindered_router_if_in_errors", "IF-MIB ifInErrors: inbound packets "
                "discarded for errors.", labels=labels),
            "out_errors": CounterMetricFamily(
                "unhindered_router_if_out_errors", "IF-MIB ifOutErrors: outbound packets "
                "not sent for errors.", labels=labels),
        }
        polled = GaugeMetricFamily(
            "unhindered_router_last_poll_timestamp_seconds",
            "When the router's interfaces were last read (Unix seconds).",
            labels=["mission", "router"])
        for reading in sorted(self.readings.values(), key=lambda r: (r.mission, r.router)):
            polled.add_metric([reading.mission, reading.router], reading.polled_at)
            for interface in reading.interfaces:
                values = [interface.name, reading.mission, reading.router]
                oper.add_metric(values, interface.oper_status)
                for field, family in counters.items():
                    value = getattr(interface, field)
                    if value is not None:
                        family.add_metric(values, value)
        yield from (oper, *counters.values(), polled)
