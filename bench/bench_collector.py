"""Collector benchmarks: ingest throughput (`python -m bench ingest`) and /metrics render
time with the event loop's lag (`python -m bench render`). See docs/benchmarks.md.

Everything runs on loopback: the real collector (`python -m collector.cli ... serve`) and
`prometheus-pushgateway` are started here on free ports of 127.0.0.1 and stopped in a
`finally`; PostgreSQL is the one at 127.0.0.1:5432 (database `test`), in a schema of its
own that is created and dropped here, like tests/support/storage.py does. Every request loop is
bounded in count and in time.

ingest
    10 probes (registered with `python -m collector.cli probes add --token-file`), each
    a client task posting its 20,000 results in gzipped batches of 500, one batch in
    flight per probe, to the collector on SQLite and then on PostgreSQL; then the same
    figures to prometheus-pushgateway, one PUT per result to the group of its
    (probe, check), as long as TIME_BOUND_S allows. Goals: >= 20,000 results/s on SQLite,
    and >= 10x pushgateway's groups/s.

render
    The collector on SQLite with 250 missions x 10 checks fed through ingest, then more
    checks on the same missions until about 100,000 series. At each size: /metrics
    scraped once, then 20 times with more than the 1 s cache between the end of one scrape
    and the next (each a fresh render), each followed at once by a cached scrape; a
    separate process meanwhile sends `GET /` every 10 ms (the collector has no loop-lag
    probe of its own; `/` answers a small JSON without touching the database), and the
    same for a few seconds with no scrape, as the reference. Goals: /metrics served in
    <= 100 ms; the loop never blocked more than 20 ms (GET / latency <= 20 ms).
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import (
    PYTHON,
    REPO,
    BenchError,
    Goal,
    PartResult,
    ensure_programs,
    fmt,
    proc_figures,
    quantile,
    table,
)
from tests.support import free_port

LOOPBACK = "127.0.0.1"
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

PROBES = 10
CHECKS_PER_PROBE = 10
BATCH = 500
RESULTS = 200_000
TIME_BOUND_S = 30.0  # per run: ingest stops sending after this, whatever is left
PUSH_TIME_BOUND_S = 10.0
PUSH_CAP = 60_000  # pushes prepared for pushgateway (it is bounded by time first)
INTERVAL_S = 30.0  # the checks' declared interval: silence turns unknown after 90 s
FAIL_RATIO = 0.02  # a single failed round changes no state (3 of 5 needed)

MISSIONS = 250
RENDER_CHECKS = 10
TARGET_SERIES = 100_000
SCRAPES = 20
SCRAPE_GAP_S = 1.2  # from the end of a scrape to the next: past the 1 s refresh
LIVE_CYCLE_S = 10.0  # the checks' interval during the live-traffic scrapes
LIVE_SCRAPES = 10
LAG_PERIOD_S = 0.010
LAG_IDLE_S = 5.0
LAG_GOAL_MS = 20.0
SERVE_GOAL_MS = 100.0


# --- processes on loopback ---------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 5.0,
             headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read(), dict(answer.getheaders())
    finally:
        conn.close()


class Server:
    """A program listening on 127.0.0.1:<port>, its output in a log file; stop() in a
    finally, always."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path,
                 ready_path: str, cwd: Path = REPO) -> None:
        self.name, self.argv, self.port, self.log = name, argv, port, log
        self.ready_path = ready_path
        self.cwd = cwd  # the source tree a collector runs from (`python -m` reads cwd first)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}: "
                                 f"{self.log_tail()}")
            try:
                if http_get(self.port, self.ready_path, timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not answer on port {self.port}: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def collector_server(url: str, workdir: Path, source: Path = REPO) -> Server:
    port = free_port()
    argv = [PYTHON, "-m", "collector.cli", "--database", url, "serve",
            "--listen", f"{LOOPBACK}:{port}"]
    return Server("collector", argv, port, workdir / f"collector-{port}.log", "/", cwd=source)


def pushgateway_server(workdir: Path) -> Server:
    port = free_port()
    argv = ["prometheus-pushgateway", f"--web.listen-address={LOOPBACK}:{port}",
            "--persistence.file=", "--log.level=warn"]  # persistence off: memory only
    return Server("pushgateway", argv, port, workdir / f"pushgateway-{port}.log", "/-/ready")


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str | None]:
    """A database URL for a fresh collector store; None when PostgreSQL is unreachable."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'c-{uuid.uuid4().hex[:6]}.sqlite'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"uh_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        print(f"PostgreSQL is not reachable at {POSTGRES_URL} ({type(exc).__name__}): "
              "start it (./scripts/test does, as root) to get its row", file=sys.stderr)
        admin.dispose()
        yield None
        return
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def register_cli(url: str, probes: list[tuple[str, str]], workdir: Path,
                 source: Path = REPO) -> dict[str, str]:
    """`python -m collector.cli probes add --token-file` for each (probe id, mission);
    the first alone (it migrates the schema), the others three at a time."""
    tokens: dict[str, str] = {}

    def add(probe_id: str, mission: str) -> subprocess.Popen[bytes]:
        token_file = workdir / f"token-{uuid.uuid4().hex[:6]}-{probe_id}"
        proc = subprocess.Popen(
            [PYTHON, "-m", "collector.cli", "--database", url, "probes", "add",
             "--mission", mission, "--id", probe_id, "--token-file", str(token_file)],
            cwd=source, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        proc.token_file = token_file  # type: ignore[attr-defined]
        return proc

    def finish(proc: subprocess.Popen[bytes], probe_id: str) -> None:
        out = proc.communicate(timeout=60)[0]
        if proc.returncode != 0:
            raise BenchError(f"probes add {probe_id} failed: {out.decode()[-1500:]}")
        tokens[probe_id] = proc.token_file.read_text().strip()  # type: ignore[attr-defined]

    first, *rest = probes
    finish(add(*first), first[0])
    for i in range(0, len(rest), 3):
        group = [(add(*p), p[0]) for p in rest[i:i + 3]]
        for proc, probe_id in group:
            finish(proc, probe_id)
    return tokens


def register_in_process(url: str, probes: list[tuple[str, str]]) -> dict[str, str]:
    """The function `probes add --token-file` calls (Store.add_probe), for 250 probes at
    once: 250 CLI start-ups would take about four minutes of the part's three."""
    from collector.store.database import Store

    store = Store(url)
    try:
        store.migrate()
        return {probe_id: store.add_probe(probe_id, mission) for probe_id, mission in probes}
    finally:
        store.close()


# --- the workload ------------------------------------------------------------------------

KINDS = ("icmp", "icmp", "icmp", "icmp", "tcp", "tcp", "tcp", "http", "http", "dns")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def measurement(rng: random.Random, seq: int, probe_id: str, mission: str, check_id: str,
                kind: str, n: int, t: float, ok: bool) -> dict[str, Any]:
    """One result as the probe sends it; `n` numbers the check, for its target."""
    base = 0.010 + (n % 17) * 0.004
    m: dict[str, Any] = {
        "seq": seq, "probe_id": probe_id, "mission": mission, "check_id": check_id,
        "kind": kind, "group": "internet" if n % 3 else "documents",
        "target": f"192.0.2.{n % 250 + 1}", "ip_version": 4, "started_at": _iso(t),
        "duration_s": round(base * 5 + 0.08, 6), "ok": ok,
        "reason": None if ok else "timeout", "detail": None if ok else "no reply in 2.0 s",
        "confirmation": False, "local_ok": True, "interval_s": INTERVAL_S,
    }
    if kind == "icmp":
        if ok:
            samples = sorted(round(base + rng.random() * 0.002, 6) for _ in range(5))
            mean = sum(samples) / 5
            m["figures"] = {
                "sent": 5, "received": 5, "duplicates": 0, "loss_ratio": 0.0,
                "rtt_min_s": samples[0], "rtt_median_s": samples[2],
                "rtt_mean_s": round(mean, 6), "rtt_max_s": samples[-1],
                "rtt_stddev_s": round(math.sqrt(sum((s - mean) ** 2 for s in samples) / 5), 6),
                "jitter_s": 0.0004, "samples_s": samples}
        else:
            m["figures"] = {"sent": 5, "received": 0, "duplicates": 0, "loss_ratio": 1.0,
                            "jitter_s": 0.0004, "samples_s": []}
    elif kind == "tcp":
        m["figures"] = {"connect_s": round(base + rng.random() * 0.002, 6) if ok else None}
    elif kind == "http":
        m["figures"] = {
            "dns_s": 0.001, "connect_s": round(base, 6), "tls_s": round(base * 2, 6),
            "tls_version": "TLSv1.3", "tls_cert_not_after": "2027-03-01T00:00:00Z",
            "first_byte_s": round(base * 3, 6) if ok else None, "transfer_s": 0.002,
            "status_code": 200 if ok else None, "http_version": "HTTP/1.1",
            "redirects": 0, "final_url": f"https://www.example.org/{n}",
            "body_bytes": 5120, "body_matched": None} if ok else {}
    else:
        m["figures"] = {"query_s": round(base, 6), "rcode": "NOERROR",
                        "answers": ["192.0.2.53"], "transport": "udp"} if ok else {}
    return m


@dataclass
class ProbeLoad:
    probe_id: str
    mission: str
    token: str
    bodies: list[bytes] = field(default_factory=list)  # gzipped batches
    counts: list[int] = field(default_factory=list)
    pushes: list[tuple[str, bytes]] = field(default_factory=list)  # (group path, text)


def build_batches(load: ProbeLoad, checks: list[tuple[str, str, int]], results: int,
                  t_first: float, t_last: float, rng: random.Random, first_seq: int = 1,
                  outbox_id: str | None = None, pushes: int = 0) -> None:
    """`results` results round-robin over `checks` (id, kind, n), measurement times
    evenly from t_first to t_last (the newest never in the future), gzipped as the
    probe's reporter does (level 5), BATCH to a request; and the first `pushes` of them
    as pushgateway groups."""
    outbox_id = outbox_id or uuid.uuid4().hex
    step = (t_last - t_first) / max(results - 1, 1)
    ms = []
    for i in range(results):
        check_id, kind, n = checks[i % len(checks)]
        ok = rng.random() >= FAIL_RATIO
        ms.append(measurement(rng, first_seq + i, load.probe_id, load.mission, check_id,
                              kind, n, t_first + i * step, ok))
    for i in range(0, len(ms), BATCH):
        chunk = ms[i:i + BATCH]
        body = json.dumps({"protocol": 1, "probe_id": load.probe_id, "mission": load.mission,
                           "outbox_id": outbox_id, "backlog": max(0, len(ms) - i - BATCH),
                           "measurements": chunk})
        load.bodies.append(gzip.compress(body.encode(), compresslevel=5))
        load.counts.append(len(chunk))
    for m in ms[:pushes]:
        path = (f"/metrics/job/unhindered/instance/{load.probe_id}/check/{m['check_id']}")
        load.pushes.append((path, exposition(m).encode()))


_PUSHED = [  # (figure, metric) pushed to pushgateway, like our exposition's names
    ("rtt_min_s", "unhindered_check_rtt_min_seconds"),
    ("rtt_median_s", "unhindered_check_rtt_median_seconds"),
    ("rtt_mean_s", "unhindered_check_rtt_mean_seconds"),
    ("rtt_max_s", "unhindered_check_rtt_max_seconds"),
    ("rtt_stddev_s", "unhindered_check_rtt_stddev_seconds"),
    ("loss_ratio", "unhindered_check_loss_ratio"),
    ("jitter_s", "unhindered_check_jitter_seconds"),
    ("sent", "unhindered_check_echo_requests_sent"),
    ("received", "unhindered_check_echo_replies_received"),
    ("connect_s", "unhindered_check_connect_seconds"),
    ("tls_s", "unhindered_check_tls_handshake_seconds"),
    ("first_byte_s", "unhindered_check_http_first_byte_seconds"),
    ("status_code", "unhindered_check_http_status_code"),
    ("query_s", "unhindered_check_dns_query_seconds"),
]


def exposition(m: dict[str, Any]) -> str:
    """The result's numbers as a pushgateway group (text exposition format 0.0.4)."""
    labels = f'{{mission="{m["mission"]}",kind="{m["kind"]}"}}'
    started = datetime.fromisoformat(m["started_at"].replace("Z", "+00:00")).timestamp()
    values = [("unhindered_check_success", 1 if m["ok"] else 0),
              ("unhindered_check_duration_seconds", m["duration_s"]),
              ("unhindered_check_last_measurement_timestamp_seconds", started)]
    values += [(name, m["figures"][key]) for key, name in _PUSHED
               if m["figures"].get(key) is not None]
    lines = []
    for name, value in values:
        lines.append(f"# TYPE {name} gauge\n{name}{labels} {value}\n")
    return "".join(lines)


# --- clients -----------------------------------------------------------------------------


@dataclass
class RunFigures:
    label: str
    requests: int = 0
    results: int = 0
    stored: int = 0
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    cut_short: bool = False

    @property
    def per_s(self) -> float:
        return self.results / self.wall_s if self.wall_s else 0.0


async def _drive(port: int, loads: list[ProbeLoad], push: bool, bound_s: float,
                 figures: RunFigures) -> None:
    import aiohttp

    deadline = time.monotonic() + bound_s
    connector = aiohttp.TCPConnector(limit=len(loads))
    timeout = aiohttp.ClientTimeout(total=60)
    base = f"http://{LOOPBACK}:{port}"
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def probe(load: ProbeLoad) -> None:
            items = load.pushes if push else list(zip(load.bodies, load.counts, strict=True))
            for item in items:
                if time.monotonic() > deadline:
                    figures.cut_short = True
                    return
                started = time.perf_counter()
                if push:
                    path, text = item
                    async with session.put(base + path, data=text, headers={
                            "Content-Type": "text/plain; version=0.0.4"}) as answer:
                        await answer.read()
                        ok = answer.status in (200, 202)
                    count = 1
                else:
                    body, count = item
                    async with session.post(base + "/api/v1/results", data=body, headers={
                            "Authorization": f"Bearer {load.token}",
                            "Content-Type": "application/json",
                            "Content-Encoding": "gzip"}) as answer:
                        raw = await answer.read()
                        ok = answer.status == 200
                        if ok:
                            figures.stored += json.loads(raw)["stored"]
                figures.latencies.append(time.perf_counter() - started)
                figures.requests += 1
                if not ok:
                    figures.failures.append(f"{answer.status}: {raw[:200]!r}" if not push
                                            else f"{answer.status}")
                    return
                figures.results += count

        started = time.perf_counter()
        await asyncio.gather(*(probe(load) for load in loads))
        figures.wall_s = time.perf_counter() - started


def drive(server: Server, loads: list[ProbeLoad], push: bool, bound_s: float,
          label: str) -> RunFigures:
    figures = RunFigures(label)
    before, client_before = proc_figures(server.pid), os.times()
    asyncio.run(_drive(server.port, loads, push, bound_s, figures))
    after, client_after = proc_figures(server.pid), os.times()
    figures.server_cpu_s = after.cpu_s - before.cpu_s
    figures.client_cpu_s = ((client_after.user + client_after.system)
                            - (client_before.user + client_before.system))
    if figures.failures:
        raise BenchError(f"{label}: {len(figures.failures)} request(s) refused, first "
                         f"{figures.failures[0]}; server log: {server.log_tail()}")
    return figures


# --- part: ingest ------------------------------------------------------------------------


def ingest_codes() -> list[str]:
    return ["FRA", "KEN", "BRA", "IND", "JPN", "NGA", "CAN", "MEX", "EGY", "AUS"]


def ingest_loads(tokens: dict[str, str], per_probe: int, pushes: int) -> list[ProbeLoad]:
    now = time.time()
    rng = random.Random(7)
    loads = []
    for mission in ingest_codes()[:PROBES]:
        probe_id = f"{mission.lower()}-1"
        load = ProbeLoad(probe_id, mission, tokens.get(probe_id, ""))
        checks = [(f"{KINDS[c]}-{c:02d}", KINDS[c], c) for c in range(CHECKS_PER_PROBE)]
        # The newest 30 s of measurement time: live traffic, no silence ever detected.
        build_batches(load, checks, per_probe, now - 30.0, now - 0.5, rng, pushes=pushes)
        loads.append(load)
    return loads


def ingest_run(kind: str, workdir: Path, results: int,
               source: Path = REPO) -> tuple[RunFigures | None, str]:
    label = {"sqlite": "collector, SQLite", "postgresql": "collector, PostgreSQL"}[kind]
    with database(kind, workdir) as url:
        if url is None:
            return None, f"{label}: PostgreSQL unreachable at {POSTGRES_URL}"
        probes = [(f"{m.lower()}-1", m) for m in ingest_codes()[:PROBES]]
        tokens = register_cli(url, probes, workdir, source)
        loads = ingest_loads(tokens, results // PROBES, pushes=0)
        server = collector_server(url, workdir, source)
        try:
            server.start()
            figures = drive(server, loads, push=False, bound_s=TIME_BOUND_S, label=label)
        finally:
            server.stop()
        if figures.stored != figures.results:
            raise BenchError(f"{label}: {figures.results} results acknowledged but "
                             f"{figures.stored} stored")
        return figures, ""


def push_run(workdir: Path, results: int) -> RunFigures | None:
    if ensure_programs("prometheus-pushgateway"):
        return None
    pushes = min(results, PUSH_CAP) // PROBES
    loads = ingest_loads({}, pushes, pushes=pushes)
    server = pushgateway_server(workdir)
    try:
        server.start()
        figures = drive(server, loads, push=True, bound_s=PUSH_TIME_BOUND_S,
                        label="pushgateway, PUT per group")
        status, body, _ = http_get(server.port, "/metrics")
        groups = body.count(b"\nunhindered_check_success{")
        if status != 200 or groups != PROBES * CHECKS_PER_PROBE:
            raise BenchError(f"pushgateway holds {groups} groups, expected "
                             f"{PROBES * CHECKS_PER_PROBE}")
    finally:
        server.stop()
    return figures


def _ingest_row(f: RunFigures, unit: str) -> list[str]:
    return [
        f.label, f"{f.results:,}", f"{f.requests:,}", fmt(f.wall_s, 2),
        f"{f.per_s:,.0f} {unit}", fmt(f.server_cpu_s, 2),
        fmt(1000 * f.server_cpu_s / f.results if f.results else None, 3),
        fmt(1000 * median(f.latencies), 1), fmt(1000 * quantile(f.latencies, 0.99), 1),
        fmt(f.client_cpu_s, 2),
    ]


def run_ingest(results: int = RESULTS) -> PartResult:
    part = PartResult("ingest")
    runs: dict[str, RunFigures | None] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="uh-bench-ingest-") as tmp:
        workdir = Path(tmp)
        for kind in ("sqlite", "postgresql"):
            runs[kind], note = ingest_run(kind, workdir, results)
            if note:
                notes.append(note)
        runs["push"] = push_run(workdir, results)
        if runs["push"] is None:
            notes.append("pushgateway: prometheus-pushgateway is missing (Debian package "
                         "prometheus-pushgateway; run as root to have it installed)")
    rows = []
    for key, unit in (("sqlite", "results/s"), ("postgresql", "results/s"),
                      ("push", "groups/s")):
        if runs[key] is not None:
            rows.append(_ingest_row(runs[key], unit))
    headers = ["server", "results", "requests", "wall s", "rate", "server CPU s",
               "CPU s/1000 results", "request p50 ms", "p99 ms", "client CPU s"]
    text = (f"Ingest: {PROBES} probes x {CHECKS_PER_PROBE} checks, one client task per "
            f"probe, gzipped batches of {BATCH} (collector) or one PUT per result to its "
            f"(probe, check) group (pushgateway)\n" + table(headers, rows))
    for key in ("sqlite", "postgresql", "push"):
        if runs[key] is not None and runs[key].cut_short:
            text += (f"\n{runs[key].label}: stopped by the time bound "
                     f"({TIME_BOUND_S if key != 'push' else PUSH_TIME_BOUND_S:g} s)")
    if notes:
        text += "\n" + "\n".join(notes)
    part.text = text

    push = runs["push"]
    sqlite_run = runs["sqlite"]
    assert sqlite_run is not None
    part.goals.append(Goal(
        "ingest results/s on SQLite >= 20,000", f"{sqlite_run.per_s:,.0f}/s", "20,000/s",
        f"{sqlite_run.per_s / 20_000:.2f}x", sqlite_run.per_s >= 20_000))
    for key in ("sqlite", "postgresql"):
        ours = runs[key]
        name = f"ingest results/s ({key}) >= 10x pushgateway groups/s"
        if ours is None or push is None:
            part.goals.append(Goal(name, "n/a", "n/a", "", None))
            continue
        ratio = ours.per_s / push.per_s
        part.goals.append(Goal(name, f"{ours.per_s:,.0f}/s", f"{push.per_s:,.0f}/s",
                               f"{ratio:.2f}x", ratio >= 10))
    return part


# --- part: render ------------------------------------------------------------------------


def render_codes(count: int) -> list[str]:
    """The shipped inventory's codes (193 Member States, 2 Observer States), then
    organisation-style codes (valid mission codes not in the inventory)."""
    from collector.inventory.sites import default_inventory

    codes = sorted(m.code for m in default_inventory().missions)
    codes += [f"ORG-{i:03d}" for i in range(1, count - len(codes) + 1)]
    return codes[:count]


def post_sequential(port: int, loads: list[ProbeLoad], bound_s: float = 120.0) -> int:
    """Feeds each probe's batches over one keep-alive connection; returns results stored."""
    deadline = time.monotonic() + bound_s
    stored = 0
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    try:
        for load in loads:
            for body in load.bodies:
                if time.monotonic() > deadline:
                    raise BenchError(f"feeding the collector took over {bound_s:g} s")
                conn.request("POST", "/api/v1/results", body=body, headers={
                    "Authorization": f"Bearer {load.token}",
                    "Content-Type": "application/json", "Content-Encoding": "gzip"})
                answer = conn.getresponse()
                raw = answer.read()
                if answer.status != 200:
                    raise BenchError(f"ingest answered {answer.status}: {raw[:300]!r}")
                stored += json.loads(raw)["stored"]
    finally:
        conn.close()
    return stored


def round_loads(probes: list[tuple[str, str]], tokens: dict[str, str], first_check: int,
                checks: int, rounds: int, seqs: dict[str, int], outboxes: dict[str, str],
                start: float, end: float) -> list[ProbeLoad]:
    """`rounds` rounds of checks first_check .. first_check+checks-1 of every mission,
    measured between `start` and `end`, as each probe would batch them."""
    rng = random.Random(first_check + seqs[probes[0][0]])
    loads = []
    for probe_id, mission in probes:
        load = ProbeLoad(probe_id, mission, tokens[probe_id])
        ids = [(f"{KINDS[c % len(KINDS)]}-{c:03d}", KINDS[c % len(KINDS)], c)
               for c in range(first_check, first_check + checks)]
        n = checks * rounds
        build_batches(load, ids, n, start, end, rng, first_seq=seqs[probe_id],
                      outbox_id=outboxes[probe_id])
        seqs[probe_id] += n
        loads.append(load)
    return loads


def feed_checks(port: int, probes: list[tuple[str, str]], tokens: dict[str, str],
                first_check: int, checks: int, rounds: int, seqs: dict[str, int],
                outboxes: dict[str, str]) -> int:
    now = time.time()
    return post_sequential(port, round_loads(probes, tokens, first_check, checks, rounds,
                                             seqs, outboxes, now - 20.0, now - 1.0))


class LiveFeed:
    """Live traffic while scraping: every check gets a new round each LIVE_CYCLE_S, as
    probes at that interval send them (one batch per probe, spread over the cycle)."""

    def __init__(self, port: int, probes: list[tuple[str, str]], tokens: dict[str, str],
                 checks: int, seqs: dict[str, int], outboxes: dict[str, str]) -> None:
        self.args = (probes, tokens, 0, checks, 1, seqs, outboxes)
        self.port = port
        self.stopped = threading.Event()
        self.rounds = 0
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LiveFeed:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                cycle_start = time.time()
                # Measurement times after the previous cycle's, before the posts.
                loads = round_loads(*self.args, cycle_start - 1.0, cycle_start - 0.5)
                for i, load in enumerate(loads):
                    if self.stopped.is_set():
                        return
                    post_sequential(self.port, [load])
                    pause = cycle_start + LIVE_CYCLE_S * (i + 1) / len(loads) - time.time()
                    if pause > 0:
                        self.stopped.wait(pause)
                self.rounds += 1
        except Exception as exc:  # reported by stop(): a feed that fails fails the part
            self.error = exc

    def stop(self) -> int:
        self.stopped.set()
        self.thread.join(30)
        if self.error is not None:
            raise BenchError(f"the live feed failed: {self.error!r}")
        return self.rounds


LAG_SCRIPT = r"""
import http.client, json, sys, threading, time
port, period, bound = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
samples = []
conn.request("GET", "/"); conn.getresponse().read()
print("ready", flush=True)
end = time.monotonic() + bound
next_at = time.monotonic()
while not stop.is_set() and time.monotonic() < end and len(samples) < 20000:
    at = time.time(); t0 = time.perf_counter()
    conn.request("GET", "/"); answer = conn.getresponse(); answer.read()
    samples.append((at, time.perf_counter() - t0, answer.status))
    next_at += period
    pause = next_at - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    else:
        next_at = time.monotonic()
conn.close()
print(json.dumps(samples), flush=True)
"""


class LagProbe:
    """A separate process timing `GET /` every LAG_PERIOD_S, until stopped (at most
    `bound_s`): its own loop and GIL, so the scrapes here cannot delay its clock."""

    def __init__(self, port: int, bound_s: float = 90.0) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-c", LAG_SCRIPT, str(port), str(LAG_PERIOD_S), str(bound_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.kill()
            raise BenchError("the lag probe did not start")

    def stop(self) -> list[tuple[float, float, int]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(10)
        samples = [tuple(s) for s in json.loads(out)]
        bad = [s for s in samples if s[2] != 200]
        if bad:
            raise BenchError(f"GET / answered {bad[0][2]} {len(bad)} times")
        return samples  # type: ignore[return-value]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Scrape:
    started: float  # time.time()
    ended: float
    seconds: float
    size: int
    series: int
    check_series: int
    encoding: str


def scrape(port: int) -> Scrape:
    started, t0 = time.time(), time.perf_counter()
    status, body, headers = http_get(port, "/metrics", timeout=30, headers={
        "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,"
                  "text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
        "Accept-Encoding": "gzip"})  # what Prometheus sends
    seconds, ended = time.perf_counter() - t0, time.time()
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    encoding = headers.get("Content-Encoding", "identity")
    text = gzip.decompress(body) if encoding == "gzip" else body
    lines = [ln for ln in text.split(b"\n") if ln and not ln.startswith(b"#")]
    return Scrape(started, ended, seconds, len(body), len(lines),
                  sum(ln.startswith(b"unhindered_check_") for ln in lines), encoding)


@dataclass
class Stage:
    name: str
    missions: int
    checks: int
    first: Scrape | None = None
    fresh: list[Scrape] = field(default_factory=list)
    cached: list[Scrape] = field(default_factory=list)
    idle_lag: list[float] = field(default_factory=list)
    busy_lag: list[float] = field(default_factory=list)  # a fresh render in flight
    phase_lag: list[float] = field(default_factory=list)  # the whole scraping phase
    live: list[Scrape] = field(default_factory=list)  # scrapes during live traffic
    live_lag: list[float] = field(default_factory=list)
    live_rounds: int = 0
    renders_ms: list[float] = field(default_factory=list)  # the collector's own figure
    live_renders_ms: list[float] = field(default_factory=list)
    own_lag: dict[str, tuple[int, int]] = field(default_factory=dict)  # phase: (>20 ms, all)
    gc_max_ms: float = 0.0
    feed_s: float = 0.0
    collector_rss_mib: float = 0.0


def own_figures(port: int) -> dict[str, float]:
    """The collector's own figures about itself: its render time, its loop-lag histogram
    and its garbage collector's pauses (cumulative)."""
    _, body, headers = http_get(port, "/metrics", timeout=30, headers={"Accept-Encoding": "gzip"})
    text = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
    figures: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line.startswith(("unhindered_metrics_render_seconds ",
                            'unhindered_event_loop_lag_seconds_bucket{le="0.02"}',
                            "unhindered_event_loop_lag_seconds_count",
                            "unhindered_gc_pause_seconds_bucket")):
            name, value = line.rsplit(" ", 1)
            figures[name] = float(value)
    return figures


def lag_over_20ms(before: dict[str, float], after: dict[str, float]) -> tuple[int, int]:
    """(wake-ups later than 20 ms, all wake-ups) of the collector's loop-lag probe."""
    count = "unhindered_event_loop_lag_seconds_count"
    within = 'unhindered_event_loop_lag_seconds_bucket{le="0.02"}'
    total = int(after[count] - before[count])
    return total - int(after[within] - before[within]), total


def gc_max_ms(before: dict[str, float], after: dict[str, float]) -> float:
    """An upper bound of the longest garbage-collector pause between the two readings:
    per generation, the smallest bucket bound that holds every pause since `before`."""
    gained: dict[str, list[tuple[float, float]]] = {}
    for name, value in after.items():
        if name.startswith("unhindered_gc_pause_seconds_bucket"):
            generation = name.split('generation="')[1].split('"')[0]
            le = name.split('le="')[1].split('"')[0]
            gained.setdefault(generation, []).append(
                (float("inf") if le == "+Inf" else float(le), value - before.get(name, 0.0)))
    longest = 0.0
    for buckets in gained.values():
        buckets.sort()
        total = buckets[-1][1]
        if total > 0:
            longest = max(longest, next(le for le, n in buckets if n == total) * 1000)
    return longest


def _overlapping(samples, windows) -> list[float]:
    return [latency for at, latency, _ in samples
            if any(at <= end and at + latency >= start for start, end in windows)]


def measure_stage(server: Server, stage: Stage, scrapes: int, live: LiveFeed | None = None
                  ) -> None:
    # The reference: the loop's latency with nothing but the background jobs running.
    probe = LagProbe(server.port)
    try:
        time.sleep(LAG_IDLE_S)
        stage.idle_lag = [s[1] for s in probe.stop()]
    finally:
        probe.kill()
    time.sleep(SCRAPE_GAP_S)
    probe = LagProbe(server.port)
    windows = []
    try:
        phase_start = time.time()
        stage.first = scrape(server.port)
        own_before = own_figures(server.port)
        windows.append((stage.first.started, stage.first.ended))
        for _ in range(scrapes):
            time.sleep(SCRAPE_GAP_S)
            fresh = scrape(server.port)
            stage.fresh.append(fresh)
            windows.append((fresh.started, fresh.ended))
            stage.cached.append(scrape(server.port))  # within the 1 s cache
            stage.renders_ms.append(own_figures(server.port)[
                "unhindered_metrics_render_seconds"] * 1000)
        phase_end = time.time()
        samples = probe.stop()
    finally:
        probe.kill()
    own_after = own_figures(server.port)
    stage.own_lag["unchanged data"] = lag_over_20ms(own_before, own_after)
    stage.phase_lag = [lat for at, lat, _ in samples if phase_start <= at <= phase_end]
    stage.busy_lag = _overlapping(samples, windows)

    if live is not None:
        # Live traffic: the exposition is rendered again and again with every check changed.
        live.start()
        time.sleep(LIVE_CYCLE_S)  # a whole cycle in, every check has a new round
        probe = LagProbe(server.port)
        own_before = own_figures(server.port)
        windows = []
        try:
            for _ in range(LIVE_SCRAPES):
                time.sleep(SCRAPE_GAP_S)
                fresh = scrape(server.port)
                stage.live.append(fresh)
                windows.append((fresh.started, fresh.ended))
                stage.live_renders_ms.append(own_figures(server.port)[
                    "unhindered_metrics_render_seconds"] * 1000)
            samples = probe.stop()
        finally:
            probe.kill()
            stage.live_rounds = live.stop()
        own_after = own_figures(server.port)
        stage.own_lag["live traffic"] = lag_over_20ms(own_before, own_after)
        stage.live_lag = [lat for _, lat, _ in samples]
        stage.gc_max_ms = gc_max_ms(own_before, own_after)
    stage.collector_rss_mib = proc_figures(server.pid).rss_mib


def run_render(scrapes: int = SCRAPES, missions: int = MISSIONS) -> PartResult:
    part = PartResult("render")
    stages: list[Stage] = []
    with tempfile.TemporaryDirectory(prefix="uh-bench-render-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'c.sqlite'}"
        probes = [(f"{code.lower()}-1", code) for code in render_codes(missions)]
        tokens = register_in_process(url, probes)
        seqs = {probe_id: 1 for probe_id, _ in probes}
        outboxes = {probe_id: uuid.uuid4().hex for probe_id, _ in probes}
        server = collector_server(url, workdir)
        try:
            server.start()
            started = time.monotonic()
            feed_checks(server.port, probes, tokens, 0, RENDER_CHECKS, 2, seqs, outboxes)
            stage = Stage(f"{missions} x {RENDER_CHECKS}", missions, missions * RENDER_CHECKS,
                          feed_s=time.monotonic() - started)
            measure_stage(server, stage, scrapes, LiveFeed(
                server.port, probes, tokens, RENDER_CHECKS, seqs, outboxes))
            stages.append(stage)

            # How many checks ~100,000 series take, from what one check exports here.
            assert stage.first is not None
            per_check = stage.first.check_series / stage.checks
            other = stage.first.series - stage.first.check_series
            total_checks = math.ceil((TARGET_SERIES - other) / per_check)
            per_mission = math.ceil(total_checks / missions)
            started = time.monotonic()
            feed_checks(server.port, probes, tokens, RENDER_CHECKS,
                        per_mission - RENDER_CHECKS, 2, seqs, outboxes)
            big = Stage(f"{missions} x {per_mission}", missions, missions * per_mission,
                        feed_s=time.monotonic() - started)
            measure_stage(server, big, scrapes, LiveFeed(
                server.port, probes, tokens, per_mission, seqs, outboxes))
            stages.append(big)
        finally:
            server.stop()

    rows = []
    for s in stages:
        assert s.first is not None
        for phase, scrapes_of, renders in (("unchanged data", s.fresh, s.renders_ms),
                                           ("live traffic", s.live, s.live_renders_ms)):
            served = [x.seconds * 1000 for x in scrapes_of]
            rows.append([
                s.name, f"{s.checks:,}", f"{s.first.series:,}",
                f"{s.first.check_series / s.checks:.1f}", f"{s.first.size / 2**20:.2f}",
                phase, fmt(s.first.seconds * 1000, 1) if phase == "unchanged data" else "-",
                str(len(served)), fmt(median(served), 1), fmt(quantile(served, 0.95), 1),
                fmt(max(served), 1), fmt(median(renders), 1), fmt(max(renders), 1),
                f"{s.collector_rss_mib:.0f}", fmt(s.feed_s, 1)])
    headers = ["missions x checks", "checks", "series", "per check", "size MiB", "while",
               "first ms", "scrapes", "served median ms", "p95 ms", "max ms",
               "render median ms", "render max ms", "collector RSS MiB", "feed s"]
    lag_rows = []
    for s in stages:
        for label, values, own in (
                ("no scrape", s.idle_lag, None),
                ("scraping, unchanged data", s.phase_lag, s.own_lag.get("unchanged data")),
                ("overlapping a scrape", s.busy_lag, None),
                ("scraping, live traffic", s.live_lag, s.own_lag.get("live traffic"))):
            ms = [v * 1000 for v in values]
            lag_rows.append([s.name, label, str(len(ms)), fmt(quantile(ms, 0.5), 2),
                             fmt(quantile(ms, 0.99), 2), fmt(max(ms) if ms else None, 2),
                             f"{own[0]} of {own[1]}" if own else "-"])
    part.text = (
        f"/metrics: a first scrape (waits for a render), then {scrapes} scrapes "
        f"{SCRAPE_GAP_S:g} s apart with no new data, then {LIVE_SCRAPES} with live traffic "
        f"(every check a new round each {LIVE_CYCLE_S:g} s, one batch per probe). 'served' "
        "is what the scraper waited; 'render' is the collector's own "
        "unhindered_metrics_render_seconds, the newest background render.\n"
        + table(headers, rows)
        + f"\n\nEvent loop: latency of GET / every {LAG_PERIOD_S * 1000:g} ms from a "
        "separate process; 'own' counts the collector's own loop-lag probe "
        "(unhindered_event_loop_lag_seconds) wake-ups later than 20 ms\n"
        + table(["missions x checks", "while", "requests", "p50 ms", "p99 ms", "max ms",
                 "own > 20 ms"], lag_rows)
        + "\n\nLongest garbage-collector pause during live traffic (bucket bound): "
        + ", ".join(f"{s.name}: <= {s.gc_max_ms:g} ms" for s in stages))

    for s in stages:
        assert s.first is not None
        served = [x.seconds * 1000 for x in [*s.fresh, *s.live]]
        p95 = quantile(served, 0.95)
        worst = max(p95, s.first.seconds * 1000)
        part.goals.append(Goal(
            f"/metrics served <= 100 ms, {s.first.series:,} series (first and p95)",
            f"{s.first.seconds * 1000:.0f} / {p95:.0f} ms", f"{SERVE_GOAL_MS:.0f} ms",
            f"{worst / SERVE_GOAL_MS:.2f}x", worst <= SERVE_GOAL_MS))
        lag_max = max([*s.phase_lag, *s.live_lag]) * 1000
        idle_max = max(s.idle_lag) * 1000
        part.goals.append(Goal(
            f"loop blocked <= 20 ms while scraping, {s.first.series:,} series (GET / max)",
            f"{lag_max:.1f} ms", f"{LAG_GOAL_MS:.0f} ms (idle max {idle_max:.1f} ms)",
            f"{lag_max / LAG_GOAL_MS:.2f}x", lag_max <= LAG_GOAL_MS))
    return part


if __name__ == "__main__":  # a part alone, without run.py's header: for profiling
    what = sys.argv[1] if len(sys.argv) > 1 else "ingest"
    result = run_ingest() if what == "ingest" else run_render()
    print(result.text)
    print(table(["goal", "ours", "reference", "ratio", "met"],
                [[g.name, g.ours, g.reference, g.ratio, str(g.met)] for g in result.goals]))
