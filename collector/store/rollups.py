"""Per-minute, per-hour and per-day rollups of the raw results, and their retention.

A bucket is recomputed from the raw results whenever results for it arrive (found by
their arrival time, past a watermark), so late results count at their measurement time
and a bucket is always exactly what the raw results said. Hour and day buckets are
computed once they are over; day buckets (UTC days) give the uptime reports exact daily
RTT medians and p95 without reading a year of hours. Raw results older than the retention
are deleted only once the rollups have taken them in. Runs on the collector's database thread.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select

from collector.store.database import Store
from collector.store.schema import collector_meta, results, rollups

log = logging.getLogger(__name__)

MINUTE, HOUR, DAY = 60, 3600, 86_400
SETTLE_S = 60.0  # rows that arrive within this of a run are looked at again next run


def rtt_values(kind: str, figures: dict) -> list[float]:
    """What a round contributes to the RTT figures of its bucket."""
    if kind == "icmp":
        return list(figures.get("samples_s") or [])
    key = {"tcp": "connect_s", "http": "connect_s", "dns": "query_s"}.get(kind)
    value = figures.get(key) if key else None
    return [value] if value is not None else []


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


# RTT histograms: bin i holds values in [BIN_FLOOR_S * BIN_RATIO**i, ... **(i + 1)); a
# value is told by its bin's geometric middle, within 2.5 % of the truth.
BIN_FLOOR_S, BIN_RATIO = 1e-4, 1.05


def histogram(values: list[float]) -> dict[int, int]:
    bins: dict[int, int] = {}
    for v in values:
        i = max(0, math.floor(math.log(max(v, BIN_FLOOR_S) / BIN_FLOOR_S, BIN_RATIO)))
        bins[i] = bins.get(i, 0) + 1
    return bins


def histogram_percentile(bins: dict[int, int], q: float) -> float | None:
    """Nearest-rank percentile of the values a histogram counts (its bin's middle)."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank, running = max(1, math.ceil(q * total)), 0
    for i in sorted(bins):
        running += bins[i]
        if running >= rank:
            return BIN_FLOOR_S * BIN_RATIO ** (i + 0.5)
    raise AssertionError("unreachable: the ranks add up to the total")


@dataclass(frozen=True)
class Bucket:
    mission: str
    check_id: str
    resolution_s: int
    start: float


WATERMARKS = ((MINUTE, "rollup_minute_received_through"),
             (HOUR, "rollup_hour_received_through"),
             (DAY, "rollup_day_received_through"))


class Rollups:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _meta(self, conn, key: str) -> float:
        value = conn.execute(select(collector_meta.c.value).where(
            collector_meta.c.key == key)).scalar()
        return float(value) if value is not None else 0.0

    def _set_meta(self, conn, key: str, value: float) -> None:
        conn.execute(delete(collector_meta).where(collector_meta.c.key == key))
        conn.execute(insert(collector_meta).values(key=key, value=repr(value)))

    def run(self, now: float) -> int:
        """Recomputes every bucket that got results since the last run; returns how many."""
        done = 0
        for resolution, key in WATERMARKS:
            with self.store.engine.begin() as conn:
                watermark = self._meta(conn, key)
                # Hours and days are summed up once over; until then their rows stay past
                # the mark.
                horizon = now - SETTLE_S if resolution == MINUTE else min(
                    now - SETTLE_S, math.floor(now / resolution) * resolution)
                if horizon <= watermark:
                    continue
                dirty = {
                    Bucket(m, c, resolution, math.floor(t / resolution) * resolution)
                    for m, c, t in conn.execute(select(
                        results.c.mission, results.c.check_id, results.c.started_at
                    ).where(results.c.received_at > watermark).distinct())
                }
                dirty = {b for b in dirty if b.start + resolution <= now or resolution == MINUTE}
                for bucket in sorted(dirty, key=lambda b: (b.mission, b.check_id, b.start)):
                    self._recompute(conn, bucket)
                self._set_meta(conn, key, horizon)
                done += len(dirty)
        return done

    def _recompute(self, conn, bucket: Bucket) -> None:
        rows = conn.execute(select(results.c.kind, results.c.ok, results.c.figures).where(
            results.c.mission == bucket.mission, results.c.check_id == bucket.check_id,
            results.c.started_at >= bucket.start,
            results.c.started_at < bucket.start + bucket.resolution_s)).all()
        match = ((rollups.c.mission == bucket.mission) & (rollups.c.check_id == bucket.check_id)
                 & (rollups.c.resolution_s == bucket.resolution_s)
                 & (rollups.c.bucket_start == bucket.start))
        conn.execute(delete(rollups).where(match))
        if rows:
            conn.execute(insert(rollups).values(summary_row(
                bucket, [(kind, ok, json.loads(figures)) for kind, ok, figures in rows])))

    def write(self, rows: list[dict]) -> None:
        """Stores already summarised buckets (rows from summary_row), replacing none: for
        loading history the raw results of which are gone (the report benchmark)."""
        with self.store.engine.begin() as conn:
            conn.execute(insert(rollups), rows)

    def prune(self, now: float, raw_retention_s: float,
              minute_retention_s: float | None = None) -> int:
        """Deletes raw results older than the retention that every rollup has taken in,
        and minute rollups older than theirs (hours and days are kept for good)."""
        with self.store.engine.begin() as conn:
            taken_in = min(self._meta(conn, key) for _resolution, key in WATERMARKS)
            deleted = conn.execute(delete(results).where(
                results.c.started_at < now - raw_retention_s,
                results.c.received_at <= taken_in)).rowcount
            minutes = 0 if minute_retention_s is None else conn.execute(delete(rollups).where(
                rollups.c.resolution_s == MINUTE,
                rollups.c.bucket_start < now - minute_retention_s)).rowcount
        if deleted:
            log.info("deleted %d raw results older than %.0f days", deleted,
                     raw_retention_s / 86_400)
        if minutes:
            log.info("deleted %d minute rollups older than %.0f days", minutes,
                     minute_retention_s / 86_400)
        return deleted

    def query(self, mission: str, check_id: str, resolution_s: int, start: float,
              end: float) -> list:
        with self.store.engine.connect() as conn:
            return list(conn.execute(select(rollups).where(
                rollups.c.mission == mission, rollups.c.check_id == check_id,
                rollups.c.resolution_s == resolution_s, rollups.c.bucket_start >= start,
                rollups.c.bucket_start < end).order_by(rollups.c.bucket_start)))

    def count(self) -> dict[int, int]:
        with self.store.engine.connect() as conn:
            return dict(conn.execute(select(rollups.c.resolution_s, func.count()).group_by(
                rollups.c.resolution_s)).all())


def loss_ratio(row) -> float | None:
    """The exact ICMP loss of a rollup row."""
    if not row.sent:
        return None
    return (row.sent - row.received) / row.sent



def summary_row(bucket: Bucket, rounds: list[tuple[str, bool, dict]]) -> dict:
    """The rollup row of a bucket from its rounds (kind, ok, figures)."""
    values: list[float] = []
    sent = received = 0
    icmp = False
    for kind, _ok, figures in rounds:
        values.extend(rtt_values(kind, figures))
        if kind == "icmp":
            icmp = True
            sent += figures.get("sent", 0)
            received += figures.get("received", 0)
    values.sort()
    return dict(
        mission=bucket.mission, check_id=bucket.check_id,
        resolution_s=bucket.resolution_s, bucket_start=bucket.start,
        rounds=len(rounds), rounds_ok=sum(1 for _k, ok, _f in rounds if ok),
        samples=len(values),
        rtt_min_s=values[0] if values else None,
        rtt_median_s=statistics.median(values) if values else None,
        rtt_p95_s=percentile(values, 0.95) if values else None,
        rtt_max_s=values[-1] if values else None,
        sent=sent if icmp else None, received=received if icmp else None,
        rtt_histogram=json.dumps(histogram(values), separators=(",", ":"))
        if bucket.resolution_s == DAY and values else None)
