"""The store and the state history on both backends (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text

from collector.state.hysteresis import Policy
from collector.state.timeline import Timelines
from collector.store.database import MIGRATIONS, RESULT_COLUMNS
from collector.store.schema import access_intervals, metadata, results
from tests.unit.test_measurement import icmp
from unhindered.measurement import Batch

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def batch_of(rows: list[tuple[float, bool]], check="internet-icmp", probe="fra-1",
             outbox="a" * 32, first_seq=1, group="internet") -> Batch:
    measurements = []
    for i, (t, good) in enumerate(rows):
        figures = ({"sent": 1, "received": 1, "loss_ratio": 0, "rtt_min_s": 0.02,
                    "rtt_median_s": 0.02, "rtt_mean_s": 0.02, "rtt_max_s": 0.02,
                    "samples_s": [0.02]} if good else
                   {"sent": 1, "received": 0, "loss_ratio": 1.0})
        measurements.append(icmp(
            seq=first_seq + i, probe_id=probe, check_id=check, group=group,
            started_at=datetime.fromtimestamp(T0 + t, UTC), ok=good,
            reason=None if good else "timeout", figures=figures, interval_s=10))
    return Batch.model_validate({"protocol": 1, "probe_id": probe, "mission": "FRA",
                                 "outbox_id": outbox, "measurements": measurements})


# Where the collector places a change (docs/states.md, "When an outage starts and ends"):
# between a good round's last answer (batch_of's rounds last 2.1 s, RTT 0.02 s) and the
# next bad round's start; between a bad round's start and the next good round's.
def down_at(good: float, bad: float) -> float:
    return pytest.approx((good + 2.08 + bad) / 2)


def up_at(bad: float, good: float) -> float:
    return (bad + good) / 2


def history(store, check="internet-icmp", table=None):
    kwargs = {"table": table} if table is not None else {}
    return [(r.started_at - T0, None if r.ended_at is None else r.ended_at - T0, r.state)
            for r in store.intervals("FRA", check, **kwargs)]


def ingest(store, timelines, batch):
    new = store.store_batch(batch, received_at=T0).new
    timelines.apply(new)


def test_migrations_build_the_schema_from_empty_and_are_idempotent(any_store):
    tables = set(inspect(any_store.engine).get_table_names())
    assert {"probes", "results", "state_intervals", "access_intervals", "rollups",
            "alembic_version"} <= tables
    any_store.migrate()  # again: nothing to do, nothing lost
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    with any_store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
        # The migrations build exactly the tables collector/store/schema.py describes.
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_batches_are_stored_once(any_store):
    any_store.add_probe("fra-1", "FRA")
    new, dups, _ = any_store.store_batch(batch_of([(0, True), (10, True)]), T0)
    assert (len(new), dups) == (2, 0)
    new, dups, _ = any_store.store_batch(batch_of([(0, True), (10, True), (20, False)]), T0)
    assert (len(new), dups) == (1, 2)
    assert [r.seq for r in any_store.results_of_probe("fra-1")] == [1, 2, 3]
    # A reinstalled probe (new outbox) starts its seqs again without clashing.
    new, dups, _ = any_store.store_batch(batch_of([(30, True)], outbox="b" * 32), T0)
    assert (len(new), dups) == (1, 0)
    # Every field comes back as it went in (the insert is the driver's own SQL).
    assert {c.name for c in results.columns} - {"id"} == set(RESULT_COLUMNS)
    stored = any_store.rounds("FRA", "internet-icmp", 0.0)
    assert [m.model_dump() for m in stored] == [
        m.model_dump() for m in [*batch_of([(0, True), (10, True), (20, False)]).measurements,
                                 *batch_of([(30, True)], outbox="b" * 32).measurements]]


def test_duplicates_are_the_batch_seqs_stored_before(any_store):
    """Seqs are sparse in a batch polled over SNMP (each check's newest round): the stored
    seqs between a batch's first and last are no duplicates unless the batch has them."""
    any_store.store_batch(batch_of([(t, True) for t in range(0, 50, 10)]), T0)  # seqs 1-5
    sparse = Batch.model_validate({**batch_of([(0, True)]).model_dump(), "measurements": [
        *batch_of([(0, True)]).measurements, *batch_of([(60, True)], first_seq=9).measurements]})
    new, dups, refused = any_store.store_batch(sparse, T0)
    assert ([m.seq for m in new], dups, refused) == ([9], 1, [])


@pytest.mark.parametrize("bad", ["surrogate \udcff in the detail", "NUL \x00 in the detail"])
def test_a_row_the_database_refuses_fails_no_other(any_store, bad):
    """The last line of defence, for what the wire's rules did not foresee: the rows are
    stored in halves until the one the database refuses stands alone."""
    if "NUL" in bad and any_store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite stores NUL in text")
    good = batch_of([(t, True) for t in range(0, 70, 10)])  # seqs 1-7
    measurements = list(good.measurements)
    # Past validation, as a rule the wire lacks would let it through.
    measurements[4] = measurements[4].model_copy(update={"detail": bad})
    new, dups, refused = any_store.store_batch(
        good.model_copy(update={"measurements": measurements}), T0)
    assert ([m.seq for m in new], dups) == ([1, 2, 3, 4, 6, 7], 0)
    [(seq, why)] = refused
    assert seq == 5 and why
    assert [r.seq for r in any_store.results_of_probe("fra-1")] == [1, 2, 3, 4, 6, 7]


def test_rows_stored_before_the_wire_rules_are_read_back_or_left_out(any_store):
    """An older collector stored what today's rules refuse (issue 12): a newline or a NUL
    in a detail, year 1, an infinite duration. Its text is read as the probe now writes
    it; a row that cannot be read at all is left out, rather than a collector that cannot
    start (latest_per_check) or replay a check's history (rounds)."""
    legacy = {"a": {"detail": "line\nforged"}, "b": {"duration_s": float("inf")},
              "c": {"started_at": datetime(1, 1, 1, tzinfo=UTC)}}
    if any_store.engine.dialect.name == "sqlite":
        legacy["d"] = {"detail": "Service\x00Unavailable"}
    for n, (check, changes) in enumerate(legacy.items()):
        [m] = batch_of([(0, True)], check=check, first_seq=n + 1).measurements
        any_store.store_batch(Batch.model_construct(
            protocol=1, probe_id="fra-1", mission="FRA", outbox_id="a" * 32,
            measurements=[m.model_copy(update=changes)]), T0)
    latest = {m.check_id: m for m in any_store.latest_per_check()}
    assert latest["a"].detail == "line\\x0aforged"
    assert set(latest) == {"a", "d"} & set(legacy)
    if "d" in legacy:
        assert latest["d"].detail == "Service\\x00Unavailable"
    assert [m.detail for m in any_store.rounds("FRA", "a", 0.0)] == ["line\\x0aforged"]
    assert any_store.rounds("FRA", "b", 0.0) == []


def test_probe_tokens_and_revocation(any_store):
    token = any_store.add_probe("fra-1", "FRA")
    assert any_store.probe_for_token(token).mission == "FRA"
    assert any_store.probe_for_token(token + "x") is None
    assert any_store.revoke_probe("fra-1") and not any_store.revoke_probe("fra-1")
    assert any_store.probe_for_token(token) is None


def test_live_rounds_then_silence_then_backfill_rewrite_history(any_store):
    timelines = Timelines(any_store, lambda mission: Policy())
    ingest(any_store, timelines, batch_of([(t, True) for t in range(0, 101, 10)]))
    assert history(any_store) == [(0, None, "up")]

    # The probe goes quiet (its link is cut): unknown 3 intervals after the last round.
    timelines.tick(T0 + 200)
    assert history(any_store) == [(0, 130, "up"), (130, None, "unknown")]

    # Its results arrive after the link returns: failures from 110 to 190, then good.
    backlog = [(t, False) for t in range(110, 191, 10)] + [(200, True), (210, True)]
    ingest(any_store, timelines, batch_of(backlog, first_seq=12))
    # Down decided at the third failure (130), up after two good rounds (210), each placed
    # where the rounds show it (between 100 and 110, 190 and 200): at the measured times,
    # and the unknown period is gone.
    down, up = down_at(100, 110), up_at(190, 200)
    assert history(any_store) == [(0, down, "up"), (down, up, "down"), (up, None, "up")]
    access = history(any_store, "*", table=access_intervals)
    assert access == [(0, down, "up"), (down, up, "down"), (up, None, "up")]


def test_a_whole_mission_falling_silent_is_one_commit(any_store):
    """The silence tick writes every check's unknown period in one transaction: one
    commit each made a fleet-wide silence keep the database thread busy for minutes."""
    timelines = Timelines(any_store, lambda mission: Policy())
    checks = [f"check-{i:02d}" for i in range(20)]
    for i, check in enumerate(checks):
        ingest(any_store, timelines, batch_of([(0, True), (10, True)], check=check,
                                              first_seq=1 + 2 * i))
    commits = []

    def count(_conn):
        commits.append(1)

    event.listen(any_store.engine, "commit", count)
    try:
        changed = timelines.tick(T0 + 200)
    finally:
        event.remove(any_store.engine, "commit", count)
    assert changed == {"FRA"}
    assert len(commits) == 1
    assert [history(any_store, check) for check in checks] == \
        [[(0, 40, "up"), (40, None, "unknown")]] * 20
    assert history(any_store, "*", table=access_intervals) == [(0, 40, "up"),
                                                               (40, None, "unknown")]


def test_out_of_order_rounds_from_two_probes_give_the_same_history(any_store):
    rounds = [(t, not 50 <= t <= 90) for t in range(0, 150, 10)]
    timelines = Timelines(any_store, lambda mission: Policy())
    # Probe 2's rounds (odd tens) arrive after probe 1's (even tens) have moved on.
    ingest(any_store, timelines, batch_of(rounds[0::2], probe="fra-1"))
    ingest(any_store, timelines, batch_of(rounds[1::2], probe="fra-2"))
    in_order = Timelines(any_store, lambda mission: Policy())
    # Down decided at 70, placed between 40 and 50; up decided at 110, placed between 90
    # and 100.
    expected = [(0, down_at(40, 50), "up"), (down_at(40, 50), up_at(90, 100), "down"),
                (up_at(90, 100), None, "up")]
    assert history(any_store) == expected
    # Replaying everything from scratch (a restart) gives the same periods.
    in_order.load(any_store.latest_per_check())
    assert history(any_store) == expected
    assert in_order.machines[("FRA", "internet-icmp")].state == "up"


def test_access_combines_groups(any_store):
    timelines = Timelines(any_store, lambda mission: Policy(fail_k=1, window_n=1, recover_m=1))
    ingest(any_store, timelines, batch_of([(0, True), (10, True), (20, True)], check="web-a"))
    ingest(any_store, timelines, batch_of([(0, True), (10, False), (20, True)], check="web-b",
                                          first_seq=10))
    ingest(any_store, timelines, batch_of([(0, True), (10, True), (20, False)], check="docs",
                                          first_seq=20, group="documents"))
    # internet has access while either of its checks is up; the mission needs every group.
    assert history(any_store, "internet", table=access_intervals) == [(0, None, "up")]
    down = down_at(10, 20)  # between docs' last good round and its failure
    assert history(any_store, "documents", table=access_intervals) == [
        (0, down, "up"), (down, None, "down")]
    assert history(any_store, "*", table=access_intervals) == [(0, down, "up"),
                                                               (down, None, "down")]
    assert timelines.access[("FRA", "*")] == ("down", pytest.approx(T0 + down.expected))


@pytest.mark.parametrize("fail_k", [1, 3])
def test_local_checks_do_not_count_for_access(any_store, fail_k):
    timelines = Timelines(any_store, lambda mission: Policy(fail_k=fail_k))
    ingest(any_store, timelines, batch_of([(0, True)], check="internet-icmp"))
    ingest(any_store, timelines, batch_of([(0, False)], check="local-gateway", group="local",
                                          first_seq=5))
    assert history(any_store, "*", table=access_intervals) == [(0, None, "up")]


def test_a_check_added_later_does_not_make_the_past_unknown(any_store):
    timelines = Timelines(any_store, lambda mission: Policy())
    ingest(any_store, timelines, batch_of([(t, True) for t in range(0, 200, 10)]))
    # A documents check starts reporting later; then an old round of the first check
    # arrives late, which recomputes access from early on.
    ingest(any_store, timelines, batch_of([(150, True), (160, True)], check="docs",
                                          group="documents", first_seq=50))
    ingest(any_store, timelines, batch_of([(5, True)], first_seq=60))
    assert history(any_store, "*", table=access_intervals) == [(0, None, "up")]


def test_a_probe_notified_change_that_arrives_late_is_placed_before_the_newer_one(any_store):
    """SNMP informs are retried over a cut: the checkUp sent after it may get through
    before the checkDown sent during it. The down period still lies between the two."""
    timelines = Timelines(any_store, lambda mission: Policy())
    assert timelines.confirm("FRA", "internet-icmp", None, T0, "up", "snmp checkUp")
    # The checkUp of the recovery arrives first: nothing changes yet.
    assert not timelines.confirm("FRA", "internet-icmp", None, T0 + 44, "up", "snmp checkUp")
    assert timelines.confirm("FRA", "internet-icmp", None, T0 + 40, "down",
                             "snmp checkDown (timeout)")
    assert history(any_store) == [(0, 40, "up"), (40, 44, "down"), (44, None, "up")]
    # Received again (a retried inform whose answer was lost): nothing more changes.
    assert not timelines.confirm("FRA", "internet-icmp", None, T0 + 40, "down",
                                 "snmp checkDown (timeout)")
    assert history(any_store) == [(0, 40, "up"), (40, 44, "down"), (44, None, "up")]
