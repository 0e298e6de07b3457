"""What the input checks cost ingest: the collector's CPU per stored result, this tree
against an earlier revision (by default the one before issue 12's strict wire, per-result
refusal and bounds), both fed the same batches on SQLite.

The runs alternate (baseline, current, baseline, ...) so that whatever else the machine
does falls on both alike; CPU seconds a result is compared rather than results a second,
since the collector's CPU time moves less with a busy machine than its wall time. The
baseline runs from a `git archive` of the revision in a temporary directory
(`python -m` reads the working directory before the installed package); the installed
dependencies are this tree's.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.bench_collector import ingest_run
from bench.common import REPO, Goal, PartResult, table

BASELINE = "da0e209"  # issue 11 done; issue 12's input checks not yet written
RESULTS = 100_000
GOAL = 1.05  # the input checks may cost at most 5 % of ingest


def export(revision: str, into: Path) -> Path:
    tree = into / f"tree-{revision}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run(baseline: str = BASELINE, runs: int = 3, results: int = RESULTS,
        current: str | None = None) -> PartResult:
    """`current`: a revision to measure instead of this working tree."""
    part = PartResult("input-cost")
    per_result: dict[str, list[float]] = {"baseline": [], "current": []}
    rows = []
    with tempfile.TemporaryDirectory(prefix="uh-bench-input-") as tmp:
        workdir = Path(tmp)
        sources = {"baseline": export(baseline, workdir),
                   "current": REPO if current is None else export(current, workdir)}
        for i in range(runs):
            # Alternating which goes first, so neither always follows the other.
            order = ("baseline", "current") if i % 2 == 0 else ("current", "baseline")
            for name in order:
                figures, note = ingest_run("sqlite", workdir, results, sources[name])
                assert figures is not None, note
                us = figures.server_cpu_s / figures.results * 1e6
                per_result[name].append(us)
                rows.append([str(i + 1), name, f"{figures.results:,}",
                             f"{figures.per_s:,.0f}/s", f"{figures.server_cpu_s:.2f}",
                             f"{us:.1f}"])
    base = statistics.median(per_result["baseline"])
    ours = statistics.median(per_result["current"])
    ratio = ours / base
    best = min(per_result["current"]) / min(per_result["baseline"])
    part.text = (f"Ingest on SQLite, {results:,} results a run, {runs} runs each, "
                 f"alternating; baseline {baseline}, current "
                 f"{current or 'the working tree'}\n"
                 + table(["run", "tree", "results", "rate", "server CPU s",
                          "CPU µs a result"], rows)
                 + f"\nmedian CPU a result: current {ours:.1f} µs, baseline {base:.1f} µs,"
                   f" ratio {ratio:.3f}; ratio of the smallest (least disturbed) runs "
                   f"{best:.3f}")
    part.goals.append(Goal(f"CPU a result <= {GOAL:g}x baseline {baseline}",
                           f"{ours:.1f} µs", f"{base:.1f} µs", f"{ratio:.3f}x",
                           ratio <= GOAL))
    return part
