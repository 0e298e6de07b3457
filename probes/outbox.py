"""The durable outbox: every measurement gets its per-probe sequence number here,
committed to disk, before anything is sent; rows leave only when the collector has
acknowledged their seq (the RIPE Atlas spool idea, with sequence numbers).

Results recorded while a commit is under way, in the same pass of the event loop, or
within `gather_s` of the first of them, are committed together, in one transaction and
one fsync; each append still returns only once its own row is committed, and the reporter
reads only committed rows.

It is bounded: when its file reaches `max_bytes`, or the disk is full, the oldest results
make way for the new ones, and every result dropped or not stored is counted (`dropped`,
reported to the collector with each batch). A full disk never raises into the round loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from unhindered.measurement import AnyMeasurement, encode_result, with_seq

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 256 * MIB  # as probes/config.py's outbox_max_mib
# Room kept aside in a file of its own and given back to the disk when it is full: SQLite
# needs some to checkpoint its WAL and to delete rows, which is how the outbox makes room.
RESERVE_BYTES = 1 * MIB
DROP_FRACTION = 100  # a full outbox drops its oldest 1% at once, not one row per result
DROP_MIN = 10
DROP_MIN_PAGES = 4  # free pages a drop leaves: room for a row and a b-tree page split
RECOVERY_RETRY_S = 30.0  # how often a full disk is looked at again for room
WARN_EVERY_S = 60.0  # one warning a minute while results are dropped

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- AUTOINCREMENT: a seq is never reused, even after its row is acknowledged and deleted.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    queued_at REAL NOT NULL
);
"""
_SET_META = ("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
             "SET value = excluded.value")


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    oldest_queued_at: float | None
    last_seq: int
    acked_through: int
    last_ack_at: float | None
    dropped: int = 0  # results dropped or never stored, since the outbox was created
    size_bytes: int = 0  # the database file (its WAL and reserve come on top)
    limit_bytes: int = 0  # the bound, or the size a full disk holds the file at
    disk_full: bool = False


def _full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the file reached max_page_count, or the disk has no room."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class Outbox:
    """SQLite in WAL mode with synchronous=FULL: a row that append() returned survives a
    crash or power loss. All access goes through one worker thread, in call order; the
    figures the reporter asks for after every result (`pending`) are kept in memory."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 reserve_bytes: int = RESERVE_BYTES, gather_s: float = 0.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._gather_s = gather_s
        self._reserve = path.with_name(path.name + ".reserve")
        self._reserve_bytes = reserve_bytes
        self._reserve_kept = self._keep_reserve()
        try:
            self._db = self._connect()
        except sqlite3.OperationalError:
            # A restart on a full disk: SQLite needs room for its shared-memory and WAL
            # files. The reserve is that room.
            self._release_reserve()
            try:
                self._db = self._connect()
            except sqlite3.Error as exc:  # the probe cannot start: say which file
                raise sqlite3.OperationalError(f"outbox {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # not an SQLite file (or a damaged one)
            raise sqlite3.DatabaseError(f"outbox {path}: {exc}") from exc
        self._page_size: int = self._pragma("page_size")
        self._max_pages = max(1, max_bytes // self._page_size)
        # Checkpoint often enough that what the WAL may have to add to the file when the
        # disk fills up stays within the reserve.
        self._pragma(f"wal_autocheckpoint={max(1, reserve_bytes // 2 // self._page_size)}")
        if self._pragma(f"max_page_count={self._max_pages}") > self._max_pages:
            log.warning("outbox %s is larger than its bound (%d MiB): it keeps its size, "
                        "and drops results from there", path, max_bytes // MIB)
        self.outbox_id: str = self._meta("outbox_id") or ""
        self.dropped = int(self._meta("dropped") or 0)
        self._dropped_saved = self.dropped
        self._acked = int(self._meta("acked_through") or 0)
        last_ack = self._meta("last_ack_at")
        self._last_ack_at = float(last_ack) if last_ack else None
        self.disk_full = False
        self._recovery_tried = 0.0
        self._warned = 0.0
        # (depth, oldest queued_at) of the rows not yet acknowledged: written on the worker
        # thread after each change, read on the event loop's as one tuple.
        self._pending = self._count_pending()
        # Appends waiting for the next commit, and whether a commit is under way (both
        # touched on the event loop's thread only).
        self._queued: list[tuple[AnyMeasurement, asyncio.Future[int | None]]] = []
        self._committing = False
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="outbox")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT OR IGNORE INTO meta VALUES ('outbox_id', ?)",
                           (uuid.uuid4().hex,))
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _pragma(self, text: str) -> int:
        return self._db.execute(f"PRAGMA {text}").fetchone()[0]

    def _count_pending(self) -> tuple[int, float | None]:
        depth, oldest = self._db.execute(
            "SELECT count(*), min(queued_at) FROM outbox WHERE seq > ?",
            (self._acked,)).fetchone()
        return depth, oldest

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # --- room on the disk ---

    def _keep_reserve(self) -> bool:
        """Makes sure the reserve file holds its room; False when the disk has none."""
        if self._reserve_bytes <= 0:
            return True
        try:
            if self._reserve.stat().st_size >= self._reserve_bytes:
                return True
        except FileNotFoundError:
            pass
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self._reserve_bytes)  # blocks taken, not promised
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError as exc:
            log.warning("outbox %s: no room for its %d KiB reserve (%s)", self.path,
                        self._reserve_bytes // 1024, exc.strerror)
            self._release_reserve()  # a partial reserve only takes room
            return False

    def _release_reserve(self) -> None:
        self._reserve_kept = False
        with contextlib.suppress(OSError):
            self._reserve.unlink(missing_ok=True)

    def _checkpoint(self) -> None:
        """Copies the WAL into the file, so that the next write starts the WAL from its
        beginning again, in room the WAL file already has."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _hold_at_current_size(self) -> None:
        """The disk is full: give the reserve back to the disk, so that SQLite can finish
        its checkpoint and delete rows, and let the file grow no further; from now on
        new results take the place of the oldest."""
        self._release_reserve()
        self._checkpoint()
        with contextlib.suppress(sqlite3.Error):
            self._pragma(f"max_page_count={self._pragma('page_count')}")
        if not self.disk_full:
            log.warning("outbox %s: the disk is full; the outbox stays at its current size "
                        "and drops its oldest results to store new ones", self.path)
        self.disk_full = True
        self._recovery_tried = time.monotonic()

    def _recover(self) -> None:
        """After a full disk (or a start without room for the reserve): once there is room
        again, keep a reserve and let the file grow up to its bound again."""
        if self._reserve_kept and not self.disk_full:
            return
        if time.monotonic() - self._recovery_tried < RECOVERY_RETRY_S:
            return
        self._recovery_tried = time.monotonic()
        with contextlib.suppress(OSError):
            free = os.statvfs(self.path.parent)
            # Room for the reserve and as much again, so as not to fill the disk at once.
            if free.f_bavail * free.f_frsize < 2 * self._reserve_bytes:
                return
        if not self._keep_reserve():
            return
        self._reserve_kept = True
        if self.disk_full:
            with contextlib.suppress(sqlite3.Error):
                self._pragma(f"max_page_count={self._max_pages}")
                self.disk_full = False
                log.info("outbox %s: the disk has room again; the outbox may grow to its "
                         "bound", self.path)

    def _drop_oldest(self) -> None:
        """Deletes the oldest rows, counted, until the file has a few free pages for new
        rows (deleted rows free a page only once it is empty). Rows already acknowledged,
        whose deletion failed before, go first and are not counted."""
        dropped = 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (self._acked,))
            while self._pragma("freelist_count") < DROP_MIN_PAGES:
                first, last = self._db.execute(
                    "SELECT min(seq), max(seq) FROM outbox").fetchone()
                if first is None:
                    break
                through = first + max(DROP_MIN, (last - first + 1) // DROP_FRACTION) - 1
                dropped += self._db.execute("DELETE FROM outbox WHERE seq <= ?",
                                            (through,)).rowcount
            self._save_dropped(self.dropped + dropped)
        self.dropped += dropped
        self._dropped_saved = self.dropped
        self._pending = self._count_pending()
        if dropped:
            self._warn(f"outbox {self.path} is full: dropped its oldest {dropped} results; "
                       f"{self.dropped} dropped in all")

    def _save_dropped(self, total: int) -> None:
        """Within a transaction: the count of dropped results, when it changed (results
        that could not be stored at all are counted in memory, and saved with the next
        drop or acknowledgement)."""
        if total != self._dropped_saved:
            self._db.execute(_SET_META, ("dropped", str(total)))

    def _warn(self, text: str) -> None:
        if time.monotonic() - self._warned >= WARN_EVERY_S:
            self._warned = time.monotonic()
            log.warning("%s", text)

    # --- synchronous primitives (run on the worker thread) ---

    def append_sync(self, measurement: AnyMeasurement) -> int | None:
        """Stores the result and returns its seq; None when it could not be stored (it is
        then counted in `dropped`). Never raises a database error into the round loop."""
        return self.append_many_sync([measurement])[0]

    def append_many_sync(self, measurements: Sequence[AnyMeasurement]) -> list[int | None]:
        """Stores the results in one transaction and returns their seqs, in order; all
        None when they could not be stored (then counted in `dropped`). Never raises a
        database error into the round loop."""
        bodies = [encode_result(m) for m in measurements]
        self._recover()
        error: sqlite3.Error | None = None
        for attempt in range(3):
            try:
                queued_at = time.time()
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    seqs: list[int | None] = [self._db.execute(
                        "INSERT INTO outbox (body, queued_at) VALUES (?, ?)",
                        (body, queued_at)).lastrowid for body in bodies]
                depth, oldest = self._pending
                self._pending = (depth + len(seqs),
                                 queued_at if oldest is None else oldest)
                return seqs
            except sqlite3.Error as exc:
                error = exc
                if not _full(exc) or attempt == 2:
                    break
            try:
                # Full. Free pages from the oldest rows are enough at the bound, and on a
                # disk where the file is already held at its size. Still full with free
                # pages: the disk has just filled up.
                if attempt == 1:
                    self._hold_at_current_size()
                else:
                    self._checkpoint()
                self._drop_oldest()
            except sqlite3.Error as exc:
                error = exc
        self.dropped += len(bodies)
        what = "a result" if len(bodies) == 1 else f"{len(bodies)} results"
        self._warn(f"outbox {self.path}: {what} could not be stored ({error}); "
                   f"{self.dropped} dropped in all")
        return [None] * len(bodies)

    def peek_sync(self, limit: int) -> list[tuple[int, str]]:
        """The oldest rows not yet acknowledged, each as (seq, measurement JSON with its
        seq)."""
        rows = self._db.execute(
            "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._acked, limit)).fetchall()
        return [(seq, with_seq(seq, body)) for seq, body in rows]

    def ack_sync(self, through: int) -> int:
        """Deletes the rows the collector acknowledged; returns how many. When the disk
        cannot take even that, the rows stay but are never sent again: the next
        acknowledgement, or the next drop, deletes them."""
        self._acked = max(self._acked, through)
        self._last_ack_at = time.time()
        for attempt in (1, 2):
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    deleted = self._db.execute("DELETE FROM outbox WHERE seq <= ?",
                                               (self._acked,)).rowcount
                    self._db.execute(_SET_META, ("acked_through", str(self._acked)))
                    self._db.execute(_SET_META, ("last_ack_at", repr(self._last_ack_at)))
                    self._save_dropped(self.dropped)
                self._dropped_saved = self.dropped
                self._pending = self._count_pending()
                return deleted
            except sqlite3.Error as exc:
                if attempt == 1 and _full(exc):
                    self._hold_at_current_size()
                    continue
                self._warn(f"outbox {self.path}: acknowledged rows (through seq "
                           f"{self._acked}) cannot be deleted yet ({exc})")
        with contextlib.suppress(sqlite3.Error):  # they are no longer pending all the same
            self._pending = self._count_pending()
        return 0

    def pending_sync(self) -> tuple[int, float | None]:
        """How many results wait, and when the oldest was queued."""
        return self._pending

    def stats_sync(self) -> OutboxStats:
        depth, oldest = self.pending_sync()
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return OutboxStats(
            depth=depth,
            oldest_queued_at=oldest,
            last_seq=row[0] if row else 0,
            acked_through=self._acked,
            last_ack_at=self._last_ack_at,
            dropped=self.dropped,
            size_bytes=self._pragma("page_count") * self._page_size,
            limit_bytes=self._pragma("max_page_count") * self._page_size,
            disk_full=self.disk_full,
        )

    # --- the asynchronous interface the probe uses ---

    async def append(self, measurement: AnyMeasurement) -> int | None:
        """Stores the result, committed with the others recorded meanwhile; returns its
        seq once its row is on disk (None: not stored, and counted in `dropped`)."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[int | None] = loop.create_future()
        self._queued.append((measurement, stored))
        if len(self._queued) == 1 and not self._committing:
            # Not at once: the other rounds that end in this pass of the loop, or within
            # gather_s, join it.
            if self._gather_s > 0:
                loop.call_later(self._gather_s, self._commit_queued, loop)
            else:
                loop.call_soon(self._commit_queued, loop)
        return await stored

    def _commit_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop: hands the queued results to the worker as one commit; the
        results recorded until it is done wait for the next one."""
        if self._committing or not self._queued:
            return
        queued, self._queued = self._queued, []
        self._committing = True
        try:
            self._worker.submit(self._commit_on_worker, queued, loop)
        except RuntimeError as exc:  # appended after close(): say so, do not hang the round
            self._committed(queued, exc, loop)

    def _commit_on_worker(self, queued: list[tuple[AnyMeasurement, asyncio.Future]],
                          loop: asyncio.AbstractEventLoop) -> None:
        try:
            outcome: list[int | None] | BaseException = self.append_many_sync(
                [m for m, _ in queued])
        except BaseException as exc:  # a bug: tell the rounds waiting, do not hang them
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(self._committed, queued, outcome, loop)

    def _committed(self, queued: list[tuple[AnyMeasurement, asyncio.Future]],
                   outcome: list[int | None] | BaseException,
                   loop: asyncio.AbstractEventLoop) -> None:
        self._committing = False
        for i, (_m, stored) in enumerate(queued):
            if stored.done():  # its round was cancelled; the row is stored all the same
                continue
            if isinstance(outcome, BaseException):
                stored.set_exception(outcome)
            else:
                stored.set_result(outcome[i])
        self._commit_queued(loop)

    async def peek(self, limit: int) -> list[tuple[int, str]]:
        return await self._call(self.peek_sync, limit)

    async def ack(self, through: int) -> int:
        return await self._call(self.ack_sync, through)

    async def pending(self) -> tuple[int, float | None]:
        """Committed results not yet acknowledged, and when the oldest was queued: asked
        after every result, so answered from memory, without a trip to the worker."""
        return self._pending

    async def stats(self) -> OutboxStats:
        return await self._call(self.stats_sync)

    def close(self) -> None:
        """Stores what is still queued (the rounds that recorded it may have been cancelled
        by the stop), then closes the file."""
        queued, self._queued = self._queued, []
        if queued:
            self._worker.submit(self.append_many_sync, [m for m, _ in queued])
        self._worker.shutdown(wait=True)
        self._db.close()
