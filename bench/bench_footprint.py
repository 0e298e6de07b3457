"""Part 2, footprint: the probe's memory and CPU per 1,000 ICMP measurements, 10 targets.

The real service (`python -m probes run`) runs in a mission namespace with 10 icmp checks
(interval 1 s, the smallest allowed) and pushes its results over HTTP to a real collector
in the lab's centre, with the default batching. It runs twice: count 1 (one echo request
per round, so one measurement is one request, one result and one row reported) and count
5 (five requests 20 ms apart per round). After a warm-up, CPU time (utime + stime from
/proc/PID/stat) is read at the start and the end of a fixed window, and the echo replies
measured in that window are counted from what the collector stored; RSS (VmRSS) and its
peak (VmHWM) are read at the end, and once right after the probe logged that it started.

Side by side, prometheus-blackbox-exporter in the same namespace is sent /probe requests
(one echo request each) for the same 10 targets at the probe's count-1 rate, 10 a second.

Then, to show where the probe's memory goes, a fresh interpreter imports the probe's
modules one after another and prints the RSS after each.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.blackbox import PROGRAM as BLACKBOX
from bench.blackbox import Blackbox
from bench.common import (
    PYTHON,
    BenchError,
    Goal,
    PartResult,
    ProcFigures,
    ensure_programs,
    exec_pid,
    fmt,
    icmp_check,
    proc_figures,
    table,
    write_probe_config,
)
from tests.support.lab.netns import Lab
from tests.support.spine import Collector

TARGETS = 10
INTERVAL_S = 1.0  # the smallest interval_s a check accepts
BATCHED_COUNT = 5  # the second probe run: echo requests per round
WARMUP_S = 5.0  # start-up and the random first-round offsets stay out of the window
RSS_GOAL_MIB = 48.0

# Each step imports what the probe imports, in an order that puts each heavy dependency
# on its own line; a step that fails (a module being renamed) is reported, not fatal.
IMPORT_STEPS: list[tuple[str, str]] = [
    ("pydantic (import)", "import pydantic; from pydantic import BaseModel"),
    # pydantic-core maps most of itself, and looks for plugins, at the first model built.
    ("pydantic (first model built)", "class _First(BaseModel):\n    x: int"),
    ("yaml", "import yaml"),
    ("unhindered.measurement", "import unhindered.measurement"),
    ("ssl (tcp/http checks, HTTPS)", "import ssl"),
    ("dnspython (unhindered.checks.dns)", "import dns.asyncquery, dns.message, dns.rdata"),
    ("http.client (probes.transport)", "import http.client"),
    ("prometheus_client (probes.selfmetrics)", "import prometheus_client"),
    ("unhindered.probing, probes.config", "import unhindered.probing, probes.config"),
    ("probes.app (the rest)", "import probes.app"),
    # Only when a TLS check runs (tcp with tls, https):
    ("cryptography (unhindered.probing.tls, on first use)", "from cryptography import x509"),
]
IMPORT_SCRIPT = """
import json, re, sys
def rss():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmRSS:\\s+(\\d+)", status).group(1))
out = [["python", rss(), ""]]
for name, code in json.loads(sys.argv[1]):
    try:
        exec(code)
        out.append([name, rss(), ""])
    except Exception as exc:
        out.append([name, rss(), f"{type(exc).__name__}: {exc}"])
print(json.dumps(out))
"""


@dataclass
class Window:
    label: str
    idle: ProcFigures  # right after start
    start: ProcFigures
    end: ProcFigures
    seconds: float
    sent: int  # echo requests in the window
    received: int

    @property
    def cpu_s(self) -> float:
        return self.end.cpu_s - self.start.cpu_s

    @property
    def user_s(self) -> float:
        return self.end.user_s - self.start.user_s

    @property
    def sys_s(self) -> float:
        return self.end.sys_s - self.start.sys_s

    def cpu_per_1000(self) -> float | None:
        return self.cpu_s / self.received * 1000 if self.received else None


def outbox_last_seq(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
    finally:
        db.close()
    return row[0] if row else 0


def outbox_acked(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        acked = db.execute("SELECT value FROM meta WHERE key='acked_through'").fetchone()
    finally:
        db.close()
    return int(acked[0]) if acked else 0


def wait_for_log(log: Path, text: str, proc: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"the probe did not log {text!r}: {log.read_text()[-2000:]}")
        time.sleep(0.02)


def run_probe(lab: Lab, mission: Any, collector: Collector, workdir: Path, count: int,
              seconds: float) -> Window:
    probe_id = f"fra-c{count}"
    token_file = collector.register(mission.code, probe_id)
    checks = [icmp_check(f"t{t.index}", t.ipv4, count=count, packet_interval_s=0.02,
                         interval_s=INTERVAL_S, timeout_s=1) for t in lab.targets]
    config = write_probe_config(
        workdir / f"{probe_id}.yaml", mission.code, checks, probe_id=probe_id,
        collector={"urls": [collector.url], "token_file": str(token_file)})
    outbox = config.with_suffix(".outbox.sqlite")
    log = workdir / f"{probe_id}.log"
    with log.open("w") as out:
        proc = lab.popen(mission.name, [PYTHON, "-m", "probes", "run", "-c", str(config)],
                         stdout=out, stderr=subprocess.STDOUT)
    started = time.monotonic()
    pid = exec_pid(proc, "probes")
    wait_for_log(log, " started: ", proc, 30)
    idle = proc_figures(pid)
    time.sleep(max(0.0, started + WARMUP_S - time.monotonic()))
    first_seq, start = outbox_last_seq(outbox), proc_figures(pid)
    window_started = time.monotonic()
    time.sleep(seconds)
    last_seq, end = outbox_last_seq(outbox), proc_figures(pid)
    window = time.monotonic() - window_started
    # The window's results must have reached the collector: that is the reporting we pay for.
    deadline = time.monotonic() + 30
    while outbox_acked(outbox) < last_seq:
        if time.monotonic() > deadline:
            raise BenchError(f"{probe_id}: results up to seq {last_seq} not acknowledged")
        time.sleep(0.2)
    proc.terminate()
    proc.wait(15)
    sent = received = 0
    for row in collector.results(probe_id):
        if first_seq < row.seq <= last_seq:
            figures = json.loads(row.figures)
            sent += figures["sent"]
            received += figures["received"]
    label = "probe, count 1" if count == 1 else f"probe, count {count} (per round)"
    return Window(label, idle, start, end, window, sent, received)


def run_blackbox(lab: Lab, mission: Any, workdir: Path, seconds: float) -> Window:
    blackbox = Blackbox(lab, mission, workdir)
    try:
        idle = proc_figures(blackbox.pid)
        addresses = [t.ipv4 for t in lab.targets]
        gap = INTERVAL_S / len(addresses)  # the probe's rate at count 1: 10 a second
        started = time.monotonic()
        next_at, i = started, 0
        sent = received = 0
        start: ProcFigures | None = None
        window_started = 0.0
        while True:
            now = time.monotonic()
            if start is None and now >= started + WARMUP_S:
                start, window_started = proc_figures(blackbox.pid), now
                sent = received = 0
            if start is not None and now >= window_started + seconds:
                break
            time.sleep(max(0.0, next_at - now))
            next_at += gap
            rtt = blackbox.probe(addresses[i % len(addresses)])
            i += 1
            sent += 1
            received += rtt is not None
        end = proc_figures(blackbox.pid)
        window = time.monotonic() - window_started
    finally:
        blackbox.stop()
    assert start is not None
    return Window("blackbox_exporter", idle, start, end, window, sent, received)


def import_breakdown(lab: Lab, mission: Any) -> list[list[str]]:
    """RSS after each import step, in a fresh interpreter in the mission namespace."""
    done = lab.run(mission.name, [PYTHON, "-c", IMPORT_SCRIPT, json.dumps(IMPORT_STEPS)])
    if done.returncode != 0:
        raise BenchError(f"import breakdown failed: {done.stderr[-2000:]}")
    rows, previous = [], 0
    for name, rss_kib, error in json.loads(done.stdout):
        rows.append([name, f"{rss_kib / 1024:.1f}", f"+{(rss_kib - previous) / 1024:.1f}",
                     error])
        previous = rss_kib
    return rows


def run(seconds: float = 40.0) -> PartResult:
    result = PartResult("footprint")
    missing = ensure_programs(BLACKBOX)
    workdir = Path(tempfile.mkdtemp(prefix="uh-bench-footprint-"))
    windows: list[Window] = []
    lab = Lab()
    try:
        mission = lab.add_mission("FRA")
        for _ in range(TARGETS):
            lab.add_target(delay_s=0.0)
        lab.start_responders(tcp_ports=())
        collector = Collector(lab, workdir)
        collector.start()
        try:
            windows.append(run_probe(lab, mission, collector, workdir, 1, seconds))
            windows.append(run_probe(lab, mission, collector, workdir, BATCHED_COUNT,
                                     seconds))
        finally:
            collector.stop()
        if BLACKBOX not in missing:
            windows.append(run_blackbox(lab, mission, workdir, seconds))
        imports = import_breakdown(lab, mission)
    finally:
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [[w.label, f"{w.seconds:.0f}", f"{w.received}/{w.sent}",
             f"{w.cpu_s:.2f} ({w.user_s:.2f}+{w.sys_s:.2f})",
             fmt(w.cpu_per_1000()), f"{w.idle.rss_mib:.1f}",
             f"{w.end.rss_mib:.1f} ({w.end.anon_kib / 1024:.1f}+{w.end.file_kib / 1024:.1f})",
             f"{w.end.hwm_mib:.1f}"] for w in windows]
    result.text = (
        f"Footprint: {TARGETS} targets, HTTP reporting to a collector (probe)\n"
        + table(["process", "window s", "replies", "CPU s (user+sys)", "CPU s/1000 replies",
                 "RSS idle MiB", "RSS end MiB (anon+file)", "RSS peak MiB"], rows)
        + "\n\nWhere the probe's memory goes (RSS of a fresh interpreter after each import)\n"
        + table(["import", "RSS MiB", "added", "error"], imports))
    if missing:
        result.text += f"\nnot measured, missing: {', '.join(missing)}"

    ours = windows[0]  # count 1: one request per round, as blackbox sends one per /probe
    ours_cpu = ours.cpu_per_1000()
    theirs = next((w for w in windows if w.label == "blackbox_exporter"), None)
    theirs_cpu = None if theirs is None else theirs.cpu_per_1000()
    if ours_cpu is not None and theirs_cpu:
        result.goals.append(Goal(
            "CPU per 1,000 ICMP measurements <= 1x blackbox_exporter",
            f"{ours_cpu:.3f} s", f"{theirs_cpu:.3f} s", f"{ours_cpu / theirs_cpu:.2f}x",
            ours_cpu <= theirs_cpu))
    else:
        result.goals.append(Goal("CPU per 1,000 ICMP measurements <= 1x blackbox_exporter",
                                 fmt(ours_cpu), "n/a", "n/a", None))
    batched = windows[1].cpu_per_1000()
    if theirs_cpu and batched is not None:
        result.goals.append(Goal(
            f"CPU per 1,000 replies at count {BATCHED_COUNT} vs blackbox (no goal)",
            f"{batched:.3f} s", f"{theirs_cpu:.3f} s", f"{batched / theirs_cpu:.2f}x", None))
    peak = max(w.end.hwm_mib for w in windows if w.label.startswith("probe"))
    result.goals.append(Goal(
        f"probe RSS <= {RSS_GOAL_MIB:.0f} MiB with HTTP reporting (peak)", f"{peak:.1f} MiB",
        f"{RSS_GOAL_MIB:.0f} MiB", f"{peak / RSS_GOAL_MIB:.2f}x", peak <= RSS_GOAL_MIB))
    if theirs is not None:
        result.goals.append(Goal(
            "probe RSS vs blackbox_exporter (peak, no goal)", f"{peak:.1f} MiB",
            f"{theirs.end.hwm_mib:.1f} MiB", f"{peak / theirs.end.hwm_mib:.2f}x", None))
    return result
