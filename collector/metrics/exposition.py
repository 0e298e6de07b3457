"""Prometheus exposition: the fleet's series written as text from the in-memory state,
the collector's own counters through prometheus-client, rendered off the event loop."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from collector.metrics.access import AccessSeconds, render_mission_access
from collector.metrics.mission_info import mission_info_exposition
from collector.metrics.runtime import RuntimeMetrics
from collector.state.fleet import CheckState, FleetState
from collector.state.timeline import ALL_GROUPS, Timelines
from unhindered.measurement import RejectReason
from unhindered.states import RETIRED, STATES

log = logging.getLogger(__name__)

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


def _header(name: str, kind: str, text: str) -> str:
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


# The per-check families, in the order they are written.
_CHECK_HEADERS = [
    _header("unhindered_check_info", "gauge", "What a check measures; always 1."),
    _header("unhindered_check_up", "gauge", "1 when the check's state is up, else 0."),
    _header("unhindered_check_state", "gauge",
            "1 for the check's current state, 0 for the others."),
    _header("unhindered_check_success", "gauge", "1 when the newest round succeeded, else 0."),
    _header("unhindered_check_failure_reason", "gauge",
            "1 with the failure reason of the newest round, when it failed."),
    _header("unhindered_check_local_ok", "gauge",
            "1 when the probe's own gateway and resolver were healthy at the newest round, 0 "
            "when not (a failure then lies inside the mission); absent when unchecked."),
    _header("unhindered_check_last_measurement_timestamp_seconds", "gauge",
            "Probe-clock start time of the newest round (Unix seconds)."),
    _header("unhindered_check_state_since_timestamp_seconds", "gauge",
            "Measurement time at which the current state began (Unix seconds)."),
    _header("unhindered_check_rounds_total", "counter", "Rounds stored for the check."),
    _header("unhindered_check_rounds_failed_total", "counter",
            "Failed rounds stored for the check."),
    *(_header(name, "gauge", text) for _key, name, text in _FIGURE_GAUGES),
]


class CheckLines:
    """Each check's exposition lines, one string per family, kept between renders.

    A check is formatted again only when it changed (a new round, new counts, a new
    state): with 100,000 series, formatting every line took most of a render, and a
    render holds the GIL the event loop needs (commit 3778325). Label strings are
    built once per check and identity.
    """

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], tuple[tuple, tuple[str, ...]]] = {}
        self._labels: dict[tuple[str, str], tuple[tuple, str, str]] = {}

    def render(self, checks: list[CheckState], machines: dict) -> list[str]:
        """Every family's header and lines, in _CHECK_HEADERS order."""
        kept: dict[tuple[str, str], tuple[tuple, tuple[str, ...]]] = {}
        rows = []
        for c in checks:
            key = (c.mission, c.check_id)
            machine = machines.get(key)
            if machine is not None and machine.state == RETIRED:
                continue  # the probe no longer runs it: its series end (docs/states.md)
            stamp = (c.revision, machine.state, machine.since) if machine else (c.revision,)
            cached = self._lines.get(key)
            if cached is None or cached[0] != stamp:
                cached = (stamp, self._format(c, machine))
            kept[key] = cached
            rows.append(cached[1])
        self._lines = kept
        columns = zip(*rows, strict=True) if rows else [()] * len(_CHECK_HEADERS)
        out = []
        for header, column in zip(_CHECK_HEADERS, columns, strict=True):
            out.append(header)
            out.append("".join(column))
        return out

    def _label_strings(self, c: CheckState) -> tuple[str, str]:
        """(labels of every check series, the info series' labels)."""
        key = (c.mission, c.check_id)
        identity = (c.group, c.kind, c.probe_id, c.target)
        cached = self._labels.get(key)
        if cached is None or cached[0] != identity:
            labels = f'check="{_escape(c.check_id)}",mission="{c.mission}"'
            info = (f'check="{_escape(c.check_id)}",group="{_escape(c.group)}",'
                    f'kind="{c.kind}",mission="{c.mission}",probe="{_escape(c.probe_id)}",'
                    f'target="{_escape(c.target)}"')
            cached = self._labels[key] = (identity, labels, info)
        return cached[1], cached[2]

    def _format(self, c: CheckState, machine) -> tuple[str, ...]:
        labels, info = self._label_strings(c)
        current = machine.state if machine is not None else "unknown"

        def line(name: str, value: float, extra: str = "") -> str:
            return f"{name}{{{labels}{extra}}} {float(value)!r}\n"

        figures = c.figures_model.__dict__ if c.figures_model is not None else {}
        lines = [
            f"unhindered_check_info{{{info}}} 1.0\n",
            line("unhindered_check_up", current == "up"),
            "".join(line("unhindered_check_state", current == s, f',state="{s}"')
                    for s in STATES),
            line("unhindered_check_success", c.last_ok) if c.last_ok is not None else "",
            line("unhindered_check_failure_reason", 1, f',reason="{c.last_reason}"')
            if c.last_ok is False and c.last_reason else "",
            line("unhindered_check_local_ok", c.last_local_ok)
            if c.last_local_ok is not None else "",
            line("unhindered_check_last_measurement_timestamp_seconds", c.last_started_at)
            if c.last_ok is not None else "",
            line("unhindered_check_state_since_timestamp_seconds", machine.since)
            if machine is not None and machine.since is not None else "",
            line("unhindered_check_rounds_total", c.rounds_total),
            line("unhindered_check_rounds_failed_total", c.rounds_failed),
        ]
        for key, name, _text in _FIGURE_GAUGES:
            # A round with no reply has no RTT: no sample rather than a zero.
            value = figures.get(key)
            if isinstance(value, datetime):
                value = value.timestamp()
            lines.append(line(name, value) if value is not None else "")
        return tuple(lines)


def fleet_chunks(state: FleetState, timelines: Timelines, check_lines: CheckLines) -> list[str]:
    """The fleet's series as Prometheus text (format 0.0.4), in pieces of a family or less.

    Written directly rather than through prometheus-client's metric families: with
    100,000 series those took about 0.8 s and two full garbage collections per scrape
    (commit 3778325). Label names are in alphabetical order, as prometheus-client
    writes them.
    """
    checks = list(state.checks.values())
    probes = list(state.probes.values())
    out = check_lines.render(checks, dict(timelines.machines))
    gauge = "gauge"

    report = _Family("unhindered_probe_last_report_timestamp_seconds", gauge,
                     "Collector-clock time of the probe's newest accepted batch (Unix seconds).")
    backlog = _Family("unhindered_probe_backlog_results", gauge,
                      "Results the probe said were still queued after its newest batch.")
    # The probe's own running count: it starts from 0 again with a new outbox, which
    # Prometheus takes as a counter reset.
    dropped = _Family("unhindered_probe_outbox_dropped_results_total", "counter",
                      "Results the probe's outbox dropped unsent (a full disk or its size "
                      "bound), as the probe last reported.")
    for p in probes:
        labels = f'mission="{p.mission}",probe="{_escape(p.probe_id)}"'
        report.add(labels, p.last_report_at)
        if p.backlog is not None:
            backlog.add(labels, p.backlog)
        if p.dropped is not None:
            dropped.add(labels, p.dropped)

    access = _Family("unhindered_mission_access_state", gauge,
                     "1 for the mission's current access state, per group of checks and "
                     'overall (group="*"), 0 for the others.')
    access_up = _Family("unhindered_mission_access_up", gauge,
                        "1 when the mission has unhindered access (every group up), else 0.")
    access_since = _Family("unhindered_mission_access_since_timestamp_seconds", gauge,
                           "Measurement time at which the mission's access state began "
                           "(Unix seconds).")
    for (mission, group), (current, began) in sorted(timelines.access.items()):
        if current == RETIRED:  # every check of the group (or mission) retired
            continue
        labels = f'group="{_escape(group)}",mission="{mission}"'
        for s in STATES:
            access.add(f'{labels},state="{s}"', 1 if current == s else 0)
        access_since.add(labels, began)
        if group == ALL_GROUPS:
            access_up.add(f'mission="{mission}"', 1 if current == "up" else 0)

    families = [report, backlog, dropped, access, access_up, access_since]
    return out + ["\n".join(f.lines) + "\n" for f in families]


class Metrics:
    """The collector's registry: fleet state plus the collector's own counters."""

    def __init__(self, state: FleetState, timelines: Timelines, inventory=None) -> None:
        disable_created_metrics()  # _created series double the counters for no use here
        self.state = state
        self.timelines = timelines
        self.check_lines = CheckLines()
        # The SLO counters follow the timelines' access changes; maintenance kept apart.
        self.access_seconds = AccessSeconds(inventory.schedule if inventory is not None
                                            else None)
        timelines.observers.append(self.access_seconds.observe)
        self.mission_info = mission_info_exposition(inventory)  # the inventory is fixed
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.ingest_requests = Counter(
            "unhindered_ingest_requests", "Result batches received, by HTTP status answered.",
            ["code"], registry=self.registry)
        self.ingest_results = Counter(
            "unhindered_ingest_results", "Results received, by what became of them.",
            ["outcome"], registry=self.registry)
        self.ingest_rejected = Counter(
            "unhindered_ingest_rejected_results",
            "Results refused one by one, the rest of their batch stored, by reason.",
            ["reason"], registry=self.registry)
        for reason in RejectReason:  # a bounded set, each series there from the start
            self.ingest_rejected.labels(reason=reason.value)
        self.runtime = RuntimeMetrics(self.registry)

    def version(self) -> tuple[int, int]:
        """Changes whenever the fleet's series do."""
        return self.state.changes, self.timelines.changes

    def render(self) -> bytes:
        # Encoded piece by piece and joined once: every whole copy of 100,000 series'
        # text (15 MB) holds the GIL, which the event loop needs, for milliseconds.
        chunks = [*fleet_chunks(self.state, self.timelines, self.check_lines),
                  render_mission_access(self.timelines, self.access_seconds),
                  self.mission_info]
        return b"".join([*(c.encode() for c in chunks), generate_latest(self.registry)])


class RenderedMetrics:
    """The exposition, rendered on a worker thread and served as cached bytes, plain and
    gzipped (Prometheus asks for gzip; 100,000 series are 8 MiB of text).

    From start-up, and while someone scrapes (a scrape in the last `keep_warm_s`), the
    bytes are rendered again every `refresh_s`, ahead of the scrapes: a scrape is answered
    from bytes at most `max_age_s` old without waiting for a render, which takes 20-200 ms
    with 100,000 series. A render is skipped when the fleet has not changed, up to
    `unchanged_s` (the collector's own counters and process figures age that much at
    most). A scrape that finds older bytes (after a quiet spell) waits for a render;
    concurrent scrapes share it. The event loop never renders.
    """

    def __init__(self, metrics: Metrics, refresh_s: float = 1.0, max_age_s: float = 2.0,
                 keep_warm_s: float = 300.0, unchanged_s: float = 5.0) -> None:
        self.metrics = metrics
        self.refresh_s, self.max_age_s, self.keep_warm_s = refresh_s, max_age_s, keep_warm_s
        self.unchanged_s = unchanged_s
        self._version: tuple | None = None  # of the fleet in the newest bytes
        self._really_rendered_at = float("-inf")
        self._body: tuple[bytes, bytes] = (b"", b"")
        self._rendered_at = float("-inf")  # loop time the newest render began
        self._wanted_at = float("-inf")
        self._rendering: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self.render_seconds = Gauge(
            "unhindered_metrics_render_seconds",
            "How long the newest rendering of this exposition took, off the event loop.",
            registry=metrics.registry)

    def _render(self) -> tuple[bytes, bytes]:
        started = time.perf_counter()
        body = self.metrics.render()
        gzipped = gzip.compress(body, compresslevel=1)
        self.render_seconds.set(time.perf_counter() - started)
        return body, gzipped

    def warm(self) -> None:
        """Starts rendering ahead, as if just scraped (called at start-up)."""
        self._wanted_at = asyncio.get_running_loop().time()
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh())

    async def get(self) -> tuple[bytes, bytes]:
        """(plain, gzipped) exposition, at most `max_age_s` old."""
        loop = asyncio.get_running_loop()
        self.warm()
        if loop.time() - self._rendered_at > self.max_age_s:
            await self._render_once()
        return self._body

    async def _render_once(self) -> None:
        # A task of its own, so a scrape that gives up does not cancel the render others
        # wait for.
        if self._rendering is None:
            self._rendering = asyncio.create_task(self._render_and_keep())
        await asyncio.shield(self._rendering)

    async def _render_and_keep(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        version = self.metrics.version()
        try:
            if version != self._version or started - self._really_rendered_at > self.unchanged_s:
                self._body = await loop.run_in_executor(self._worker, self._render)
                self._version, self._really_rendered_at = version, started
            self._rendered_at = started
        finally:
            self._rendering = None

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() - self._wanted_at < self.keep_warm_s:
            await asyncio.sleep(self.refresh_s)
            try:
                await self._render_once()
            except Exception:
                log.exception("rendering /metrics failed")

    def close(self) -> None:
        for task in (self._refresher, self._rendering):
            if task is not None:
                task.cancel()
        self._worker.shutdown(wait=False)
