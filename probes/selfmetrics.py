"""The probe's own /metrics: is it keeping up, and how is its ICMP engine doing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from probes.outbox import OutboxStats
from probes.reporters.http_push import HttpPusher
from unhindered.probing import icmp

if TYPE_CHECKING:
    from probes.app import Probe


class _Snapshot(Collector):
    """Figures read at scrape time: the outbox (read just before) and the ICMP engine."""

    def __init__(self, pusher: HttpPusher) -> None:
        self.pusher = pusher
        self.outbox: OutboxStats | None = None
        self.engine: icmp.IcmpEngine | None = None
        self.snmp = None  # probes.snmp.service.SnmpService, when configured

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("unhindered_probe_push_failures",
                                  "Batches that no collector URL accepted.",
                                  value=self.pusher.failures)
        rejected = CounterMetricFamily(
            "unhindered_probe_rejected_results",
            "Results the collector rejected (never to be stored) and the outbox deleted, "
            "by the collector's reason.", labels=["reason"])
        # (A stand-in reporter, as in tests of the outbox's figures, counts none.)
        for reason, value in sorted(getattr(self.pusher, "rejected", {}).items()):
            rejected.add_metric([reason], value)
        yield rejected
        if self.outbox is not None:
            o = self.outbox
            yield GaugeMetricFamily("unhindered_probe_outbox_depth_results",
                                    "Results waiting in the outbox for an acknowledgement.",
                                    value=o.depth)
            yield GaugeMetricFamily(
                "unhindered_probe_outbox_oldest_age_seconds",
                "Age of the oldest unacknowledged result (0 when the outbox is empty).",
                value=time.time() - o.oldest_queued_at if o.oldest_queued_at else 0)
            yield GaugeMetricFamily("unhindered_probe_last_seq", "Newest seq the outbox gave.",
                                    value=o.last_seq)
            yield GaugeMetricFamily("unhindered_probe_acked_through_seq",
                                    "Every seq up to this one is stored at the collector.",
                                    value=o.acked_through)
            if o.last_ack_at is not None:
                yield GaugeMetricFamily(
                    "unhindered_probe_last_ack_timestamp_seconds",
                    "When the collector last acknowledged results (Unix seconds).",
                    value=o.last_ack_at)
            yield CounterMetricFamily(
                "unhindered_probe_outbox_dropped_results",
                "Results lost unsent: the oldest, dropped by a full outbox or disk, and "
                "results that could not be stored at all (since the outbox was created).",
                value=o.dropped)
            yield GaugeMetricFamily("unhindered_probe_outbox_size_bytes",
                                    "Size of the outbox's database file.", value=o.size_bytes)
            yield GaugeMetricFamily(
                "unhindered_probe_outbox_limit_bytes",
                "Size at which the outbox drops its oldest results: its bound, or less "
                "while the disk is full.", value=o.limit_bytes)
            yield GaugeMetricFamily(
                "unhindered_probe_outbox_disk_full",
                "1 while the outbox's disk is full (the outbox keeps its size), else 0.",
                value=1 if o.disk_full else 0)
        if self.engine is not None:
            modes = GaugeMetricFamily("unhindered_probe_icmp_socket_info",
                                      "The ICMP socket of each family: raw or datagram.",
                                      labels=["family", "mode"])
            for version, sock in self.engine.sockets.items():
                modes.add_metric([f"ipv{version}", sock.mode], 1)
            yield modes
            counters = self.engine.counters
            for name, value, text in (
                ("sent", counters.sent, "Echo requests sent."),
                ("late_replies", counters.late_replies, "Replies after their round ended."),
                ("duplicates", counters.duplicates, "Duplicate replies."),
                ("errors", counters.errors, "ICMP errors matched to our requests."),
            ):
                yield CounterMetricFamily(f"unhindered_probe_icmp_{name}", text, value=value)
        if self.snmp is not None:
            yield from _snmp_families(self.snmp)


def _snmp_families(snmp) -> Iterator[Metric]:
    dropped = CounterMetricFamily(
        "unhindered_probe_snmp_dropped_packets",
        "SNMP packets the probe's engine refused, by reason (unknown_engine_id also counts "
        "managers' engine discovery).", labels=["reason"])
    for reason, value in snmp.dropped():
        dropped.add_metric([reason], value)
    yield dropped
    yield CounterMetricFamily("unhindered_probe_snmp_received_packets",
                              "SNMP packets the probe's engine received.", value=snmp.received())
    if snmp.notifier is not None:
        sent = CounterMetricFamily(
            "unhindered_probe_snmp_notifications",
            "Notifications by target, name and result (acknowledged, failed; sent for traps).",
            labels=["target", "notification", "result"])
        for (target, name, result), value in sorted(snmp.notifier.outcomes.items()):
            sent.add_metric([target, name, result], value)
        yield sent


class ProbeMetrics:
    def __init__(self, pusher: HttpPusher) -> None:
        disable_created_metrics()  # _created series double the counters for no use here
        self.registry = CollectorRegistry()
        self.snapshot = _Snapshot(pusher)
        self.registry.register(self.snapshot)
        self.rounds = Counter("unhindered_probe_rounds", "Rounds run, by check and outcome.",
                              ["check", "outcome"], registry=self.registry)
        self.confirmations = Counter("unhindered_probe_confirmation_rounds",
                                     "Quick re-checks run after a change of outcome.",
                                     ["check"], registry=self.registry)
        self.round_seconds = Gauge("unhindered_probe_check_run_seconds",
                                   "How long the newest round of the check took.", ["check"],
                                   registry=self.registry)
        self.reloads = Counter("unhindered_probe_config_reloads",
                               "Configuration reloads (SIGHUP), by result.", ["result"],
                               registry=self.registry)

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serves /metrics from prometheus-client's own threaded server (no web framework
        in the probe); returns the function that stops it."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return stop

    async def refresh(self, probe: Probe) -> None:
        """Reads the outbox figures for the next scrapes (the outbox lives on its own
        thread; scrapes come on the server's)."""
        self.snapshot.outbox = await probe.outbox.stats()
        self.snapshot.engine = icmp.engine()
