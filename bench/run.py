"""`python -m bench [rtt|footprint|traffic|sweep|ingest|render|snmp|alerts|report|wire|
input-cost|replay ...]`: runs the probe benchmarks (rtt, footprint, traffic, sweep), the
collector benchmarks (ingest, render), the SNMP ones (snmp: the probe agent's footprint,
then the collector's poll sweep) and alerts' cut-to-e-mail, all by default (the yearly
report's, report, the wire-library comparison, wire, the input checks' cost against an
older revision, input-cost, and ingest while a late round's replay runs against an older
revision, replay, only when named), and prints each part's table, then every goal with
our figure, the reference and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench import (
    bench_alerts,
    bench_collector,
    bench_footprint,
    bench_input_cost,
    bench_outage_timing,
    bench_replay,
    bench_report,
    bench_rtt,
    bench_snmp,
    bench_snmp_sweep,
    bench_sweep,
    bench_traffic,
    bench_wire,
)
from bench.common import PartResult, table
from tests.support.lab.netns import unavailable_reason

PARTS = ("rtt", "footprint", "traffic", "sweep", "ingest", "render", "snmp", "alerts", "report",
         "wire", "input-cost", "replay", "outage-timing")
# report: about 11 minutes; wire: a library the project does not use (msgspec);
# input-cost: this tree against an older revision, about 6 runs of ingest;
# replay: likewise, 4 collectors each rebuilding 6 days of a mission's history
# outage-timing: cuts of known length at the 10 s default, about 9 minutes
ON_DEMAND = ("report", "wire", "input-cost", "replay", "outage-timing")
# These build a network lab: root, ip, nft.
LAB_PARTS = ("rtt", "footprint", "traffic", "sweep", "alerts", "outage-timing")


def version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "missing"
    done = subprocess.run(argv, capture_output=True, text=True)
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_gib = int(meminfo.readline().split()[1]) / 1024 / 1024
    return (f"{os.cpu_count()} x {model}, {mem_gib:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def load() -> str:
    """The load average: other work on the machine skews CPU and timing figures."""
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def _snmp() -> PartResult:
    """The probe agent's footprint (bench_snmp), then the collector's poll sweep of 250
    agents (bench_snmp_sweep), as one part."""
    agent, sweep = bench_snmp.run(), bench_snmp_sweep.run()
    return PartResult("snmp", agent.text + "\n" + sweep.text, agent.goals + sweep.goals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"which parts to run: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--samples", type=int, default=200,
                        help="rtt: samples per delay and tool (200)")
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="footprint: measured window per process, after warm-up (40)")
    parser.add_argument("--window", type=float, default=bench_traffic.WINDOW_S,
                        help=f"traffic: measured window in seconds, rounded to whole check "
                             f"intervals ({bench_traffic.WINDOW_S:.0f})")
    parser.add_argument("--repeats", type=int, default=bench_sweep.REPEATS,
                        help=f"sweep: runs of each variant ({bench_sweep.REPEATS})")
    parser.add_argument("--results", type=int, default=bench_collector.RESULTS,
                        help=f"ingest: results sent to each collector "
                             f"({bench_collector.RESULTS:,})")
    parser.add_argument("--scrapes", type=int, default=bench_collector.SCRAPES,
                        help=f"render: fresh renders timed per size ({bench_collector.SCRAPES})")
    parser.add_argument("--cuts", type=int, default=10,
                        help="alerts: link cuts timed, cut to e-mail (10)")
    parser.add_argument("--baseline", default=bench_input_cost.BASELINE,
                        help=f"input-cost: the git revision compared with this tree "
                             f"({bench_input_cost.BASELINE})")
    parser.add_argument("--current", default=None,
                        help="input-cost: a git revision measured instead of the working tree")
    parser.add_argument("--replay-baseline", default=bench_replay.BASELINE,
                        help=f"replay: the git revision compared with this tree "
                             f"({bench_replay.BASELINE})")
    parser.add_argument("--runs", type=int, default=3,
                        help="input-cost: ingest runs of each tree, alternating (3)")
    parser.add_argument("--missions", type=int, default=bench_report.MISSIONS,
                        help=f"report: missions in the synthetic year "
                             f"({bench_report.MISSIONS})")
    parser.add_argument("--quick", action="store_true",
                        help="outage-timing: 3 cuts instead of 8")
    args = parser.parse_args(argv)
    parts = args.parts or [p for p in PARTS if p not in ON_DEMAND]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}: choose from {', '.join(PARTS)}")

    reason = unavailable_reason() if set(parts) & set(LAB_PARTS) else None
    if reason is not None:
        print(f"cannot run the benchmarks: {reason}", file=sys.stderr)
        return 2
    runners: dict[str, Callable[[], PartResult]] = {
        "rtt": lambda: bench_rtt.run(samples=args.samples),
        "footprint": lambda: bench_footprint.run(seconds=args.seconds),
        "traffic": lambda: bench_traffic.run(window_s=args.window),
        "sweep": lambda: bench_sweep.run(repeats=args.repeats),
        "ingest": lambda: bench_collector.run_ingest(results=args.results),
        "render": lambda: bench_collector.run_render(scrapes=args.scrapes),
        "alerts": lambda: bench_alerts.run(cuts=args.cuts),
        "report": lambda: bench_report.run(missions=args.missions),
        "wire": bench_wire.run,
        "input-cost": lambda: bench_input_cost.run(args.baseline, args.runs,
                                                            current=args.current),
        "snmp": _snmp,
        "replay": lambda: bench_replay.run(args.replay_baseline),
        "outage-timing": lambda: bench_outage_timing.run(3 if args.quick else 8),
    }
    print(f"Unhindered probe benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}; load average: {load()}")
    print(f"tools: {version(['ping', '-V'])}; {version(['fping', '-v'])}; "
          f"{version(['prometheus-blackbox-exporter', '--version'])}; "
          f"{version(['prometheus-pushgateway', '--version'])}\n", flush=True)
    results: list[PartResult] = []
    for name in parts:
        started = time.monotonic()
        result = runners[name]()
        result.seconds = time.monotonic() - started
        results.append(result)
        print(f"== {name} ({result.seconds:.0f} s, load average after: {load()})\n"
              f"{result.text}\n", flush=True)

    rows = []
    for result in results:
        for goal in result.goals:
            met = "-" if goal.met is None else "met" if goal.met else "MISSED"
            rows.append([result.name, goal.name, goal.ours, goal.reference, goal.ratio, met])
    print("== goals\n" + table(["part", "goal", "ours", "reference", "ratio", "result"], rows))
    return 0
