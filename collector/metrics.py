"""Prometheus exposition, built from the in-memory FleetState by a custom collector
(the fast path of prometheus-client) and rendered off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.state import STATES, FleetState
from collector.timeline import ALL_GROUPS, Timelines

CHECK_LABELS = ["mission", "check"]

# Figures of the newest round exported as gauges: (figure key, metric name, help).
_FIGURE_GAUGES = [
    ("rtt_median_s", "unhindered_check_rtt_median_seconds",
     "Median round-trip time of the newest ICMP round."),
    ("rtt_min_s", "unhindered_check_rtt_min_seconds",
     "Smallest round-trip time of the newest ICMP round."),
    ("rtt_max_s", "unhindered_check_rtt_max_seconds",
     "Largest round-trip time of the newest ICMP round."),
    ("rtt_stddev_s", "unhindered_check_rtt_stddev_seconds",
     "Population standard deviation of the round-trip times of the newest ICMP round."),
    ("loss_ratio", "unhindered_check_loss_ratio",
     "Share of echo requests of the newest ICMP round that got no reply (0 to 1)."),
    ("jitter_s", "unhindered_check_jitter_seconds",
     "RFC 3550 interarrival jitter estimate after the newest ICMP round."),
    ("connect_s", "unhindered_check_connect_seconds",
     "TCP handshake time of the newest TCP or HTTP round."),
    ("tls_s", "unhindered_check_tls_handshake_seconds",
     "TLS handshake time of the newest round."),
    ("tls_cert_not_after", "unhindered_check_tls_cert_not_after_timestamp_seconds",
     "Earliest expiry in the certificate chain of the newest round (Unix seconds)."),
    ("first_byte_s", "unhindered_check_http_first_byte_seconds",
     "Request sent to first byte of the answer, newest HTTP round."),
    ("status_code", "unhindered_check_http_status_code",
     "HTTP status of the newest HTTP round (after redirects)."),
    ("query_s", "unhindered_check_dns_query_seconds",
     "Query time of the newest DNS round."),
]


class FleetCollector(Collector):
    def __init__(self, state: FleetState, timelines: Timelines) -> None:
        self.state = state
        self.timelines = timelines

    def describe(self) -> list[Metric]:
        return []  # skips a collect() at registration; the families are dynamic

    def collect(self) -> Iterator[Metric]:
        checks = list(self.state.checks.values())
        probes = list(self.state.probes.values())

        info = GaugeMetricFamily(
            "unhindered_check_info", "What a check measures; always 1.",
            labels=[*CHECK_LABELS, "kind", "group", "target", "probe"])
        up = GaugeMetricFamily(
            "unhindered_check_up", "1 when the check's state is up, else 0.",
            labels=CHECK_LABELS)
        state = GaugeMetricFamily(
            "unhindered_check_state", "1 for the check's current state, 0 for the others.",
            labels=[*CHECK_LABELS, "state"])
        success = GaugeMetricFamily(
            "unhindered_check_success", "1 when the newest round succeeded, else 0.",
            labels=CHECK_LABELS)
        reason = GaugeMetricFamily(
            "unhindered_check_failure_reason",
            "1 with the failure reason of the newest round, when it failed.",
            labels=[*CHECK_LABELS, "reason"])
        local = GaugeMetricFamily(
            "unhindered_check_local_ok",
            "1 when the probe's own gateway and resolver were healthy at the newest round, "
            "0 when not (a failure then lies inside the mission); absent when unchecked.",
            labels=CHECK_LABELS)
        last = GaugeMetricFamily(
            "unhindered_check_last_measurement_timestamp_seconds",
            "Probe-clock start time of the newest round (Unix seconds).", labels=CHECK_LABELS)
        since = GaugeMetricFamily(
            "unhindered_check_state_since_timestamp_seconds",
            "Measurement time at which the current state began (Unix seconds).",
            labels=CHECK_LABELS)
        rounds = CounterMetricFamily(
            "unhindered_check_rounds", "Rounds stored for the check.", labels=CHECK_LABELS)
        failed = CounterMetricFamily(
            "unhindered_check_rounds_failed", "Failed rounds stored for the check.",
            labels=CHECK_LABELS)
        figures = {key: GaugeMetricFamily(name, text, labels=CHECK_LABELS)
                   for key, name, text in _FIGURE_GAUGES}

        machines = dict(self.timelines.machines)
        for c in checks:
            labels = [c.mission, c.check_id]
            machine = machines.get((c.mission, c.check_id))
            current = machine.state if machine is not None else "unknown"
            info.add_metric([*labels, c.kind, c.group, c.target, c.probe_id], 1)
            up.add_metric(labels, 1 if current == "up" else 0)
            for s in STATES:
                state.add_metric([*labels, s], 1 if current == s else 0)
            if c.last_ok is not None:
                success.add_metric(labels, 1 if c.last_ok else 0)
                last.add_metric(labels, c.last_started_at)
            if c.last_local_ok is not None:
                local.add_metric(labels, 1 if c.last_local_ok else 0)
            if c.last_ok is False and c.last_reason:
                reason.add_metric([*labels, c.last_reason], 1)
            if machine is not None and machine.since is not None:
                since.add_metric(labels, machine.since)
            rounds.add_metric(labels, c.rounds_total)
            failed.add_metric(labels, c.rounds_failed)
            for key, family in figures.items():
                # A round with no reply has no RTT: export no sample rather than a zero.
                value = c.figures.get(key)
                if isinstance(value, datetime):
                    value = value.timestamp()
                if value is not None:
                    family.add_metric(labels, value)

        report = GaugeMetricFamily(
            "unhindered_probe_last_report_timestamp_seconds",
            "Collector-clock time of the probe's newest accepted batch (Unix seconds).",
            labels=["probe", "mission"])
        backlog = GaugeMetricFamily(
            "unhindered_probe_backlog_results",
            "Results the probe said were still queued after its newest batch.",
            labels=["probe", "mission"])
        for p in probes:
            report.add_metric([p.probe_id, p.mission], p.last_report_at)
            if p.backlog is not None:
                backlog.add_metric([p.probe_id, p.mission], p.backlog)

        access = GaugeMetricFamily(
            "unhindered_mission_access_state",
            "1 for the mission's current access state, per group of checks and overall "
            "(group=\"*\"), 0 for the others.", labels=["mission", "group", "state"])
        access_up = GaugeMetricFamily(
            "unhindered_mission_access_up",
            "1 when the mission has unhindered access (every group up), else 0.",
            labels=["mission"])
        access_since = GaugeMetricFamily(
            "unhindered_mission_access_since_timestamp_seconds",
            "Measurement time at which the mission's access state began (Unix seconds).",
            labels=["mission", "group"])
        for (mission, group), (current, began) in sorted(self.timelines.access.items()):
            for s in STATES:
                access.add_metric([mission, group, s], 1 if current == s else 0)
            access_since.add_metric([mission, group], began)
            if group == ALL_GROUPS:
                access_up.add_metric([mission], 1 if current == "up" else 0)

        yield from (info, up, state, success, reason, local, last, since, rounds, failed,
                    *figures.values(), report, backlog, access, access_up, access_since)


class Metrics:
    """The collector's registry: fleet state plus the collector's own counters."""

    def __init__(self, state: FleetState, timelines: Timelines) -> None:
        disable_created_metrics()  # _created series double the counters for no use here
        self.registry = CollectorRegistry()
        self.registry.register(FleetCollector(state, timelines))
        ProcessCollector(registry=self.registry)
        self.ingest_requests = Counter(
            "unhindered_ingest_requests", "Result batches received, by HTTP status answered.",
            ["code"], registry=self.registry)
        self.ingest_results = Counter(
            "unhindered_ingest_results", "Results received, by what became of them.",
            ["outcome"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RenderedMetrics:
    """The exposition, rendered on a worker thread and served as cached bytes.

    Rendering 100,000 series takes about half a second of CPU: inside the event loop it
    would stall ingest. Scrapes within `max_age_s` of a render share its bytes, and
    concurrent scrapes wait for the one render in flight.
    """

    def __init__(self, metrics: Metrics, max_age_s: float = 1.0) -> None:
        self.metrics = metrics
        self.max_age_s = max_age_s
        self._body = b""
        self._rendered_at = float("-inf")
        self._rendering: asyncio.Future[bytes] | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="metrics")

    async def get(self) -> bytes:
        loop = asyncio.get_running_loop()
        if loop.time() - self._rendered_at <= self.max_age_s:
            return self._body
        if self._rendering is None:
            self._rendering = loop.run_in_executor(self._worker, self.metrics.render)
            try:
                self._body = await self._rendering
                self._rendered_at = loop.time()
            finally:
                self._rendering = None
            return self._body
        return await asyncio.shield(self._rendering)

    def close(self) -> None:
        self._worker.shutdown(wait=False)
