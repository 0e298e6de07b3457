"""Late rounds against ingest (`python -m bench replay`, issue 12 case 6): what another
probe's ingest waits while the collector replays a check's history from a round 6 days
behind its newest, this tree against an earlier revision (by default the one before the
replay was bounded and moved off the ingest path).

Each run, on SQLite and on PostgreSQL: the real collector (`python -m collector.cli ...
serve` from the tree measured, on loopback) over a store holding 6 days of one mission's
(FRA) 10 checks every 30 s (172,800 rounds; each check down for 3 rounds once an hour, so
that the mission's access has 2,900 periods to recombine), stored straight through the
Store and rebuilt by the collector's start. Another mission's probe (KEN) posts a batch
of 10 results every 50 ms, one request in flight, all along; after BEFORE_S, FRA's probe
posts one round dated 6 days back, a failure that moves the start of an outage (the
probes' registrations are backdated so that it is not refused). Figures: the late post's
own answer time, and KEN's answer times before and during the WINDOW_S after the late
post (median, 95th percentile, the longest).

Then, in this process and for this tree only, the replay's jobs on the database thread:
the same store, the collector's Timelines rebuilt from it, three late rounds one after
the other, each timed in the ingest call (`Timelines.apply`) and in every `replay_step`;
then three that change no period (the usual late round), whose replay ends without
recombining the mission's access.

The baseline runs from a `git archive` of the revision (bench/bench_input_cost.py
`export`); the installed dependencies are this tree's. About 4 minutes.
"""

from __future__ import annotations

import gzip
import http.client
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.bench_collector import (
    LOOPBACK,
    collector_server,
    database,
    measurement,
    register_cli,
)
from bench.bench_input_cost import export
from bench.common import REPO, BenchError, Goal, PartResult, quantile, table

BASELINE = "bd04b2e"  # replays in the ingest that brought the late round, whole
DAYS, CHECKS, INTERVAL_S = 6, 10, 30
KEN_EVERY_S = 0.05
BEFORE_S = 3.0
WINDOW_S = 6.0
GOAL_WAIT_S = 0.25  # another probe's ingest during a replay waits at most this long
# The late round, a failure of check fra-0 this long after the first stored round:
# 15 s before its first outage (rounds at 3600, 3630, 3660 s failed), it moves the start of
# that outage (down at 3630 s, not 3660 s), so that the replay's end recombines the
# mission's access over the 6 days, the worse case; at 15 s (inside the outage the first
# rounds already make) it changes no period, the usual case, and that recombining is skipped.
MOVES_AN_OUTAGE_S = 3585
CHANGES_NOTHING_S = 15


def fill(url: str, now: float) -> int:
    """DAYS of FRA's rounds up to `now`, stored as ingest stores them; returns the next
    seq. The probes' registrations are moved back before them."""
    from sqlalchemy import update

    from collector.store.database import Store
    from collector.store.schema import probes
    from unhindered.measurement import Batch

    store = Store(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(probes).values(created_at=now - (DAYS + 1) * 86_400))
        rng = random.Random(12)
        first = now - DAYS * 86_400
        rows, seq = [], 1
        for n in range(CHECKS):
            kind = "icmp" if n % 2 else "tcp"
            t = first
            while t < now:
                ok = not (t - first + n * 300) % 3600 < 90  # 3 rounds down an hour
                rows.append(measurement(rng, seq, "fra-1", "FRA", f"fra-{n}", kind, n, t, ok))
                seq += 1
                t += INTERVAL_S
        for i in range(0, len(rows), 5_000):
            store.store_batch(Batch.model_validate({
                "protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "a" * 32,
                "measurements": rows[i:i + 5_000]}), now)
        return seq
    finally:
        store.close()


def post(conn: http.client.HTTPConnection, token: str, body: dict) -> float:
    data = gzip.compress(json.dumps(body).encode(), compresslevel=5)
    started = time.perf_counter()
    conn.request("POST", "/api/v1/results", body=data, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
        "Content-Encoding": "gzip"})
    answer = conn.getresponse()
    raw = answer.read()
    took = time.perf_counter() - started
    if answer.status != 200:
        raise BenchError(f"ingest answered {answer.status}: {raw[:300]!r}")
    return took


def one_run(kind: str, source: Path, workdir: Path) -> dict | None:
    with database(kind, workdir) as url:
        if url is None:
            return None
        tokens = register_cli(url, [("fra-1", "FRA"), ("ken-1", "KEN")], workdir, source)
        now = time.time()
        next_seq = fill(url, now)
        server = collector_server(url, workdir, source)
        try:
            server.start(timeout=600)  # it rebuilds the 6 days of history from the store
            return measure(server.port, tokens, next_seq, now)
        finally:
            server.stop()


def measure(port: int, tokens: dict[str, str], next_seq: int, filled_at: float) -> dict:
    rng = random.Random(3)
    ken: list[tuple[float, float]] = []  # (sent, answer time)
    stop = threading.Event()
    failure: list[BaseException] = []

    def ken_probe() -> None:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=120)
        outbox, seq = uuid.uuid4().hex, 1
        try:
            while not stop.is_set():
                t = time.time()
                ms = [measurement(rng, seq + n, "ken-1", "KEN", f"ken-{n}", "icmp", n, t, True)
                      for n in range(10)]
                seq += 10
                sent = time.perf_counter()
                ken.append((sent, post(conn, tokens["ken-1"], {
                    "protocol": 1, "probe_id": "ken-1", "mission": "KEN",
                    "outbox_id": outbox, "measurements": ms})))
                time.sleep(max(0.0, KEN_EVERY_S - (time.perf_counter() - sent)))
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=ken_probe, daemon=True)
    thread.start()
    try:
        time.sleep(BEFORE_S)
        late = measurement(rng, next_seq, "fra-1", "FRA", "fra-0", "tcp", 0,
                           filled_at - DAYS * 86_400 + MOVES_AN_OUTAGE_S, False)
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=300)
        try:
            late_sent = time.perf_counter()
            late_took = post(conn, tokens["fra-1"], {
                "protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "a" * 32,
                "measurements": [late]})
        finally:
            conn.close()
        time.sleep(max(0.0, late_sent + WINDOW_S - time.perf_counter()))
    finally:
        stop.set()
        thread.join(130)
    if failure:
        raise BenchError(f"KEN's probe failed: {failure[0]}")
    before = [took for sent, took in ken if sent < late_sent]
    during = [took for sent, took in ken
              if late_sent <= sent < late_sent + WINDOW_S]
    # A request sent before the late post but answered after it waited on it too.
    during += [took for sent, took in ken if sent < late_sent < sent + took]
    return {"late": late_took, "before": before, "during": during}


def jobs(kind: str, workdir: Path) -> list[list[str]]:
    """The replay's database-thread jobs, in this process, for a late round that moves an
    outage and for one that changes no period: [store, late round, ingest, steps, the
    longest job, the whole replay], medians of three late rounds each."""
    from collector.state.hysteresis import Policy
    from collector.state.timeline import Timelines
    from collector.store.database import Store
    from unhindered.measurement import Batch

    with database(kind, workdir) as url:
        if url is None:
            return []
        store = Store(url)
        try:
            store.migrate()
            store.add_probe("fra-1", "FRA")
            now = time.time()
            seq = fill(url, now)
            timelines = Timelines(store, lambda _mission: Policy())
            timelines.load(store.latest_per_check())
            rng, runs = random.Random(5), {MOVES_AN_OUTAGE_S: [], CHANGES_NOTHING_S: []}
            for at, i in [(at, i) for at in runs for i in range(3)]:
                seq += 1
                late = measurement(rng, seq, "fra-1", "FRA", "fra-0", "tcp", 0,
                                   now - DAYS * 86_400 + at + i, False)
                new = store.store_batch(Batch.model_validate({
                    "protocol": 1, "probe_id": "fra-1", "mission": "FRA",
                    "outbox_id": "a" * 32, "measurements": [late]}), now).new
                started = time.perf_counter()
                timelines.apply(new)
                ingest, steps = time.perf_counter() - started, []
                while timelines.replays:
                    started = time.perf_counter()
                    timelines.replay_step()
                    steps.append(time.perf_counter() - started)
                runs[at].append((ingest, len(steps), max([ingest, *steps]),
                                 ingest + sum(steps)))
        finally:
            store.close()
    rows = []
    for at, label in ((MOVES_AN_OUTAGE_S, "moves an outage"),
                      (CHANGES_NOTHING_S, "changes no period")):
        ingest, count, longest, whole = (statistics.median(r[i] for r in runs[at])
                                         for i in range(4))
        rows.append([kind, label, f"{ingest * 1000:.0f}", f"{count:.0f}",
                     f"{longest * 1000:.0f}", f"{whole * 1000:.0f}"])
    return rows


def _ms(values: list[float], q: float | None = None) -> str:
    if not values:
        return "n/a"
    value = max(values) if q is None else quantile(values, q)
    return f"{value * 1000:.0f}"


def run(baseline: str = BASELINE) -> PartResult:
    part = PartResult("replay")
    rows, figures = [], {}
    with tempfile.TemporaryDirectory(prefix="uh-bench-replay-") as tmp:
        workdir = Path(tmp)
        sources = {"baseline": export(baseline, workdir), "current": REPO}
        for kind in ("sqlite", "postgresql"):
            for name in ("baseline", "current"):
                result = one_run(kind, sources[name], workdir)
                if result is None:
                    continue
                figures[(kind, name)] = result
                rows.append([kind, f"{name} ({baseline})" if name == "baseline" else name,
                             f"{result['late'] * 1000:.0f}",
                             _ms(result["before"], 0.5), _ms(result["before"]),
                             _ms(result["during"], 0.5), _ms(result["during"], 0.95),
                             _ms(result["during"]), str(len(result["during"]))])
        job_rows = [row for kind in ("sqlite", "postgresql") for row in jobs(kind, workdir)]
    part.text = (f"A round {DAYS} days late for one of FRA's {CHECKS} checks, moving an outage "
                 f"({CHECKS * DAYS * 86_400 // INTERVAL_S:,} stored rounds, one every "
                 f"{INTERVAL_S} s), while KEN posts 10 results every {KEN_EVERY_S * 1000:.0f} "
                 f"ms; answer times in ms, KEN's in the {WINDOW_S:g} s after the late post:\n"
                 + table(["store", "tree", "late post", "KEN before p50", "before max",
                          "KEN during p50", "p95", "max", "posts"], rows)
                 + "\n\nThe replay's jobs on the database thread (this tree, in process; "
                 "medians of 3 late rounds; ms):\n"
                 + table(["store", "late round", "ingest call", "replay steps",
                          "longest job", "whole replay"], job_rows))
    for kind in ("sqlite", "postgresql"):
        current = figures.get((kind, "current"))
        if current is None:
            part.goals.append(Goal(f"KEN's ingest during a replay ({kind}) <= "
                                   f"{GOAL_WAIT_S * 1000:.0f} ms", "n/a",
                                   f"{GOAL_WAIT_S * 1000:.0f} ms", "-", None))
            continue
        longest = max(current["during"], default=0.0)
        base = figures.get((kind, "baseline"))
        ratio = (f"{max(base['during']) / longest:.0f}x shorter"
                 if base and base["during"] and longest else "-")
        part.goals.append(Goal(f"KEN's ingest during a replay ({kind}) <= "
                               f"{GOAL_WAIT_S * 1000:.0f} ms",
                               f"{longest * 1000:.0f} ms", f"{GOAL_WAIT_S * 1000:.0f} ms",
                               ratio, longest <= GOAL_WAIT_S))
    if not figures:
        raise BenchError("no run could be made")
    return part
