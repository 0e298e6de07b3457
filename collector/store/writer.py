"""One collector writes a database at a time. Two collectors on one database each keep
their own states and counts from their own half of the rounds, and disagree (one said a
check was up while the other said down); so the serving collector holds a lock for as
long as it runs, and a second one refuses to start, naming the way out.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a connection held
for the purpose; the server drops it when that session ends, so a collector killed with
-9 frees it. The key is derived from the database and schema, so collectors of other
schemas on the same server do not exclude each other. SQLite: an exclusive `flock` on the
database file, which the kernel drops with the process; SQLite's own locks are POSIX
record locks, which `flock` does not touch. The locked file is the database from then on
(`Store.hold_file`): one deleted or replaced while the collector runs is refused, not
recreated; and at start a missing file is created only when no write-ahead log of a
deleted one is left beside it.

The command-line tools (`probes add`, reports) write or read without the lock: they are
short and go through the same transactions.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os

from sqlalchemy import text
from sqlalchemy.engine import Connection

from collector.store.database import DatabaseGone, Store

log = logging.getLogger(__name__)


class AnotherWriter(RuntimeError):
    """Another collector holds the database."""


class WriterLock:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn: Connection | None = None
        self._key: int | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        engine = self.store.engine
        if engine.dialect.name == "postgresql":
            self._acquire_postgresql()
        elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._acquire_sqlite(engine.url.database)

    def _acquire_postgresql(self) -> None:
        conn = self.store.engine.connect()
        database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        digest = hashlib.blake2b(f"unhindered:{database}:{schema}".encode(), digest_size=8)
        key = int.from_bytes(digest.digest(), "big", signed=True)
        held = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        conn.commit()  # the lock is the session's: no transaction is left open
        if not held:
            conn.close()
            url = self.store.engine.url
            where = f"database {database}" + (f" on {url.host}:{url.port or 5432}"
                                               if url.host else "")
            raise AnotherWriter(
                f"another collector is serving from {where}, schema {schema}: stop it "
                "first, or give this one a database of its own (database.url)")
        self._conn, self._key = conn, key

    def _acquire_sqlite(self, path: str) -> None:
        if not os.path.exists(path):
            # SQLite would throw away the log of a database deleted after a crash (or
            # while a collector ran), with the newest results in it.
            left = [p for p in (f"{path}-wal", f"{path}-journal") if os.path.exists(p)]
            if left:
                raise DatabaseGone(
                    f"the database file {path} is missing, but {left[0]} is there: the "
                    "database was deleted or moved, and that file may hold its newest "
                    "results. Put the database back; or, to start afresh with an empty "
                    f"one, move {left[0]} away (and {path}-shm)")
            log.warning("no database at %s: creating a new, empty database there (no probe "
                        "is registered in it yet)", path)
        # The file must exist to be locked; migrate() creates the tables just after.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AnotherWriter(
                f"another collector is serving from {path}: stop it first, or give this "
                "one a database of its own (database.url)") from None
        self._fd = fd
        self.store.hold_file(os.fstat(fd))

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            self._conn.commit()
            # Out of the pool for good: a pooled session would keep any lock it still held.
            self._conn.invalidate()
            self._conn.close()
            self._conn = None
        if self._fd is not None:
            self.store.hold_file(None)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
