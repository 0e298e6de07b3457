"""The durable outbox: every measurement gets its per-probe sequence number here,
committed to disk, before anything is sent; rows leave only when the collector has
acknowledged their seq (the RIPE Atlas spool idea, with sequence numbers)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from unhindered.measurement import AnyMeasurement, encode_result, with_seq

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- AUTOINCREMENT: a seq is never reused, even after its row is acknowledged and deleted.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    queued_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    oldest_queued_at: float | None
    last_seq: int
    acked_through: int
    last_ack_at: float | None


class Outbox:
    """SQLite in WAL mode with synchronous=FULL: a row that append() returned survives a
    crash or power loss. All access goes through one worker thread, in call order."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('outbox_id', ?)",
                             (uuid.uuid4().hex,))
        self.outbox_id: str = self._meta("outbox_id") or ""
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="outbox")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # --- synchronous primitives (run on the worker thread) ---

    def append_sync(self, measurement: AnyMeasurement) -> int:
        body = encode_result(measurement)
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO outbox (body, queued_at) VALUES (?, ?)", (body, time.time())
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def peek_sync(self, limit: int) -> list[tuple[int, str]]:
        """The oldest rows, each as (seq, measurement JSON with its seq)."""
        rows = self._db.execute(
            "SELECT seq, body FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [(seq, with_seq(seq, body)) for seq, body in rows]

    def ack_sync(self, through: int) -> int:
        with self._db:
            deleted = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (through,)).rowcount
            self._db.execute(
                "INSERT INTO meta VALUES ('acked_through', ?) ON CONFLICT(key) DO UPDATE "
                "SET value = max(CAST(value AS INTEGER), excluded.value)", (through,))
            self._db.execute(
                "INSERT INTO meta VALUES ('last_ack_at', ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value", (repr(time.time()),))
        return deleted

    def pending_sync(self) -> tuple[int, float | None]:
        """How many results wait, and when the oldest was queued: one cheap query, for the
        reporter, which asks after every new result."""
        depth, oldest = self._db.execute(
            "SELECT count(*), min(queued_at) FROM outbox").fetchone()
        return depth, oldest

    def stats_sync(self) -> OutboxStats:
        depth, oldest = self._db.execute(
            "SELECT count(*), min(queued_at) FROM outbox").fetchone()
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        last_ack = self._meta("last_ack_at")
        return OutboxStats(
            depth=depth,
            oldest_queued_at=oldest,
            last_seq=row[0] if row else 0,
            acked_through=int(self._meta("acked_through") or 0),
            last_ack_at=float(last_ack) if last_ack else None,
        )

    # --- the asynchronous interface the probe uses ---

    async def append(self, measurement: AnyMeasurement) -> int:
        return await self._call(self.append_sync, measurement)

    async def peek(self, limit: int) -> list[tuple[int, str]]:
        return await self._call(self.peek_sync, limit)

    async def ack(self, through: int) -> int:
        return await self._call(self.ack_sync, through)

    async def pending(self) -> tuple[int, float | None]:
        return await self._call(self.pending_sync)

    async def stats(self) -> OutboxStats:
        return await self._call(self.stats_sync)

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self._db.close()
