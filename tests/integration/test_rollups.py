"""Rollups and retention on both backends."""

from __future__ import annotations

import pytest

from collector.store.rollups import HOUR, MINUTE, Rollups, loss_ratio
from tests.integration.test_store import T0, batch_of


def store_rounds(store, rows, first_seq=1):
    store.store_batch(batch_of(rows, first_seq=first_seq), received_at=T0 + 10_000)


def test_minute_and_hour_buckets_are_exact(any_store):
    # 0..50 s in minute 0, 60..110 s in minute 1 (one failure there).
    store_rounds(any_store, [(t, t != 70) for t in range(0, 120, 10)])
    rollups = Rollups(any_store)
    assert rollups.run(now=T0 + 20_000) == 3  # two minutes and one hour
    minutes = rollups.query("FRA", "internet-icmp", MINUTE, T0, T0 + HOUR)
    assert [(r.bucket_start - T0, r.rounds, r.rounds_ok, r.samples) for r in minutes] == [
        (0, 6, 6, 6), (60, 6, 5, 5)]
    assert loss_ratio(minutes[1]) == pytest.approx(1 / 6)
    assert minutes[0].rtt_median_s == pytest.approx(0.02)
    [hour] = rollups.query("FRA", "internet-icmp", HOUR, T0, T0 + HOUR)
    assert (hour.rounds, hour.rounds_ok, hour.sent, hour.received) == (12, 11, 12, 11)
    assert rollups.run(now=T0 + 20_001) == 0  # nothing new


def test_backfill_recomputes_its_buckets(any_store):
    store_rounds(any_store, [(0, True), (10, True)])
    rollups = Rollups(any_store)
    rollups.run(now=T0 + 20_000)
    # Late results for the same minute (another outbox, arriving later).
    late = batch_of([(20, False), (30, False)], outbox="b" * 32)
    any_store.store_batch(late, received_at=T0 + 30_000)
    rollups.run(now=T0 + 40_000)
    [minute] = rollups.query("FRA", "internet-icmp", MINUTE, T0, T0 + 60)
    assert (minute.rounds, minute.rounds_ok) == (4, 2)
    [hour] = rollups.query("FRA", "internet-icmp", HOUR, T0, T0 + HOUR)
    assert (hour.rounds, hour.rounds_ok) == (4, 2)


def test_the_current_hour_waits_until_it_is_over(any_store):
    store_rounds(any_store, [(0, True)])
    rollups = Rollups(any_store)
    rollups.run(now=T0 + 10_000 + 120)  # the rows' own hour (T0) is long over ...
    assert len(rollups.query("FRA", "internet-icmp", HOUR, T0, T0 + HOUR)) == 1
    # ... but results measured in the hour that is still running are not summed up yet.
    any_store.store_batch(batch_of([(14_400, True)], first_seq=5), received_at=T0 + 14_430)
    rollups.run(now=T0 + 14_500)
    assert rollups.query("FRA", "internet-icmp", HOUR, T0 + 14_400, T0 + 6 * HOUR) == []
    rollups.run(now=T0 + 5 * HOUR + 120)
    assert len(rollups.query("FRA", "internet-icmp", HOUR, T0 + 14_400, T0 + 6 * HOUR)) == 1


def test_retention_deletes_only_rolled_up_raw_results(any_store):
    store_rounds(any_store, [(0, True), (10, True)])
    rollups = Rollups(any_store)
    day = 86_400
    assert rollups.prune(now=T0 + 40 * day, raw_retention_s=30 * day) == 0  # not rolled up
    rollups.run(now=T0 + 40 * day)
    assert rollups.prune(now=T0 + 40 * day, raw_retention_s=30 * day) == 2
    assert any_store.results_of_probe("fra-1") == []
    assert len(rollups.query("FRA", "internet-icmp", MINUTE, T0, T0 + HOUR)) == 1
