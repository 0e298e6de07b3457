"""Part 3, sweep: one echo request to each of 200 lab targets (no delay, no loss configured),
as fast as each tool goes: how long one round takes, and how many replies are falsely lost.

- probe: `python -m probes once` with 200 icmp checks of count 1, for several
  `icmp.min_gap_s` (the engine's least gap between two packets; default 1 ms). The round
  is timed from the earliest `started_at` to the latest `started_at + duration_s` of the
  printed results, which leaves out Python's start-up; the whole command's wall time is
  reported too;
- fping: `fping -c1 -q -s` with its default interval (10 ms) and with `-i1` (1 ms) and
  `-i0.5`, timed by its own "elapsed real time" and by wall time.

Every variant runs REPEATS times, interleaved; the table gives the median time and the
false loss summed over all repeats.
"""

from __future__ import annotations

import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Goal,
    PartResult,
    ensure_programs,
    icmp_check,
    run_once,
    table,
    write_probe_config,
)
from tests.support.lab.netns import Lab

TARGETS = 200
REPEATS = 3
MIN_GAPS_S = (0.001, 0.0008, 0.0005, 0.0003, 0.0002, 0.0001, 0.0)  # the first is the default
FPING_OPTIONS: tuple[tuple[str, ...], ...] = ((), ("-i1",), ("-i0.5",))
FPING_LOSS = re.compile(r"^(\S+)\s+: xmt/rcv/%loss = (\d+)/(\d+)/", re.MULTILINE)
FPING_ELAPSED = re.compile(r"([\d.]+) sec \(elapsed real time\)")


@dataclass
class Variant:
    tool: str
    round_s: list[float] = field(default_factory=list)  # the tool's own timing
    wall_s: list[float] = field(default_factory=list)  # the whole command
    sent: int = 0
    received: int = 0

    def median_round(self) -> float:
        return statistics.median(self.round_s)


def sweep_probe(lab: Lab, mission: Any, workdir: Path, min_gap_s: float, variant: Variant
                ) -> None:
    checks = [icmp_check(f"t{t.index}", t.ipv4, count=1, timeout_s=2) for t in lab.targets]
    config = write_probe_config(workdir / "sweep.yaml", mission.code, checks,
                                icmp={"min_gap_s": min_gap_s})
    results, wall = run_once(lab, mission, config)
    if len(results) != TARGETS:
        raise BenchError(f"probes once printed {len(results)} results, not {TARGETS}")
    starts = [datetime.fromisoformat(r["started_at"]) for r in results]
    ends = [s + timedelta(seconds=r["duration_s"]) for s, r in zip(starts, results, strict=True)]
    variant.round_s.append((max(ends) - min(starts)).total_seconds())
    variant.wall_s.append(wall)
    variant.sent += sum(r["figures"]["sent"] for r in results)
    variant.received += sum(r["figures"]["received"] for r in results)


def sweep_fping(lab: Lab, mission: Any, options: tuple[str, ...], variant: Variant) -> None:
    addresses = [t.ipv4 for t in lab.targets]
    started = time.perf_counter()
    # -q: only the per-target summary (on stderr), -s: the statistics with elapsed time.
    done = lab.run(mission.name, ["fping", "-c1", "-q", "-s", *options, *addresses])
    variant.wall_s.append(time.perf_counter() - started)
    elapsed = FPING_ELAPSED.search(done.stderr)
    lines = FPING_LOSS.findall(done.stderr)
    if elapsed is None or len(lines) != TARGETS:
        raise BenchError(f"unexpected fping output ({done.returncode}): {done.stderr[-2000:]}")
    variant.round_s.append(float(elapsed.group(1)))
    variant.sent += sum(int(sent) for _addr, sent, _received in lines)
    variant.received += sum(int(received) for _addr, _sent, received in lines)


def run(repeats: int = REPEATS) -> PartResult:
    result = PartResult("sweep")
    missing = ensure_programs("fping")
    workdir = Path(tempfile.mkdtemp(prefix="uh-bench-sweep-"))
    ours = {gap: Variant(f"probe, min_gap_s {gap:g}" + (" (default)" if gap == MIN_GAPS_S[0]
                                                          else ""))
            for gap in MIN_GAPS_S}
    fpings = {opts: Variant(" ".join(("fping -c1", *opts)) + ("" if opts else " (10 ms)"))
              for opts in FPING_OPTIONS}
    lab = Lab()
    try:
        mission = lab.add_mission("FRA")
        for _ in range(TARGETS):
            lab.add_target(delay_s=0.0)
        lab.start_responders(tcp_ports=())
        # Resolve the gateway's address once, so that no tool pays for ARP.
        lab.run(mission.name, ["ping", "-n", "-c", "1", "-W", "2", lab.targets[0].ipv4])
        for _ in range(repeats):
            for gap, variant in ours.items():
                sweep_probe(lab, mission, workdir, gap, variant)
            if "fping" not in missing:
                for opts, variant in fpings.items():
                    sweep_fping(lab, mission, opts, variant)
    finally:
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)

    measured = [*ours.values(), *(v for v in fpings.values() if v.round_s)]
    rows = [[v.tool, f"{v.median_round():.3f}", f"{statistics.median(v.wall_s):.3f}",
             f"{v.sent - v.received}/{v.sent}"] for v in measured]
    result.text = (f"Sweep: one echo request to each of {TARGETS} targets, median of "
                   f"{repeats} runs\n"
                   + table(["tool", "round s", "command wall s", "false loss"], rows))
    if missing:
        result.text += f"\nnot measured, missing: {', '.join(missing)}"

    default = ours[MIN_GAPS_S[0]]
    for fping in fpings.values():
        if not fping.round_s:
            result.goals.append(Goal(f"sweep time <= {fping.tool}", "n/a", "n/a", "n/a", None))
            continue
        mine, theirs = default.median_round(), fping.median_round()
        result.goals.append(Goal(
            f"sweep time (default min_gap_s) <= {fping.tool}", f"{mine:.3f} s",
            f"{theirs:.3f} s", f"{mine / theirs:.2f}x", mine <= theirs))
        if mine > theirs:
            # The largest gap that keeps up, if any of those tried does.
            matching = [g for g in MIN_GAPS_S if ours[g].median_round() <= theirs]
            result.goals.append(Goal(
                f"  min_gap_s that matches {fping.tool}",
                f"{max(matching):g}" if matching else f"none of {MIN_GAPS_S}",
                "", "", None))
    lost = sum(v.sent - v.received for v in ours.values())
    sent = sum(v.sent for v in ours.values())
    result.goals.append(Goal("sweep false loss (probe, all gaps) = 0", f"{lost}/{sent}", "0",
                             "", lost == 0))
    return result
