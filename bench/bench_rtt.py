"""Part 1, RTT accuracy: |measured - injected| at injected delays of 0, 20 and 150 ms.

The lab's ICMP responder adds each target's delay (timed from the kernel's receive
timestamp), so measured - injected is the measuring tool's own error plus the lab's base
RTT (about 0.1-0.3 ms, what the "0 ms" rows show). Tools, one after another, on the same
lab and targets:

- probe: `python -m probes once` with one icmp check (count 50, 20 ms apart), repeated
  until the sample count is reached: the production code path, samples from `samples_s`;
- ping: iputils `ping -i 0.02 -c N`, each reply's `time=` parsed. ping prints fewer
  decimals for longer RTTs (0.001 ms below 10 ms, 0.1 ms below 100 ms, 1 ms above), so
  its rows at 20 and 150 ms are rounded;
- ping -c1: N separate `ping -c 1` runs, each sample read from the summary line, which
  has microsecond precision at every RTT: the unrounded ping reference;
- blackbox: prometheus-blackbox-exporter's icmp module, one echo request per /probe,
  `probe_icmp_duration_seconds{phase="rtt"}`, requests 20 ms apart.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.blackbox import PROGRAM as BLACKBOX
from bench.blackbox import Blackbox
from bench.common import (
    BenchError,
    Goal,
    PartResult,
    ensure_programs,
    fmt,
    icmp_check,
    quantile,
    run_once,
    table,
    write_probe_config,
)
from tests.support.lab.netns import Lab

DELAYS_S = (0.0, 0.020, 0.150)
PACKETS_PER_ROUND = 50
PACKET_INTERVAL_S = 0.02
GOAL_MARGIN_MS = 0.05  # our median error may exceed ping's by at most this
PROBE, PING_STREAM, PING_SINGLE = "probe (once)", "ping -i 0.02", "ping -c1 (summary)"
REPLY_TIME = re.compile(r"icmp_seq=\d+ .*time=([\d.]+) ms")
SUMMARY = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


@dataclass
class Series:
    tool: str
    delay_s: float
    samples_s: list[float]
    sent: int
    resolution: str  # how finely the tool reports one sample

    def errors_ms(self) -> list[float]:
        return [abs(s - self.delay_s) * 1000 for s in self.samples_s]

    def median_ms(self) -> float | None:
        errors = self.errors_ms()
        return quantile(errors, 0.5) if errors else None

    def p99_ms(self) -> float | None:
        errors = self.errors_ms()
        return quantile(errors, 0.99) if errors else None

    def bias_ms(self) -> float | None:
        """Mean signed error: positive when the tool measures long."""
        if not self.samples_s:
            return None
        return (sum(self.samples_s) / len(self.samples_s) - self.delay_s) * 1000


def measure_probe(lab: Lab, mission: Any, address: str, delay_s: float, samples: int,
                  workdir: Path) -> Series:
    checks = [icmp_check("rtt", address, count=PACKETS_PER_ROUND,
                         packet_interval_s=PACKET_INTERVAL_S, timeout_s=2)]
    config = write_probe_config(workdir / "rtt.yaml", mission.code, checks)
    values: list[float] = []
    sent = 0
    for _ in range(math.ceil(samples / PACKETS_PER_ROUND)):
        results, _wall = run_once(lab, mission, config)
        figures = results[0]["figures"]
        sent += figures["sent"]
        values += figures["samples_s"]
    return Series(PROBE, delay_s, values, sent, "1 ns")


def measure_ping_stream(lab: Lab, mission: Any, address: str, delay_s: float,
                        samples: int) -> Series:
    done = lab.run(mission.name, ["ping", "-n", "-i", str(PACKET_INTERVAL_S), "-c", str(samples),
                                  "-W", "2", address], timeout=120)
    values = [float(t) / 1000 for t in REPLY_TIME.findall(done.stdout)]
    # The printed precision falls with the RTT (iputils ping_common.c).
    resolution = "0.001 ms" if delay_s < 0.01 else "0.1 ms" if delay_s < 0.1 else "1 ms"
    return Series(PING_STREAM, delay_s, values, samples, resolution)


def measure_ping_single(lab: Lab, mission: Any, address: str, delay_s: float,
                        samples: int) -> Series:
    values: list[float] = []
    for _ in range(samples):
        done = lab.run(mission.name, ["ping", "-n", "-c", "1", "-W", "2", address], timeout=10)
        found = SUMMARY.search(done.stdout)
        if found:
            values.append(float(found.group(1)) / 1000)  # min of one sample is the sample
    return Series(PING_SINGLE, delay_s, values, samples, "0.001 ms")


def measure_blackbox(blackbox: Blackbox, address: str, delay_s: float, samples: int) -> Series:
    values: list[float] = []
    next_at = time.monotonic()
    for _ in range(samples):
        # Paced like the other tools, so that none gets a warmer or colder CPU.
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at = time.monotonic() + PACKET_INTERVAL_S
        rtt = blackbox.probe(address)
        if rtt is not None:
            values.append(rtt)
    return Series("blackbox_exporter", delay_s, values, samples, "1 ns")


def reference(series: list[Series], delay_s: float) -> Series | None:
    """The ping figures the goal compares with: the per-reply stream where ping prints
    microseconds (below 10 ms), else the unrounded single-ping summaries. (At 0 ms the
    single pings are not comparable: ping sends right after starting, on a CPU that is
    still awake, and the lab's base RTT comes out about 0.1 ms lower than in any stream.)"""
    wanted = PING_STREAM if delay_s < 0.01 else PING_SINGLE
    return next((s for s in series if s.delay_s == delay_s and s.tool == wanted), None)


def run(samples: int = 200) -> PartResult:
    result = PartResult("rtt")
    missing = ensure_programs("ping", BLACKBOX)
    workdir = Path(tempfile.mkdtemp(prefix="uh-bench-rtt-"))
    series: list[Series] = []
    lab = Lab()
    try:
        mission = lab.add_mission("FRA")
        targets = [lab.add_target(delay_s=d) for d in DELAYS_S]
        lab.start_responders(tcp_ports=())  # ICMP only
        # Resolve the neighbours once, so that no tool pays for ARP in its first sample.
        lab.run(mission.name, ["ping", "-n", "-c", "1", "-W", "2", targets[0].ipv4])
        for target in targets:
            series.append(measure_probe(lab, mission, target.ipv4, target.delay_s, samples,
                                        workdir))
            if "ping" not in missing:
                series.append(measure_ping_stream(lab, mission, target.ipv4, target.delay_s,
                                                  samples))
                series.append(measure_ping_single(lab, mission, target.ipv4, target.delay_s,
                                                  samples))
        if BLACKBOX not in missing:
            blackbox = Blackbox(lab, mission, workdir)
            try:
                for target in targets:
                    series.append(measure_blackbox(blackbox, target.ipv4, target.delay_s,
                                                   samples))
            finally:
                blackbox.stop()
    finally:
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)

    rows = []
    for delay in DELAYS_S:
        for s in (s for s in series if s.delay_s == delay):
            rows.append([f"{delay * 1000:.0f}", s.tool, f"{len(s.samples_s)}/{s.sent}",
                         fmt(s.median_ms()), fmt(s.p99_ms()), fmt(s.bias_ms()), s.resolution])
    result.text = ("RTT accuracy: |measured - injected| in ms\n" + table(
        ["delay ms", "tool", "replies", "median", "p99", "mean (signed)", "resolution"], rows))
    if missing:
        result.text += f"\nnot measured, missing: {', '.join(missing)}"

    for delay in DELAYS_S:
        ours = next(s for s in series if s.delay_s == delay and s.tool == PROBE)
        if ours.median_ms() is None:
            raise BenchError(f"the probe got no reply at {delay * 1000:.0f} ms")
        ping = reference(series, delay)
        name = f"RTT median error at {delay * 1000:.0f} ms <= ping's + {GOAL_MARGIN_MS} ms"
        ours_ms = ours.median_ms()
        ping_ms = None if ping is None else ping.median_ms()
        if ours_ms is None or ping_ms is None or ping is None:
            result.goals.append(Goal(name, fmt(ours_ms), "n/a", "n/a", None))
            continue
        result.goals.append(Goal(
            name, f"{ours_ms:.3f} ms", f"{ping_ms:.3f} ms ({ping.tool})",
            f"{ours_ms / ping_ms:.2f}x" if ping_ms else "n/a",
            ours_ms <= ping_ms + GOAL_MARGIN_MS))
    return result
