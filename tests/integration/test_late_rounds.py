"""Issue 12, case 6: a round far older than its check's newest (a late backlog, a forged
date) replays the check's history in bounded steps, off the ingest path: ingest records the
replay and goes on, the collector's replay job feeds at most `replay_chunk` stored rounds a
step on the database thread, ingest is answered between the steps, and the history it
writes in the end is the one a replay from scratch writes. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import delete

from collector.config import CollectorConfig, RetentionSettings
from collector.core import Collector
from collector.state.hysteresis import Policy
from collector.state.timeline import Timelines, round_of, round_of_row
from collector.store.database import Store
from collector.store.schema import access_intervals, state_intervals
from tests.integration.test_store import T0, down_at, history, ingest, up_at
from tests.unit.test_measurement import icmp
from unhindered.measurement import Batch

INTERVAL = 60
DAYS = 3
ICMP, DOCS = "internet-icmp", "docs-icmp"
KEY = ("FRA", ICMP)


def rounds_batch(rows, check=ICMP, group="internet", first_seq=1, probe="fra-1",
                 mission="FRA", outbox="a" * 32) -> Batch:
    """Rounds of one check every INTERVAL, as (seconds after T0, ok)."""
    measurements = [icmp(
        seq=first_seq + i, probe_id=probe, mission=mission, check_id=check, group=group,
        started_at=datetime.fromtimestamp(T0 + t, UTC), ok=good,
        reason=None if good else "timeout", interval_s=INTERVAL,
        figures={"sent": 1, "received": 1, "loss_ratio": 0, "rtt_min_s": 0.02,
                 "rtt_median_s": 0.02, "rtt_mean_s": 0.02, "rtt_max_s": 0.02,
                 "samples_s": [0.02]} if good else {"sent": 1, "received": 0, "loss_ratio": 1.0})
        for i, (t, good) in enumerate(rows)]
    return Batch.model_validate({"protocol": 1, "probe_id": probe, "mission": mission,
                                 "outbox_id": outbox, "measurements": measurements})


def days_of_rounds(store, check, group, first_seq, outage_every_s) -> int:
    """DAYS of a check's rounds, with a 5-round outage every `outage_every_s` (halfway),
    stored straight through the store (a batch holds at most 5,000); returns the next seq."""
    half = outage_every_s // 2
    rows = [(t, not half <= t % outage_every_s < half + 5 * INTERVAL)
            for t in range(INTERVAL, DAYS * 86_400, INTERVAL)]
    for i in range(0, len(rows), 5_000):
        store.store_batch(rounds_batch(rows[i:i + 5_000], check, group, first_seq + i), T0)
    return first_seq + len(rows)


def a_mission_with_days_of_history(store) -> int:
    seq = days_of_rounds(store, ICMP, "internet", 1, 6 * 3_600)
    return days_of_rounds(store, DOCS, "documents", seq, 7 * 3_600 + 600)


# Three failed rounds between the first two, three days late: down from the third.
LATE = [(INTERVAL + 10, False), (INTERVAL + 20, False), (INTERVAL + 30, False)]


def everything(store) -> list:
    return [history(store, ICMP), history(store, DOCS),
            *(history(store, g, table=access_intervals) for g in ("internet", "documents", "*"))]


def from_scratch(store) -> list:
    """The history a collector writes replaying every stored round from nothing."""
    with store.engine.begin() as conn:
        conn.execute(delete(state_intervals))
        conn.execute(delete(access_intervals))
    scratch = Timelines(store, lambda _mission: Policy())
    scratch.load(store.latest_per_check())
    return everything(store)


def test_a_replay_reads_each_round_as_ingest_did(any_store):
    """A replay reads the machine's fields straight from the stored columns (the figures'
    by the database): the same rounds as from the stored Measurements, of every kind."""
    kinds = [
        ("icmp", icmp()["figures"]),  # a third lost, a median RTT
        ("icmp", {"sent": 3, "received": 0, "loss_ratio": 1.0}),
        ("tcp", {"connect_s": 0.0171}), ("tcp", {}),
        ("http", {"connect_s": 0.031, "first_byte_s": 0.09, "status_code": 200}),
        ("dns", {"query_s": 0.004, "rcode": "NOERROR", "answers": ["192.0.2.1"]}),
    ]
    measurements = []
    for i, (kind, figures) in enumerate(kinds):
        for j, ok in enumerate((True, False)):
            n = 2 * i + j
            measurements.append({
                **icmp(seq=n + 1, check_id="mixed", ok=ok, interval_s=30.5,
                       started_at=datetime.fromtimestamp(T0 + n + 0.123456, UTC)),
                "kind": kind, "figures": figures, "reason": None if ok else "refused",
                "local_ok": (None, True, False)[n % 3]})
    any_store.store_batch(Batch.model_validate({
        "protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "a" * 32,
        "measurements": measurements}), T0)
    expected = [round_of(m) for m in any_store.rounds("FRA", "mixed", 0.0)]
    assert [round_of_row(r) for r in any_store.round_rows("FRA", "mixed", 0.0)] == expected
    assert [round_of_row(r) for r in any_store.round_rows_before("FRA", "mixed", T0 + 5, 3)] \
        == expected[2:5]
    assert [round_of_row(r) for r in any_store.round_rows(
        "FRA", "mixed", 0.0, after=expected[2].time, limit=2)] == expected[3:5]
    # A second probe's round at the same time as one read last comes with it: the next
    # read starts after that time.
    twin = {**measurements[4], "seq": 1, "probe_id": "fra-2", "ok": False, "reason": "timeout"}
    any_store.store_batch(Batch.model_validate({
        "protocol": 1, "probe_id": "fra-2", "mission": "FRA", "outbox_id": "b" * 32,
        "measurements": [twin]}), T0)
    rows = any_store.round_rows("FRA", "mixed", 0.0, after=expected[2].time, limit=2)
    assert [(r.started_at, r.ok) for r in rows] == [
        (expected[3].time, expected[3].ok), (expected[4].time, True), (expected[4].time, False)]


def test_a_late_round_is_replayed_in_bounded_steps_off_ingest(any_store):
    next_seq = a_mission_with_days_of_history(any_store)
    timelines = Timelines(any_store, lambda _mission: Policy())
    timelines.load(any_store.latest_per_check())
    timelines.replay_chunk = 500
    before = everything(any_store)
    newest = timelines.machines[KEY].last_time - T0
    reads: list[int] = []
    read = any_store.round_rows

    def counted(*args, **kwargs):
        rows = read(*args, **kwargs)
        reads.append(len(rows))
        return rows

    any_store.round_rows = counted
    # The late rounds are recorded, and the check's replay waits for the replay job.
    assert ingest_changed(any_store, timelines, rounds_batch(LATE, first_seq=next_seq)) == set()
    assert KEY in timelines.replays and everything(any_store) == before
    assert max(reads) <= 500

    # Meanwhile the check's own newer rounds are fed as they come: its live state follows.
    fresh = [(newest + INTERVAL * i, False) for i in (1, 2, 3)]
    ingest(any_store, timelines, rounds_batch(fresh, first_seq=next_seq + 3))
    assert timelines.machines[KEY].state == "down"
    # One replay step; then an even older round arrives, behind the step: the replay
    # starts again from there.
    assert timelines.replay_step()
    ingest(any_store, timelines, rounds_batch([(5, True)], first_seq=next_seq + 6))
    steps = 0
    while timelines.replay_step():
        steps += 1
    assert not timelines.replays
    assert max(reads) <= 500
    assert steps >= DAYS * 86_400 / INTERVAL / 500 - 2  # one check's rounds, 500 a step
    replayed = everything(any_store)
    # Down decided by the third late failure, placed between the round before them (60)
    # and the first (70); up by the second good round after (180), placed between the
    # last failure (90) and the first good round (120) (docs/states.md).
    down, up = down_at(INTERVAL, INTERVAL + 10), up_at(INTERVAL + 30, 2 * INTERVAL)
    assert replayed[0][:2] == [(5, down, "up"), (down, up, "down")]
    assert replayed[0][-1] == (down_at(newest, newest + INTERVAL), None, "down")
    assert replayed == from_scratch(any_store)


def ingest_changed(store, timelines, batch) -> set[str]:
    return timelines.apply(store.store_batch(batch, received_at=T0).new)


async def test_ingest_is_answered_while_a_late_rounds_replay_runs(any_store):
    next_seq = a_mission_with_days_of_history(any_store)
    config = CollectorConfig(retention=RetentionSettings(raw_days=3650))
    collector = Collector(config, Store(any_store.url))
    await collector.start()
    try:
        collector.timelines.replay_chunk = 500
        before = everything(any_store)
        events: list[str] = []
        step = collector.timelines.replay_step

        def logged_step():
            more = step()
            events.append("step" if more else "replayed")
            return more

        collector.timelines.replay_step = logged_step
        await collector.store_results(rounds_batch(LATE, first_seq=next_seq))
        # Another probe's batch (another mission) while the replay runs.
        await collector.store_results(rounds_batch(
            [(DAYS * 86_400 + t, True) for t in (0, 60)], probe="ken-1", mission="KEN"))
        events.append("answered")
        assert everything(any_store) == before  # the replay has not finished
        assert collector.timelines.machines[("KEN", ICMP)].state == "up"
        for _ in range(600):
            if "replayed" in events:
                break
            await asyncio.sleep(0.05)
        assert events.index("answered") < events.index("replayed")
        assert events.count("step") >= 3
        replayed = everything(any_store)
        assert replayed != before
    finally:
        await collector.stop()
    assert replayed == from_scratch(any_store)


def test_a_late_round_that_changes_no_period_recombines_no_access(any_store):
    """The usual late round (one more good round inside an up period) leaves every
    period as it was: its replay's last step rewrites no access."""
    next_seq = a_mission_with_days_of_history(any_store)
    timelines = Timelines(any_store, lambda _mission: Policy())
    timelines.load(any_store.latest_per_check())
    timelines.replay_chunk = 1_000
    before = everything(any_store)
    combined = []
    combine = timelines._combine
    timelines._combine = lambda *args: (combined.append(args), combine(*args))
    assert ingest_changed(any_store, timelines,
                          rounds_batch([(INTERVAL + 30, True)], first_seq=next_seq)) == set()
    while timelines.replay_step():
        pass
    assert combined == []
    assert everything(any_store) == before
