"""Prometheus exposition: the fleet's series written as text from the in-memory state,
the collector's own counters through prometheus-client, rendered off the event loop."""

from __future__ import annotations

import asyncio
import gzip
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from collector.metrics_access import render_access_seconds
from collector.mission_info import mission_info_exposition
from collector.state import STATES, FleetState
from collector.timeline import ALL_GROUPS, Timelines

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


class _Family:
    """One metric family written straight as exposition text."""

    def __init__(self, name: str, kind: str, text: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]

    def add(self, labels: str, value: float) -> None:
        self.lines.append(f"{self.name}{{{labels}}} {float(value)!r}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_fleet(state: FleetState, timelines: Timelines, inventory=None) -> str:
    """The fleet's series as Prometheus text (format 0.0.4).

    Written directly rather than through prometheus-client's metric families: with
    100,000 series those took about 0.8 s and two full garbage collections per scrape
    (docs/benchmarks.md); this builds each check's label string once. Label names are in
    alphabetical order, as prometheus-client writes them.
    """
    checks = list(state.checks.values())
    probes = list(state.probes.values())
    machines = dict(timelines.machines)
    counter, gauge = "counter", "gauge"
    info = _Family("unhindered_check_info", gauge, "What a check measures; always 1.")
    up = _Family("unhindered_check_up", gauge, "1 when the check's state is up, else 0.")
    state_family = _Family("unhindered_check_state", gauge,
                           "1 for the check's current state, 0 for the others.")
    success = _Family("unhindered_check_success", gauge,
                      "1 when the newest round succeeded, else 0.")
    reason = _Family("unhindered_check_failure_reason", gauge,
                     "1 with the failure reason of the newest round, when it failed.")
    local = _Family("unhindered_check_local_ok", gauge,
                    "1 when the probe's own gateway and resolver were healthy at the newest "
                    "round, 0 when not (a failure then lies inside the mission); absent "
                    "when unchecked.")
    last = _Family("unhindered_check_last_measurement_timestamp_seconds", gauge,
                   "Probe-clock start time of the newest round (Unix seconds).")
    since = _Family("unhindered_check_state_since_timestamp_seconds", gauge,
                    "Measurement time at which the current state began (Unix seconds).")
    rounds = _Family("unhindered_check_rounds_total", counter, "Rounds stored for the check.")
    failed = _Family("unhindered_check_rounds_failed_total", counter,
                     "Failed rounds stored for the check.")
    figures = [(key, _Family(name, gauge, text)) for key, name, text in _FIGURE_GAUGES]

    for c in checks:
        labels = f'check="{_escape(c.check_id)}",mission="{c.mission}"'
        machine = machines.get((c.mission, c.check_id))
        current = machine.state if machine is not None else "unknown"
        info.add(f'check="{_escape(c.check_id)}",group="{_escape(c.group)}",'
                 f'kind="{c.kind}",mission="{c.mission}",probe="{_escape(c.probe_id)}",'
                 f'target="{_escape(c.target)}"', 1)
        up.add(labels, 1 if current == "up" else 0)
        for s in STATES:
            state_family.add(f'{labels},state="{s}"', 1 if current == s else 0)
        if c.last_ok is not None:
            success.add(labels, 1 if c.last_ok else 0)
            last.add(labels, c.last_started_at)
        if c.last_local_ok is not None:
            local.add(labels, 1 if c.last_local_ok else 0)
        if c.last_ok is False and c.last_reason:
            reason.add(f'{labels},reason="{c.last_reason}"', 1)
        if machine is not None and machine.since is not None:
            since.add(labels, machine.since)
        rounds.add(labels, c.rounds_total)
        failed.add(labels, c.rounds_failed)
        for key, family in figures:
            # A round with no reply has no RTT: no sample rather than a zero.
            value = c.figures.get(key)
            if isinstance(value, datetime):
                value = value.timestamp()
            if value is not None:
                family.add(labels, value)

    report = _Family("unhindered_probe_last_report_timestamp_seconds", gauge,
                     "Collector-clock time of the probe's newest accepted batch (Unix seconds).")
    backlog = _Family("unhindered_probe_backlog_results", gauge,
                      "Results the probe said were still queued after its newest batch.")
    for p in probes:
        labels = f'mission="{p.mission}",probe="{_escape(p.probe_id)}"'
        report.add(labels, p.last_report_at)
        if p.backlog is not None:
            backlog.add(labels, p.backlog)

    access = _Family("unhindered_mission_access_state", gauge,
                     "1 for the mission's current access state, per group of checks and "
                     'overall (group="*"), 0 for the others.')
    access_up = _Family("unhindered_mission_access_up", gauge,
                        "1 when the mission has unhindered access (every group up), else 0.")
    access_since = _Family("unhindered_mission_access_since_timestamp_seconds", gauge,
                           "Measurement time at which the mission's access state began "
                           "(Unix seconds).")
    for (mission, group), (current, began) in sorted(timelines.access.items()):
        labels = f'group="{_escape(group)}",mission="{mission}"'
        for s in STATES:
            access.add(f'{labels},state="{s}"', 1 if current == s else 0)
        access_since.add(labels, began)
        if group == ALL_GROUPS:
            access_up.add(f'mission="{mission}"', 1 if current == "up" else 0)

    families = [info, up, state_family, success, reason, local, last, since, rounds, failed,
                *(f for _k, f in figures), report, backlog, access, access_up, access_since]
    return ("".join("\n".join(f.lines) + "\n" for f in families)
            + render_access_seconds(timelines)
            + mission_info_exposition(inventory))


class Metrics:
    """The collector's registry: fleet state plus the collector's own counters."""

    def __init__(self, state: FleetState, timelines: Timelines, inventory=None) -> None:
        disable_created_metrics()  # _created series double the counters for no use here
        self.state = state
        self.timelines = timelines
        self.inventory = inventory
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.ingest_requests = Counter(
            "unhindered_ingest_requests", "Result batches received, by HTTP status answered.",
            ["code"], registry=self.registry)
        self.ingest_results = Counter(
            "unhindered_ingest_results", "Results received, by what became of them.",
            ["outcome"], registry=self.registry)

    def render(self) -> bytes:
        return (render_fleet(self.state, self.timelines, self.inventory).encode()
                + generate_latest(self.registry))


class RenderedMetrics:
    """The exposition, rendered on a worker thread and served as cached bytes, plain and
    gzipped (Prometheus asks for gzip; 100,000 series are 8 MiB of text).

    Scrapes within `max_age_s` of a render share its bytes, and concurrent scrapes wait
    for the one render in flight, so the event loop never renders.
    """

    def __init__(self, metrics: Metrics, max_age_s: float = 1.0) -> None:
        self.metrics = metrics
        self.max_age_s = max_age_s
        self._body: tuple[bytes, bytes] = (b"", b"")
        self._rendered_at = float("-inf")
        self._rendering: asyncio.Future[tuple[bytes, bytes]] | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="metrics")

    def _render(self) -> tuple[bytes, bytes]:
        body = self.metrics.render()
        return body, gzip.compress(body, compresslevel=1)

    async def get(self) -> tuple[bytes, bytes]:
        """(plain, gzipped) exposition, at most `max_age_s` old."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._rendered_at <= self.max_age_s:
            return self._body
        if self._rendering is None:
            self._rendering = loop.run_in_executor(self._worker, self._render)
            try:
                self._body = await self._rendering
                self._rendered_at = loop.time()
            finally:
                self._rendering = None
            return self._body
        return await asyncio.shield(self._rendering)

    def close(self) -> None:
        self._worker.shutdown(wait=False)
