"""The disk-full drill: the probe's outbox on a small tmpfs, filled up.

On a full disk the outbox must not raise into the round loop, must drop its oldest results
and count them, must survive an acknowledgement it cannot delete, must open again after a
restart, and must store new results again once there is room.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from probes import outbox as outbox_module
from probes.outbox import Outbox
from unhindered.measurement import TcpFigures, TcpMeasurement

DISK_BYTES = 2 * 1024 * 1024
RESERVE_BYTES = 256 * 1024


def result(n: int) -> TcpMeasurement:
    return TcpMeasurement(
        probe_id="fra-1", mission="FRA", check_id="web", target="127.0.0.1",
        started_at=datetime(2026, 1, 1, n // 3600 % 24, n // 60 % 60, n % 60, tzinfo=UTC),
        duration_s=0.001, ok=True, detail="x" * 300, figures=TcpFigures(connect_s=0.001 * n))


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the disk-full drill mounts a tmpfs: run it as root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
                   check=True)
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)]).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True)  # something held it


def fill(path: Path) -> None:
    """Writes a ballast file until the disk has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    free = os.statvfs(path.parent)
    assert free.f_bavail == 0, "the ballast should leave no room"


def test_a_full_disk_drops_the_oldest_never_raises_and_recovers(small_disk, monkeypatch):
    monkeypatch.setattr(outbox_module, "RECOVERY_RETRY_S", 0.0)  # no waiting in a test
    path = small_disk / "outbox.sqlite"
    other = small_disk / "other-files"  # what else the disk holds, deleted at the end
    other.write_bytes(b"\0" * (DISK_BYTES // 2))
    box = Outbox(path, max_bytes=64 * 1024 * 1024, reserve_bytes=RESERVE_BYTES)
    try:
        assert (small_disk / "outbox.sqlite.reserve").stat().st_size == RESERVE_BYTES
        # Results until the disk is full, and well beyond: append never raises.
        n = 0
        while not box.stats_sync().disk_full:
            n += 1
            assert n < 20_000, "the disk never filled up"
            assert box.append_sync(result(n)) == n
        for _ in range(500):
            n += 1
            assert box.append_sync(result(n)) is not None
        stats = box.stats_sync()
        kept = [seq for seq, _ in box.peek_sync(20_000)]
        assert kept == list(range(n - len(kept) + 1, n + 1))  # the newest, contiguous
        assert stats.dropped == n - len(kept) > 0  # the oldest, dropped and counted
        assert stats.limit_bytes < 64 * 1024 * 1024  # held at the size the disk allowed

        # Nothing left at all (another program filled the disk): still no exception.
        fill(small_disk / "ballast")
        for _ in range(50):
            n += 1
            box.append_sync(result(n))
        stats = box.stats_sync()
        assert stats.dropped + stats.depth == n  # every result stored or counted

        # An acknowledgement on the full disk does not raise, and those rows never
        # leave again.
        acked = [seq for seq, _ in box.peek_sync(10)]
        through = acked[-1]
        box.ack_sync(through)
        assert box.peek_sync(1)[0][0] > through
        assert box.stats_sync().acked_through == through

        # A restart on the full disk opens the outbox.
        box.close()
        box = Outbox(path, max_bytes=64 * 1024 * 1024, reserve_bytes=RESERVE_BYTES)
        n += 1
        box.append_sync(result(n))
        stats = box.stats_sync()
        assert stats.dropped + stats.depth + len(acked) == n

        # Room again: new results are stored, the outbox grows past its held size and
        # keeps a reserve again.
        (small_disk / "ballast").unlink()
        other.unlink()
        dropped = box.stats_sync().dropped
        depth = box.stats_sync().depth
        for _ in range(20):
            n += 1
            assert box.append_sync(result(n)) is not None
        stats = box.stats_sync()
        assert not stats.disk_full
        assert stats.limit_bytes == 64 * 1024 * 1024
        assert stats.dropped == dropped and stats.depth == depth + 20
        assert (small_disk / "outbox.sqlite.reserve").stat().st_size == RESERVE_BYTES
    finally:
        box.close()


def test_the_reserve_is_not_needed_to_open(small_disk):
    """A disk so full that the reserve cannot be made: the outbox opens all the same."""
    fill(small_disk / "ballast")
    os.truncate(small_disk / "ballast", os.path.getsize(small_disk / "ballast") - 256 * 1024)
    box = Outbox(small_disk / "outbox.sqlite", reserve_bytes=1024 * 1024)
    try:
        assert not (small_disk / "outbox.sqlite.reserve").exists()
        assert box.append_sync(result(1)) == 1
    finally:
        box.close()


def test_an_unrelated_error_is_counted_not_raised(tmp_path):
    """A database that fails for another reason (here: a read-only file) loses the result,
    counted, without an exception into the round loop."""
    path = tmp_path / "outbox.sqlite"
    Outbox(path).close()
    box = Outbox(path)
    box._db.execute("PRAGMA query_only=1")  # every write now fails, as on a read-only disk
    try:
        assert box.append_sync(result(1)) is None
        assert box.stats_sync().dropped == 1
        box.ack_sync(1)  # no exception either
    finally:
        box.close()
