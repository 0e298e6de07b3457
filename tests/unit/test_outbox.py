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
