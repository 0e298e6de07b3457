"""The yearly uptime report on a synthetic year (`python -m bench report`): 250 missions x
3 checks at a 10 s interval, on SQLite and on PostgreSQL. See docs/benchmarks.md and
docs/reports.md.

A year at 10 s is 2.37e9 rounds: no store takes that through ingest within a benchmark,
and the store keeps only 30 days of them anyway. So the year is built in two parts, both
through the collector's own write code:

1. sample: a few missions at full resolution through the whole write path (store_batch ->
   Timelines.apply -> Rollups.run), which measures that path's throughput and the bytes
   a raw result costs, for the estimate of the raw 30-day window;
2. the year: what survives retention, written by the collector's writers for it: each
   check's state history from a seeded schedule of outages, silences and degraded spells
   (Store.rewrite_intervals, one call per check, as Timelines does), each mission's access
   intervals combined from those by Timelines' own combination (Timelines._combine), and
   the rollups that retention keeps (hour and day buckets for the year, minute buckets
   for the last retention.rollup_1m_days days) through Rollups.write, their figures
   consistent with the schedule (failed rounds during outages, RTT per mission).

Then the yearly report is timed (computation, and each format) and the store's size
measured. Goals: report <= 5 s, store <= 2 GB.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from bench.bench_collector import database
from bench.common import Goal, PartResult, table
from collector.config import RetentionSettings
from collector.inventory.sites import default_inventory
from collector.report.compute import compute
from collector.report.formats import gettext_for, to_csv, to_json
from collector.report.html import to_html
from collector.report.pdf import to_pdf
from collector.report.period import period_of
from collector.report.policy import CountingPolicy
from collector.state.hysteresis import Machine, Policy
from collector.state.timeline import Timelines
from collector.store.database import Store
from collector.store.rollups import DAY, HOUR, MINUTE, Rollups, histogram

YEAR = 2025
MISSIONS = 250
CHECKS = (("internet-icmp", "internet"), ("internet-dns", "internet"),
          ("un-https", "documents"))
INTERVAL_S = 10.0
ROUNDS_PER_HOUR = int(HOUR / INTERVAL_S)
ECHOES = 5  # per ICMP round
MINUTE_DAYS = RetentionSettings().rollup_1m_days  # minute rollups kept (the default)
RAW_DAYS = 30
SAMPLE_MISSIONS, SAMPLE_HOURS = 3, 2
CHUNK = 20_000
REPORT_GOAL_S, SIZE_GOAL = 5.0, 2 * 1024**3


def schedule(rng: random.Random, start: float, end: float, bad: bool) -> list[tuple]:
    """(start, end, state) spells of not-up for one check: outages from 30 s to hours,
    a few silences and degraded spells; a bad mission has more and longer ones."""
    spells = []
    for _ in range(rng.randint(5, 60 if bad else 25)):
        state = rng.choices(("down", "unknown", "degraded"), (8, 1, 1))[0]
        length = min(rng.lognormvariate(math.log(600), 1.6), 3 * DAY if bad else 6 * HOUR)
        s = rng.uniform(start, end - length)
        spells.append((s, s + max(length, 30.0), state))
    spells.sort()
    kept, last_end = [], start
    for s, e, state in spells:
        if s > last_end + INTERVAL_S:  # spells never overlap: an up stretch between
            kept.append((s, e, state))
            last_end = e
    return kept


def fleet_outages(rng: random.Random, start: float, end: float) -> list[tuple]:
    """Two outages of the shared DNS target, seen at every mission at once."""
    return [(s, s + rng.uniform(600, 3 * HOUR), "down")
            for s in (rng.uniform(start, end - DAY) for _ in range(2))]


def bucket_rows(mission: str, check: str, spells: list[tuple], start: float, end: float,
                resolution: int, base_rtt: float, rng: random.Random) -> list[dict]:
    """Rollup rows of one check from start to end, consistent with its spells: rounds in
    a down spell failed, a silent (unknown) spell has none."""
    rows = []
    i = 0
    t = start
    icmp = check == "internet-icmp"
    while t < end:
        while i < len(spells) and spells[i][1] <= t:
            i += 1
        lost = {"down": 0.0, "unknown": 0.0, "degraded": 0.0}
        j = i
        while j < len(spells) and spells[j][0] < t + resolution:
            s, e, state = spells[j]
            lost[state] += max(0.0, min(e, t + resolution) - max(s, t))
            j += 1
        rounds = int((resolution - lost["unknown"]) / INTERVAL_S)
        rounds_ok = rounds - int(lost["down"] / INTERVAL_S)
        median = base_rtt * (1 + rng.random() * 0.1 + (lost["degraded"] / resolution))
        samples = rounds_ok * (ECHOES if icmp else 1)
        rows.append({
            "mission": mission, "check_id": check, "resolution_s": resolution,
            "bucket_start": t, "rounds": rounds, "rounds_ok": rounds_ok, "samples": samples,
            "rtt_min_s": median * 0.9 if samples else None,
            "rtt_median_s": median if samples else None,
            "rtt_p95_s": median * 1.4 if samples else None,
            "rtt_max_s": median * 2 if samples else None,
            "sent": rounds * ECHOES if icmp else None,
            "received": samples if icmp else None,
            "rtt_histogram": day_histogram(median, samples) if resolution == DAY else None})
        t += resolution
    return rows


def day_histogram(median: float, samples: int) -> str | None:
    """A day's RTT histogram as the collector writes it: 60 % of the samples at the
    median, 30 % a fifth above, 10 % at 1.4 times (the p95 region)."""
    if not samples:
        return None
    bins: dict[int, int] = {}
    for value, share in ((median, 0.6), (median * 1.2, 0.3), (median * 1.4, 0.1)):
        [(i, _one)] = histogram([value]).items()
        bins[i] = bins.get(i, 0) + max(1, round(samples * share))
    return json.dumps(bins, separators=(",", ":"))


def write_year(store: Store, start: float, end: float, missions: int,
               progress) -> dict[str, int]:
    rng = random.Random(2025)
    inventory = default_inventory()
    # The shipped inventory's 195 States, then observer organisations and NGOs.
    codes = [m.code for m in inventory.missions][:missions]
    codes += [f"ORG-{n:02d}" for n in range(missions - len(codes))]
    timelines = Timelines(store, lambda _m: Policy())
    rollups = Rollups(store)
    shared = fleet_outages(rng, start, end)
    counts = {"state_intervals": 0, "rollups": 0}
    pending: list[dict] = []
    for n, code in enumerate(codes):
        bad = rng.random() < 0.05
        base_rtt = rng.uniform(0.002, 0.3)
        for check, group in CHECKS:
            spells = schedule(rng, start, end, bad)
            if check == "internet-dns":
                spells = sorted(s for s in spells if not any(
                    s[0] < f[1] + INTERVAL_S and f[0] < s[1] + INTERVAL_S for f in shared))
                spells = sorted([*spells, *shared])
            transitions = [(start, "up", "first result after no data: ok")]
            for s, e, state in spells:
                transitions += [(s, state, "synthetic"), (e, "up", "synthetic")]
            store.rewrite_intervals(code, check, start, transitions)
            counts["state_intervals"] += len(transitions)
            key = (code, check)
            timelines.machines[key] = Machine(Policy())
            timelines.groups[key] = group
            for resolution, lo in ((HOUR, start), (DAY, start),
                                   (MINUTE, end - MINUTE_DAYS * DAY)):
                pending += bucket_rows(code, check, spells, lo, end, resolution, base_rtt, rng)
                while len(pending) >= CHUNK:
                    rollups.write(pending[:CHUNK])
                    counts["rollups"] += CHUNK
                    del pending[:CHUNK]
        timelines._combine(code, start)  # the access intervals, as live
        progress(n + 1, len(codes))
    if pending:
        rollups.write(pending)
        counts["rollups"] += len(pending)
    return counts


def sample_write_path(store: Store, start: float) -> tuple[int, float]:
    """SAMPLE_MISSIONS x 3 checks for SAMPLE_HOURS at 10 s through store_batch, Timelines
    and Rollups: rounds and seconds."""
    from tests.unit.test_measurement import icmp
    from unhindered.measurement import Batch

    timelines = Timelines(store, lambda _m: Policy())
    rollups = Rollups(store)
    total, began = 0, time.perf_counter()
    seq = 0
    for m in range(SAMPLE_MISSIONS):
        code = f"ZZ{m}"
        for check, group in CHECKS:
            t = start
            while t < start + SAMPLE_HOURS * HOUR:
                measurements = []
                for _ in range(360):  # one hour a batch, as a probe's backlog would be
                    seq += 1
                    measurements.append(icmp(
                        seq=seq, probe_id=f"zz{m}-1", mission=code, check_id=check,
                        group=group, started_at=datetime.fromtimestamp(t, UTC),
                        interval_s=INTERVAL_S))
                    t += INTERVAL_S
                batch = Batch.model_validate({
                    "protocol": 1, "probe_id": f"zz{m}-1", "mission": code,
                    "outbox_id": "b" * 32, "measurements": measurements})
                new, _ = store.store_batch(batch, received_at=t)
                timelines.apply(new)
                total += len(new)
    rollups.run(now=start + SAMPLE_HOURS * HOUR + DAY)
    return total, time.perf_counter() - began


def store_bytes(store: Store) -> dict[str, int]:
    """Bytes per table (with its indexes), and the total as the database holds it."""
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            try:
                rows = conn.execute(text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
                sizes = {name: int(size) for name, size in rows}
            except Exception:  # SQLite built without dbstat: the file only
                sizes = {}
            page = conn.exec_driver_sql("PRAGMA page_size").scalar()
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            sizes["total"] = page * pages
            return sizes
        rows = conn.execute(text(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"))
        sizes = {name: int(size) for name, size in rows}
        sizes["total"] = sum(sizes.values())
        return sizes


def gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB"


def run_backend(kind: str, workdir: Path, missions: int, rows: list, goals: list) -> None:
    with database(kind, workdir) as url:
        if url is None:
            rows.append([kind, "PostgreSQL unreachable", "", "", "", "", ""])
            return
        store = Store(url)
        try:
            store.migrate()
            start, end = period_of(year=YEAR).start, period_of(year=YEAR).end
            before = store_bytes(store)["total"]
            sampled, sample_s = sample_write_path(store, end - 2 * DAY)
            raw_bytes = (store_bytes(store)["total"] - before) / sampled
            with store.engine.begin() as conn:  # the sample leaves no trace in the year
                for table_name in ("results", "rollups", "state_intervals",
                                   "access_intervals", "collector_meta"):
                    conn.execute(text(f"DELETE FROM {table_name}"))
            began = time.perf_counter()
            counts = write_year(store, start, end, missions, _progress(kind))
            generate_s = time.perf_counter() - began
            if kind == "postgresql":
                with store.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
            sizes = store_bytes(store)
            _ = gettext_for("en")
            inventory = default_inventory()
            period = period_of(year=YEAR)
            times = {}
            began = time.perf_counter()
            report = compute(store, inventory, period, CountingPolicy(), now=end + DAY)
            times["compute"] = time.perf_counter() - began
            for name, fn in (("csv", lambda: to_csv(report, _)),
                             ("json", lambda: to_json(report, _)),
                             ("html", lambda: to_html(report, inventory)),
                             ("pdf", lambda: to_pdf(report, inventory))):
                began = time.perf_counter()
                out = fn()
                times[name] = time.perf_counter() - began
                if name == "html":
                    (workdir / f"year-{kind}.html").write_text(out)
        finally:
            store.close()
    raw_window = raw_bytes * missions * len(CHECKS) * RAW_DAYS * DAY / INTERVAL_S
    rows.append([kind, f"{sampled:,} in {sample_s:.1f} s ({sampled / sample_s:,.0f}/s)",
                 f"{counts['state_intervals']:,} + {counts['rollups']:,} rows in "
                 f"{generate_s:.0f} s", gib(sizes["total"]),
                 f"{raw_bytes:.0f} B/round, {gib(raw_window)} for 30 d",
                 f"{times['compute']:.2f} s",
                 ", ".join(f"{k} {v:.2f} s" for k, v in times.items() if k != "compute")])
    details = ", ".join(f"{k} {gib(v)}" for k, v in sorted(sizes.items()) if v > 2**20)
    rows.append([f"  {kind} sizes", details, "", "", "", "", ""])
    report_s = times["compute"] + times["html"]
    goals.append(Goal(f"yearly report, {kind}", f"{report_s:.2f} s (compute + HTML)",
                      f"{REPORT_GOAL_S:.0f} s", f"{report_s / REPORT_GOAL_S:.2f}",
                      report_s <= REPORT_GOAL_S))
    goals.append(Goal(f"store after retention, {kind}", gib(sizes["total"]),
                      gib(SIZE_GOAL), f"{sizes['total'] / SIZE_GOAL:.2f}",
                      sizes["total"] <= SIZE_GOAL))


def _progress(kind: str):
    def show(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            print(f"  {kind}: {done}/{total} missions written", flush=True)
    return show


def run(missions: int = MISSIONS,
        backends: tuple[str, ...] = ("sqlite", "postgresql")) -> PartResult:
    rows: list = []
    goals: list = []
    with tempfile.TemporaryDirectory(prefix="uh-bench-report-") as tmp:
        for kind in backends:
            run_backend(kind, Path(tmp), missions, rows, goals)
    text_out = table(["backend", "write path sample (rounds)", "the year written",
                      "store", "raw results", "report", "formats"], rows)
    return PartResult("report", text_out, goals)
