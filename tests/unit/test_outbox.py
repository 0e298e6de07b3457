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
    (tmp_path / "outbox.sqlite").mkdir()  # not a database file
    config.write_text(
        "probe_id: fra-1\nmission: FRA\noutbox: outbox.sqlite\n"
        "collector: {urls: ['http://127.0.0.1:9/'], token: t}\n"
        "checks: [{id: web, kind: tcp, target: 127.0.0.1, port: 9}]\n")
    done = subprocess.run([sys.executable, "-m", "probes", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot start: outbox" in done.stderr and "Traceback" not in done.stderr
    assert str(tmp_path / "outbox.sqlite") in done.stderr
