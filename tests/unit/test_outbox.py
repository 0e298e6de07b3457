import asyncio
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

from probes.outbox import Outbox
from unhindered.measurement import TcpFigures, TcpMeasurement


def tcp_result(n: int) -> TcpMeasurement:
    return TcpMeasurement(
        probe_id="fra-1", mission="FRA", check_id="web", target="127.0.0.1",
        started_at=datetime(2026, 1, 1, 0, 0, n % 60, tzinfo=UTC), duration_s=0.001, ok=True,
        figures=TcpFigures(connect_s=0.001 * n))


def test_seqs_are_contiguous_durable_and_never_reused(tmp_path):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    assert [box.append_sync(tcp_result(n)) for n in range(1, 6)] == [1, 2, 3, 4, 5]
    outbox_id = box.outbox_id
    box.close()

    box = Outbox(path)  # reopened, as after a restart
    assert box.outbox_id == outbox_id
    rows = box.peek_sync(3)
    assert [seq for seq, _ in rows] == [1, 2, 3]
    assert TcpMeasurement.model_validate_json(rows[2][1]) == tcp_result(3).model_copy(
        update={"seq": 3})
    assert box.ack_sync(3) == 3
    assert box.ack_sync(1) == 0  # a stale ack changes nothing
    assert box.ack_sync(5) == 2
    stats = box.stats_sync()
    assert (stats.depth, stats.last_seq, stats.acked_through) == (0, 5, 5)
    assert box.append_sync(tcp_result(6)) == 6  # not 1: seqs are never reused
    box.close()


def test_new_outbox_gets_a_new_identity(tmp_path):
    a, b = Outbox(tmp_path / "a.sqlite"), Outbox(tmp_path / "b.sqlite")
    assert a.outbox_id != b.outbox_id and len(a.outbox_id) == 32
    a.close()
    b.close()


def test_a_full_bound_drops_the_oldest_counts_them_and_keeps_the_file_bounded(tmp_path):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=256 * 1024)
    seqs = [box.append_sync(tcp_result(n)) for n in range(1, 3001)]
    assert None not in seqs  # every result found room: the oldest made way for it
    stats = box.stats_sync()
    assert stats.dropped > 0
    assert stats.last_seq == 3000
    kept = [seq for seq, _ in box.peek_sync(5000)]
    # The newest are kept, contiguous; everything older was dropped and counted.
    assert kept == list(range(3001 - len(kept), 3001))
    assert stats.dropped == 3000 - len(kept) == 3000 - stats.depth
    assert path.stat().st_size <= 256 * 1024 == stats.limit_bytes
    assert not stats.disk_full
    box.close()

    box = Outbox(path, max_bytes=256 * 1024)  # the count survives a restart
    assert box.stats_sync().dropped == stats.dropped
    box.close()


def test_acknowledged_rows_are_never_sent_again(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    for n in range(1, 6):
        box.append_sync(tcp_result(n))
    box.ack_sync(3)
    assert [seq for seq, _ in box.peek_sync(10)] == [4, 5]
    assert box.pending_sync()[0] == 2
    box.close()


def test_an_outbox_that_cannot_be_opened_stops_the_start_with_a_message(tmp_path):
    config = tmp_path / "probe.yaml"
    # Not a database (a directory there is refused earlier, by the config's file checks).
    (tmp_path / "outbox.sqlite").write_bytes(b"not a database, " * 512)
    config.write_text(
        "probe_id: fra-1\nmission: FRA\noutbox: outbox.sqlite\n"
        "collector: {urls: ['http://127.0.0.1:9/'], token: t}\n"
        "checks: [{id: web, kind: tcp, target: 127.0.0.1, port: 9}]\n")
    done = subprocess.run([sys.executable, "-m", "probes", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot start: outbox" in done.stderr and "Traceback" not in done.stderr
    assert str(tmp_path / "outbox.sqlite") in done.stderr


def test_results_recorded_together_share_one_commit_and_each_waits_for_it(tmp_path):
    async def record() -> tuple[list[int | None], tuple[int, float | None]]:
        box = Outbox(tmp_path / "outbox.sqlite")
        try:
            # Five rounds ending in one pass of the loop, then one while that commit runs.
            first = asyncio.gather(*(box.append(tcp_result(n)) for n in range(1, 6)))
            await asyncio.sleep(0)
            seqs = [*await asyncio.gather(first, box.append(tcp_result(6)))]
            return [*seqs[0], seqs[1]], await box.pending()
        finally:
            box.close()

    seqs, (depth, oldest) = asyncio.run(record())
    assert seqs == [1, 2, 3, 4, 5, 6] and depth == 6
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    queued = [at for (at,) in db.execute("SELECT queued_at FROM outbox ORDER BY seq")]
    db.close()
    assert len(set(queued[:5])) == 1, "one transaction stamps its rows with one time"
    assert queued[5] > queued[0] and oldest == queued[0]


def test_a_round_cancelled_while_its_result_is_queued_still_has_it_stored(tmp_path):
    async def record_then_stop() -> None:
        box = Outbox(tmp_path / "outbox.sqlite")
        rounds = [asyncio.ensure_future(box.append(tcp_result(n))) for n in (1, 2)]
        await asyncio.sleep(0)  # queued, not yet handed to the worker
        for r in rounds:
            r.cancel()
        box.close()  # as the probe's stop does after cancelling its rounds

    asyncio.run(record_then_stop())
    box = Outbox(tmp_path / "outbox.sqlite")
    assert [seq for seq, _ in box.peek_sync(10)] == [1, 2]
    assert box.pending_sync()[0] == 2  # read from the file when reopened
    box.close()


def test_results_recorded_within_the_gather_time_share_one_commit(tmp_path):
    async def record() -> tuple[list[int | None], float]:
        box = Outbox(tmp_path / "outbox.sqlite", gather_s=0.2)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            first = asyncio.ensure_future(box.append(tcp_result(1)))
            await asyncio.sleep(0.05)  # a round ending a little later joins the commit
            assert not first.done()
            seqs = await asyncio.gather(first, box.append(tcp_result(2)))
            return seqs, loop.time() - started
        finally:
            box.close()

    seqs, waited = asyncio.run(record())
    assert seqs == [1, 2] and waited >= 0.2 - 1e-3
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    queued = [at for (at,) in db.execute("SELECT queued_at FROM outbox ORDER BY seq")]
    db.close()
    assert len(set(queued)) == 1, "one transaction stamps its rows with one time"
