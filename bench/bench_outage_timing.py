"""Part "outage-timing": how close the collector places an outage's start, end and length
to the truth, at the shipped defaults (docs/states.md, "When an outage starts and ends").

A lab mission with one ICMP check at the defaults (every 10 s, 5 requests 0.5 s apart,
2 s timeout, 2 confirmation rounds 2 s apart) and the collector's default hysteresis. Its
link is cut for known lengths, each cut beginning at a random moment of the check's
cycle; the cut also stops the probe's reports, so the intervals read at the end are those
the backlog rewrote, as the yearly report reads them. The errors are the placed times
less the cuts' (a negative start: placed before the cut).

`python -m bench outage-timing` (about 10 minutes: 8 cuts of 30 to 60 s), `--quick`
(3 cuts, about 4 minutes); `python -m bench.bench_outage_timing --cuts N`.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Goal, PartResult, table
from collector.store.database import Store
from tests.support.lab.netns import Lab
from tests.support.spine import Collector, Probe

MISSION, CHECK = "CUB", "internet-icmp"
INTERVAL_S = 10.0  # the shipped default (unhindered/checks/base.py)
# From 30 s: a shorter cut may hold only two failed rounds (a round it cuts short still
# succeeds), which the default hysteresis rightly does not call an outage.
LENGTHS_S = (30, 40, 50, 60)
GAP_S = 25.0  # up between cuts: the recovery confirmed, a clean round before the next cut
GOAL_MEDIAN_S = 2.0
GOAL_WORST_S = INTERVAL_S / 2


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.5)


def _history(database) -> list:
    store = Store(database)
    try:
        return store.intervals(MISSION, CHECK)
    finally:
        store.close()


def _downs(database) -> list:
    return [r for r in _history(database) if r.state == "down"]


def _overlap(row, began: float, ended: float) -> float:
    end = row.ended_at if row.ended_at is not None else time.time()
    return min(end, ended) - max(row.started_at, began)


def run(cuts: int = 8, seed: int | None = None) -> PartResult:
    result = PartResult("outage-timing")
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="uh-bench-outage-"))
    lab = Lab()
    truth: list[tuple[float, float]] = []
    try:
        mission = lab.add_mission(MISSION)
        target = lab.add_target()
        lab.start_responders(tcp_ports=())
        collector = Collector(lab, workdir)
        collector.start()
        probe = Probe(lab, mission, workdir, collector,
                      [{"id": CHECK, "kind": "icmp", "target": target.ipv4}])
        probe.start()
        _wait(lambda: probe_up(collector), 60, "the check up")
        time.sleep(GAP_S)
        for n in range(cuts):
            time.sleep(rng.uniform(0, INTERVAL_S))  # a random phase of the check's cycle
            length = LENGTHS_S[n % len(LENGTHS_S)]
            lab.cut(mission)
            began = time.time()
            time.sleep(length)
            lab.restore(mission)
            truth.append((began, time.time()))
            print(f"  cut {n + 1}/{cuts}: {length} s", flush=True)
            time.sleep(GAP_S)
        try:
            _wait(lambda: len(_downs(collector.database)) >= len(truth)
                  and probe_up(collector), 120, "every outage in and the check up again")
        except TimeoutError as exc:
            print(f"  {exc}: measuring what came", flush=True)
        history = _history(collector.database)
        probe.stop()
        collector.stop()
    except BaseException:
        print(f"  kept for a look: {workdir} (the programs' logs)", flush=True)
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        lab.close()

    # Each cut's outage: the down period overlapping it most.
    origin = truth[0][0] if truth else 0.0
    print("  history: " + "; ".join(f"{r.state} from {r.started_at - origin:+.1f}"
                                    for r in history if r.ended_at is None
                                    or r.ended_at > origin - 60), flush=True)
    downs = [r for r in history if r.state == "down" and r.ended_at is not None]
    matched = []
    for began, ended in truth:
        best = max(downs, key=lambda r: _overlap(r, began, ended), default=None)
        if best is not None and _overlap(best, began, ended) > 0:
            matched.append(((began, ended), best))
    rows, starts, ends, lengths = [], [], [], []
    for (began, ended), d in matched:
        s, e = d.started_at - began, d.ended_at - ended
        length = (d.ended_at - d.started_at) - (ended - began)
        starts.append(abs(s))
        ends.append(abs(e))
        lengths.append(abs(length))
        bounds = ("" if d.started_after is None else
                  f"{d.started_after - began:+.2f}..{d.started_before - began:+.2f}")
        rows.append([f"{ended - began:.1f}", f"{s:+.2f}", bounds, f"{e:+.2f}",
                     f"{length:+.2f}"])
    result.text = (f"placed outage times against the cuts (ICMP, interval {INTERVAL_S:g} s, "
                   "shipped defaults), seconds\n"
                   + table(["cut", "start", "start bounds", "end", "length"], rows))
    if len(matched) != len(truth) or len(downs) != len(truth):
        result.text += (f"\n{len(matched)} cuts matched an outage; {len(downs)} outages "
                        f"for {len(truth)} cuts")
    for name, values in (("start", starts), ("end", ends), ("duration", lengths)):
        if not values:
            continue
        median, worst = statistics.median(values), max(values)
        result.goals.append(Goal(f"outage {name}: median error <= {GOAL_MEDIAN_S:g} s",
                                 f"{median:.2f} s", f"{GOAL_MEDIAN_S:g} s",
                                 f"{median / GOAL_MEDIAN_S:.2f}x", median <= GOAL_MEDIAN_S))
        result.goals.append(Goal(f"outage {name}: worst error <= {GOAL_WORST_S:g} s",
                                 f"{worst:.2f} s", f"{GOAL_WORST_S:g} s",
                                 f"{worst / GOAL_WORST_S:.2f}x", worst <= GOAL_WORST_S))
    return result


def probe_up(collector: Collector) -> bool:
    store = Store(collector.database)
    try:
        rows = store.intervals(MISSION, CHECK)
    finally:
        store.close()
    return bool(rows) and rows[-1].state == "up"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="3 cuts")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    result = run(3 if args.quick else args.cuts, args.seed)
    print(result.text)
    for goal in result.goals:
        print(f"{'met' if goal.met else 'NOT met'}: {goal.name}: {goal.ours}")


if __name__ == "__main__":
    main()
