"""The collector's health, as /healthz tells it: can a result be stored now?

Only a write says so. A read (the SELECT 1 /healthz ran before issue 12) succeeds on a
database that takes no write: locked by another client, a PostgreSQL standby after a
failover, a SQLite file deleted under the collector. So each check writes one row
(`Store.write_check`) on the database thread, as ingest would, and waits for it a bounded
time: /healthz answers within a second whatever the database does.

"Busy" is a failure too: a test write not done within `answer_within_s` means the database
thread is behind or blocked, and a probe's batch would wait as long. One test write at a
time: checks that come while one is on its way wait for that one, so a stuck database
thread never gets a queue of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from collector.store.database import DatabaseGone, Store


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str  # "ok", or what is wrong, for the operator
    write_s: float | None = None  # how long the test write took, when it was done


class Health:
    def __init__(self, in_db: Callable[..., Awaitable], store: Store,
                 answer_within_s: float = 0.8, lock_wait_s: float = 0.5) -> None:
        self.in_db, self.store = in_db, store
        self.answer_within_s, self.lock_wait_s = answer_within_s, lock_wait_s
        self._write: asyncio.Future | None = None
        self._write_since = 0.0

    async def check(self) -> Verdict:
        if self._write is None or self._write.done():
            self._write = asyncio.ensure_future(
                self.in_db(self.store.write_check, time.time(), self.lock_wait_s))
            # Its outcome is read by whoever waits for it, if anyone still does.
            self._write.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._write_since = time.monotonic()
        write, since = self._write, self._write_since
        try:
            await asyncio.wait_for(asyncio.shield(write), self.answer_within_s)
        except TimeoutError:
            return Verdict(False, f"busy: a test write has waited "
                                  f"{time.monotonic() - since:.1f} s for the database "
                                  "(its thread is behind or blocked; results wait as long)")
        except DatabaseGone as exc:
            return Verdict(False, str(exc))
        except Exception as exc:
            return Verdict(False, f"the database refused a write: {_why(exc)}")
        return Verdict(True, "ok", time.monotonic() - since)


def _why(exc: Exception) -> str:
    """The driver's own message, without SQLAlchemy's statement and parameters."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0][:300] if lines else ''}"
