"""Storage: one query layer (SQLAlchemy Core) over the schema in collector/store/schema.py,
for SQLite (the default) and PostgreSQL, migrated with Alembic.

About 650 lines, kept as one: `Store` is the single object every writer goes through
(probes and credentials, results, state intervals, retirements, the SQLite file it holds),
and one transaction may span all of them (`Store.transaction`); splitting it would split
that boundary. Its read-only queries
for the API are apart, in queries.py, and rollups in rollups.py."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Integer,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError

from collector.store.schema import (
    check_retirements,
    collector_meta,
    enrollments,
    probes,
    readers,
    results,
    state_intervals,
)
from unhindered.measurement import Batch, Measurement, clean_text

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# The row of collector_meta that /healthz rewrites (Store.write_check).
HEALTH_KEY = "healthz_written_at"

_measurement = TypeAdapter(Measurement)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 cannot be brute-forced back.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ProbeRecord:
    probe_id: str
    mission: str
    created_at: float
    revoked_at: float | None
    enrolled: bool = True  # False while its enrollment token waits to be redeemed
    last_report_at: float | None = None  # when its newest batch came
    backlog: int | None = None  # results queued at the probe, as that batch said
    version: str | None = None  # the probe's version, as its User-Agent said


class Stored(NamedTuple):
    """What became of a batch's measurements in the store."""

    new: list  # stored now
    duplicates: int  # stored before (the same probe, outbox and seq)
    refused: list[tuple[int, str]]  # (seq, why) of the rows the database refused


# What the database or its driver raises for a row it cannot take (PostgreSQL: NUL in
# text, a number out of range; either driver: text UTF-8 cannot carry, an integer past 64
# bits), as against a store that is down or full (OperationalError), which fails the batch.
_ROW_REFUSALS = (DataError, IntegrityError, ValueError, OverflowError)


class ProbeExists(Exception):
    pass


class DatabaseGone(RuntimeError):
    """The SQLite file is not the one the collector opened: deleted, moved or replaced.
    str() names the path and says what to do."""


class EnrollmentRefused(Exception):
    """str() says why, for the probe's operator."""


@dataclass(frozen=True)
class Enrolled:
    probe_id: str
    mission: str
    token: str


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.engine: Engine = create_engine(url, future=True)
        self.path: Path | None = None  # the SQLite database's file
        self._held: tuple[int, int] | None = None  # its (device, inode), see hold_file
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            database = self.engine.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                self.path = Path(database)
                event.listen(self.engine, "do_connect", self._open_held)
                event.listen(self.engine, "begin", lambda _conn: self.check_file())
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Makes the state-history calls made inside it, on this thread, one transaction:
        one commit (one fsync on SQLite) for all the intervals a batch or a silence tick
        rewrites, where each call used to commit alone, and reads inside see its writes.
        When 6,000 checks fell silent at once, their one commit each kept the database
        thread, and so ingest, busy for minutes."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self.engine.begin() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The open transaction's connection, or a transaction of the call's own."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    def migrate(self) -> None:
        """Brings the schema up to date (from empty, or from any older version)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def write_check(self, now: float, lock_wait_s: float = 0.5) -> None:
        """/healthz's proof that the database takes writes: one row of collector_meta
        rewritten and committed (an fsync on SQLite). Waits at most `lock_wait_s` for
        another client's lock, then raises, as any write the database refuses does."""
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # a connection setting: set back before it returns to the pool
                raw = conn.connection.driver_connection
                raw.execute(f"PRAGMA busy_timeout={int(lock_wait_s * 1000)}")
            try:
                with conn.begin():
                    if not sqlite:  # a lock first, then anything else (a full disk)
                        ms = int(lock_wait_s * 1000)
                        conn.execute(text(f"SET LOCAL lock_timeout = '{ms}ms'"))
                        conn.execute(text(f"SET LOCAL statement_timeout = '{2 * ms}ms'"))
                    row = collector_meta.c.key == HEALTH_KEY
                    if not conn.execute(update(collector_meta).where(row).values(
                            value=repr(now))).rowcount:
                        conn.execute(insert(collector_meta).values(key=HEALTH_KEY,
                                                                   value=repr(now)))
            finally:
                if sqlite:
                    try:
                        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                    except Exception:
                        conn.invalidate()  # never back to the pool with the short wait

    def close(self) -> None:
        self.engine.dispose()

    # --- the SQLite file a serving collector holds (issue 12) ---

    def hold_file(self, opened: os.stat_result | None) -> None:
        """From now on the database is the file `opened` (the one the serving collector
        has locked, collector/store/writer.py); None lets go. While it is held, no
        connection creates the file, and every transaction first checks that the path is
        still that file: one deleted or replaced under a running collector raises
        DatabaseGone, where SQLite would write into the deleted file, or into a new empty
        one whose missing probes make every token unknown."""
        self._held = None if opened is None else (opened.st_dev, opened.st_ino)

    def check_file(self) -> None:
        """Raises DatabaseGone when the held file is no longer at its path."""
        if self._held is None:
            return
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            raise DatabaseGone(
                f"the database file {self.path} was deleted or moved while the collector "
                "was using it: every result is refused (the probes keep them). Put the "
                "file back, from a backup if need be, then restart the collector") from None
        if (found.st_dev, found.st_ino) != self._held:
            raise DatabaseGone(
                f"the database file {self.path} was replaced while the collector was using "
                "it: every result is refused (the probes keep them) until the collector is "
                "restarted on the new file")

    def _open_held(self, _dialect, _record, cargs: list, cparams: dict) -> None:
        # SQLAlchemy's do_connect event: with mode=rw SQLite opens an existing file only.
        if self._held is not None and not cparams.get("uri"):
            self.check_file()
            cargs[0] = f"file:{quote(str(self.path))}?mode=rw"
            cparams["uri"] = True

    # --- probes and their credentials ---

    def add_probe(self, probe_id: str, mission: str) -> str:
        """Registers a probe and returns its credential; only its hash is kept."""
        token = new_token("uh1.")
        with self.engine.begin() as conn:
            if conn.execute(select(probes.c.probe_id).where(probes.c.probe_id == probe_id)).first():
                raise ProbeExists(probe_id)
            conn.execute(probes.insert().values(
                probe_id=probe_id, mission=mission, token_hash=hash_token(token),
                created_at=time.time()))
        return token

    def enroll_probe(self, probe_id: str, mission: str, valid_s: float) -> str:
        """Registers a probe without a credential yet, and returns a one-time enrollment
        token that the probe trades for its credential (redeem) within `valid_s`."""
        token = new_token("uhe1.")
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(select(probes.c.probe_id).where(probes.c.probe_id == probe_id)).first():
                raise ProbeExists(probe_id)
            conn.execute(probes.insert().values(probe_id=probe_id, mission=mission,
                                                token_hash=None, created_at=now))
            conn.execute(enrollments.insert().values(
                token_hash=hash_token(token), probe_id=probe_id, created_at=now,
                expires_at=now + valid_s))
        return token

    def redeem(self, token: str) -> Enrolled:
        """Trades an enrollment token for the probe's credential, once."""
        now = time.time()
        credential = new_token("uh1.")
        with self.engine.begin() as conn:
            row = conn.execute(select(enrollments).where(
                enrollments.c.token_hash == hash_token(token))).first()
            if row is None:
                raise EnrollmentRefused("unknown enrollment token")
            if row.used_at is not None:
                raise EnrollmentRefused("this enrollment token was already used: a token "
                                        "works once; ask the centre for a new one")
            if row.expires_at <= now:
                raise EnrollmentRefused("this enrollment token has expired: ask the centre "
                                        "for a new one")
            probe = conn.execute(select(probes).where(probes.c.probe_id == row.probe_id)).first()
            if probe is None or probe.revoked_at is not None:
                raise EnrollmentRefused(f"probe {row.probe_id} has been revoked")
            # Only one redemption can win, even with two collectors on one database.
            won = conn.execute(update(enrollments).where(
                enrollments.c.token_hash == row.token_hash, enrollments.c.used_at.is_(None)
            ).values(used_at=now)).rowcount
            if won != 1:
                raise EnrollmentRefused("this enrollment token was already used")
            conn.execute(update(probes).where(probes.c.probe_id == row.probe_id).values(
                token_hash=hash_token(credential)))
        return Enrolled(probe.probe_id, probe.mission, credential)

    # --- read-only API credentials ---

    def add_reader(self, name: str) -> str:
        token = new_token("uhr1.")
        with self.engine.begin() as conn:
            if conn.execute(select(readers.c.name).where(readers.c.name == name)).first():
                raise ProbeExists(name)
            conn.execute(readers.insert().values(name=name, token_hash=hash_token(token),
                                                 created_at=time.time()))
        return token

    def reader_for_token(self, token: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(readers.c.name, readers.c.revoked_at).where(
                readers.c.token_hash == hash_token(token))).first()
        return row.name if row is not None and row.revoked_at is None else None

    def revoke_reader(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(update(readers).where(
                readers.c.name == name, readers.c.revoked_at.is_(None)
            ).values(revoked_at=time.time())).rowcount == 1

    def list_readers(self) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(select(readers.c.name, readers.c.created_at,
                                            readers.c.revoked_at).order_by(readers.c.name)))

    def revoke_probe(self, probe_id: str) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(update(probes).where(
                probes.c.probe_id == probe_id, probes.c.revoked_at.is_(None)
            ).values(revoked_at=time.time()))
        return done.rowcount == 1

    def list_probes(self) -> list[ProbeRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(
                probes.c.probe_id, probes.c.mission, probes.c.created_at, probes.c.revoked_at,
                probes.c.token_hash.is_not(None), probes.c.last_report_at, probes.c.backlog,
                probes.c.version,
            ).order_by(probes.c.mission, probes.c.probe_id))
            return [ProbeRecord(*row) for row in rows]

    def probe(self, probe_id: str) -> ProbeRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(
                probes.c.probe_id, probes.c.mission, probes.c.created_at, probes.c.revoked_at
            ).where(probes.c.probe_id == probe_id)).first()
        return None if row is None else ProbeRecord(*row)

    def probe_for_token(self, token: str) -> ProbeRecord | None:
        """The active probe this token belongs to, or None (unknown or revoked)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(
                probes.c.probe_id, probes.c.mission, probes.c.created_at, probes.c.revoked_at
            ).where(probes.c.token_hash == hash_token(token))).first()
        if row is None or row.revoked_at is not None:
            return None
        return ProbeRecord(*row)

    # --- results ---

    def store_batch(self, batch: Batch, received_at: float, version: str | None = None
                    ) -> Stored:
        """Stores the batch's new measurements in one transaction. Seqs already stored are
        counted as duplicates, which makes a batch sent again harmless. The probe's row
        keeps the batch's time and backlog, and `version` when known.

        A row the database refuses must not fail the others: the probe would send the batch
        again for ever, and nothing queued behind it would arrive. The wire's rules keep
        such rows out (unhindered/measurement.py); should one still come, the batch is
        stored in halves until the row stands alone, and that row is refused."""
        seqs = [m.seq for m in batch.measurements]
        if not seqs:
            return Stored([], 0, [])
        rows = None
        try:
            with self.engine.begin() as conn:
                known = set(conn.scalars(select(results.c.seq).where(
                    results.c.probe_id == batch.probe_id,
                    results.c.outbox_id == batch.outbox_id,
                    results.c.seq.between(min(seqs), max(seqs)),
                )))
                # The range holds other batches' seqs too (an SNMP poll's seqs are sparse).
                duplicates = len(known.intersection(seqs))
                new = [m for m in batch.measurements if m.seq not in known]
                if new:
                    rows = [_row(m, batch.outbox_id, received_at) for m in new]
                    conn.exec_driver_sql(self._insert_results, rows)
                report = {"last_report_at": received_at, "backlog": batch.backlog}
                conn.execute(update(probes).where(probes.c.probe_id == batch.probe_id).values(
                    **report, **({"version": version} if version else {})))
            return Stored(new, duplicates, [])
        except _ROW_REFUSALS as exc:
            if rows is None:  # not the insert's refusal
                raise
            log.error("the database refused a batch of %d results from probe %s (%s); "
                      "storing them apart", len(rows), batch.probe_id, _why(exc))
        # The transaction is rolled back; apart, some rows may be committed before others
        # are refused, which a batch sent again finds as duplicates.
        stored, refused = self._insert_apart(list(zip(new, rows, strict=True)))
        return Stored(stored, duplicates, refused)

    def _insert_apart(self, pairs: list) -> tuple[list, list]:
        """(measurement, row) pairs stored in halves, a transaction each; returns the
        measurements stored and the (seq, why) of the rows refused. One bad row among
        5,000 takes about 26 transactions."""
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(self._insert_results, [row for _, row in pairs])
            return [m for m, _ in pairs], []
        except _ROW_REFUSALS as exc:
            if len(pairs) == 1:
                m = pairs[0][0]
                log.error("the database refused result seq %d of probe %s: %s", m.seq,
                          m.probe_id, _why(exc))
                return [], [(m.seq, _why(exc))]
        half = len(pairs) // 2
        first, refused_first = self._insert_apart(pairs[:half])
        second, refused_second = self._insert_apart(pairs[half:])
        return first + second, refused_first + refused_second

    @cached_property
    def _insert_results(self) -> str:
        """The INSERT for results, as the driver's own SQL text.

        Ingest is the collector's hot path: handed straight to the driver's executemany,
        a batch of 500 rows skips SQLAlchemy's per-row parameter processing, which took
        about half of the store's time (commit 3778325). Conflicts are ignored: a
        second collector racing on the same batch must not fail the transaction.
        """
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return (f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) "
                f"VALUES ({', '.join([marker] * len(RESULT_COLUMNS))}) "
                "ON CONFLICT (probe_id, outbox_id, seq) DO NOTHING")

    def latest_per_check(self) -> list:
        """The newest measurement (by measurement time) of every (mission, check)."""
        newest = (
            select(results.c.mission, results.c.check_id,
                   func.max(results.c.started_at).label("started_at"))
            .group_by(results.c.mission, results.c.check_id).subquery()
        )
        query = select(results).join(newest, (results.c.mission == newest.c.mission)
                                     & (results.c.check_id == newest.c.check_id)
                                     & (results.c.started_at == newest.c.started_at))
        with self.engine.connect() as conn:
            return _measurements(conn.execute(query))

    def round_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        query = select(
            results.c.mission, results.c.check_id, func.count(),
            func.sum(func.cast(~results.c.ok, Integer)),
        ).group_by(results.c.mission, results.c.check_id)
        with self.engine.connect() as conn:
            return {(m, c): (total, failed or 0) for m, c, total, failed in conn.execute(query)}

    def results_of_probe(self, probe_id: str) -> list:
        """Every stored result of a probe in seq order (for tests and audits)."""
        query = select(results).where(results.c.probe_id == probe_id).order_by(
            results.c.outbox_id, results.c.seq)
        with self.engine.connect() as conn:
            return list(conn.execute(query))


    # --- rounds for the state machine ---

    def rounds(self, mission: str, check_id: str, since: float) -> list:
        """Rounds of a check at or after `since`, in measurement order."""
        query = select(results).where(
            results.c.mission == mission, results.c.check_id == check_id,
            results.c.started_at >= since).order_by(results.c.started_at, results.c.id)
        with self._connection() as conn:
            return _measurements(conn.execute(query))

    def rounds_before(self, mission: str, check_id: str, before: float, limit: int) -> list:
        """The `limit` rounds just before `before`, oldest first."""
        query = select(results).where(
            results.c.mission == mission, results.c.check_id == check_id,
            results.c.started_at < before).order_by(
            results.c.started_at.desc(), results.c.id.desc()).limit(limit)
        with self._connection() as conn:
            return _measurements(conn.execute(query))[::-1]

    @cached_property
    def _round_columns(self) -> tuple:
        """What a replay of a check's history reads of each round: the columns the state
        machine needs, the figures' two read by the database, not the Measurement. Days
        of rounds are read at once; building each Measurement took two thirds of a
        replay, parsing the figures' JSON in Python still half (issue 12, case 6). In
        this order: collector/state/timeline.py round_of_row unpacks them."""
        c = results.c
        if self.engine.dialect.name == "sqlite":
            def figure(name: str):
                return func.json_extract(c.figures, f"$.{name}")
        else:
            def figure(name: str):
                return cast(c.figures, JSON)[name].as_float()
        return (c.id, c.started_at, c.ok, c.reason, c.local_ok, c.interval_s,
                figure("loss_ratio").label("loss_ratio"),
                # The RTT the thresholds apply to: ICMP's median, else TCP/HTTP's connect.
                func.coalesce(figure("rtt_median_s"), figure("connect_s")).label("rtt_s"),
                # Where in the round the path worked or failed (docs/states.md).
                c.duration_s, figure("sent").label("sent"),
                figure("received").label("received"))

    def round_rows(self, mission: str, check_id: str, since: float,
                   after: float | None = None, limit: int | None = None) -> list:
        """A check's rounds at or after `since` (and after the time `after`, when given)
        as rows of `_round_columns`, in measurement order: about `limit` of them, every
        round at the last time read included, so that the next read starts after it. A
        replay reads them so, a bounded number at a time."""
        c = results.c
        where = [c.mission == mission, c.check_id == check_id, c.started_at >= since]
        if after is not None:
            where.append(c.started_at > after)
        with self._connection() as conn:
            if limit is not None:
                # The time of the limit-th round, from the index in its order: the rows are
                # then sorted by (time, id) and their figures read for these alone. Sorted
                # and limited in one query, PostgreSQL read and sorted every later round.
                last = conn.execute(select(c.started_at).where(*where).order_by(
                    c.started_at).offset(limit - 1).limit(1)).scalar()
                if last is not None:
                    where.append(c.started_at <= last)
            return conn.execute(select(*self._round_columns).where(*where).order_by(
                c.started_at, c.id)).all()

    def clean_round_before(self, mission: str, check_id: str, before: float):
        """The check's newest round before `before` that sent two echo requests or more
        and had every one answered, as `round_rows` gives it (None if none): the spacing
        of its requests places a cut inside a later round (docs/states.md)."""
        c = results.c
        columns = self._round_columns
        loss, sent = columns[6].element, columns[9].element
        with self._connection() as conn:
            return conn.execute(select(*columns).where(
                c.mission == mission, c.check_id == check_id, c.started_at < before,
                c.ok.is_(True), loss == 0, sent >= 2).order_by(
                c.started_at.desc(), c.id.desc()).limit(1)).first()

    def round_rows_before(self, mission: str, check_id: str, before: float,
                          limit: int) -> list:
        """The `limit` rounds just before `before` as `round_rows` gives them, oldest
        first."""
        c = results.c
        where = [c.mission == mission, c.check_id == check_id, c.started_at < before]
        with self._connection() as conn:
            first = conn.execute(select(c.started_at).where(*where).order_by(
                c.started_at.desc()).offset(limit - 1).limit(1)).scalar()
            if first is not None:
                where.append(c.started_at >= first)
            return conn.execute(select(*self._round_columns).where(*where).order_by(
                c.started_at.desc(), c.id.desc()).limit(limit)).all()[::-1]

    # --- state intervals ---

    def intervals(self, mission: str, check_id: str, since: float = 0.0,
                  table=state_intervals) -> list:
        key = table.c.check_id if table is state_intervals else table.c.check_group
        query = select(table).where(
            table.c.mission == mission, key == check_id,
            (table.c.ended_at.is_(None)) | (table.c.ended_at > since)
        ).order_by(table.c.started_at, table.c.id)
        with self._connection() as conn:
            return list(conn.execute(query))

    def open_intervals(self, table=state_intervals) -> list:
        with self._connection() as conn:
            return list(conn.execute(select(table).where(table.c.ended_at.is_(None))))

    # --- checks retired (docs/states.md) ---

    def retire_check(self, mission: str, check_id: str, at: float, probe_id: str) -> None:
        """Records that `probe_id` stopped running the check at `at`."""
        row = {"mission": mission, "check_id": check_id, "retired_at": at}
        with self._connection() as conn:
            if conn.execute(select(check_retirements.c.retired_at).filter_by(**row)).first():
                return
            conn.execute(insert(check_retirements), [{**row, "probe_id": probe_id}])

    def retirements(self, mission: str, check_id: str, since: float) -> list:
        """(retired_at, probe_id) of the check's retirements at or after `since`, oldest
        first."""
        query = select(check_retirements.c.retired_at, check_retirements.c.probe_id).where(
            check_retirements.c.mission == mission, check_retirements.c.check_id == check_id,
            check_retirements.c.retired_at >= since).order_by(check_retirements.c.retired_at)
        with self._connection() as conn:
            return list(conn.execute(query))

    def rewrite_intervals(self, mission: str, key: str, since: float,
                          new: list[tuple], table=state_intervals) -> None:
        """Replaces the history of (mission, key) from `since` on: the interval covering
        `since` ends there, later ones go, then `new` (start, state, cause) follow, each
        ending where the next begins and the last one open.

        For state intervals, `since` is a round's time and "from `since` on" means decided
        from then on (`decided_at`, docs/states.md): a period placed before `since` by a
        round after it goes too. Their `new` rows may carry (start, state, cause,
        decided_at, started_after, started_before)."""
        column = table.c.check_id if table is state_intervals else table.c.check_group
        match = (table.c.mission == mission) & (column == key)
        with self._connection() as conn:
            if table is state_intervals:
                conn.execute(delete(table).where(match, _decided(table) >= since))
                # What remains was decided before `since`: its newest period goes on.
                covering = conn.execute(select(table.c.id, table.c.state).where(
                    match).order_by(table.c.started_at.desc(), table.c.id.desc())
                    .limit(1)).first()
            else:
                conn.execute(delete(table).where(match, table.c.started_at >= since))
                covering = conn.execute(select(table.c.id, table.c.state).where(
                    match, table.c.started_at < since,
                    (table.c.ended_at.is_(None)) | (table.c.ended_at >= since)
                ).order_by(table.c.started_at.desc()).limit(1)).first()
            if covering is not None and new and new[0][1] == covering.state:
                new = new[1:]  # the same state goes on: no new period
            if covering is not None:
                conn.execute(update(table).where(table.c.id == covering.id).values(
                    ended_at=new[0][0] if new else None))
            rows = []
            for i, (start, state, cause, *placed) in enumerate(new):
                end = new[i + 1][0] if i + 1 < len(new) else None
                row = {"mission": mission, column.name: key, "started_at": start,
                       "ended_at": end, "state": state, "cause": cause}
                if table is state_intervals:
                    decided, after, before = (*placed, None, None, None)[:3]
                    row |= {"decided_at": decided, "started_after": after,
                            "started_before": before}
                rows.append(row)
            if rows:
                conn.execute(insert(table), rows)

    def intervals_decided(self, mission: str, check_id: str, since: float) -> tuple:
        """The check's newest state interval decided before `since` (None if none), and
        those decided at or after it, in order: what a replay from `since` keeps and
        rewrites (rewrite_intervals)."""
        t = state_intervals
        match = (t.c.mission == mission) & (t.c.check_id == check_id)
        with self._connection() as conn:
            kept = conn.execute(select(t).where(match, _decided(t) < since).order_by(
                t.c.started_at.desc(), t.c.id.desc()).limit(1)).first()
            later = list(conn.execute(select(t).where(match, _decided(t) >= since).order_by(
                t.c.started_at, t.c.id)))
        return kept, later


# The columns _row fills, in its order (all but the id).
RESULT_COLUMNS = ("probe_id", "outbox_id", "seq", "mission", "check_id", "kind", "check_group",
                  "target", "ip_version", "started_at", "duration_s", "ok", "reason", "detail",
                  "confirmation", "local_ok", "interval_s", "figures", "received_at")


def _decided(table):
    """When a state interval was decided: older rows have no decided_at."""
    return func.coalesce(table.c.decided_at, table.c.started_at)


def _why(exc: Exception) -> str:
    """The driver's own message, without the statement and its parameters."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]


def _row(m, outbox_id: str, received_at: float) -> tuple:
    return (m.probe_id, outbox_id, m.seq, m.mission, m.check_id, m.kind, m.group, m.target,
            m.ip_version, m.started_at.timestamp(), m.duration_s, m.ok,
            m.reason.value if m.reason else None, m.detail, m.confirmation, m.local_ok,
            m.interval_s, m.figures.model_dump_json(), received_at)


def measurement_from_row(row) -> Measurement:
    data = {
        "seq": row.seq, "probe_id": row.probe_id, "mission": row.mission,
        "check_id": row.check_id, "kind": row.kind, "group": row.check_group,
        "target": row.target, "ip_version": row.ip_version,
        "started_at": row.started_at, "duration_s": row.duration_s, "ok": row.ok,
        "reason": row.reason, "detail": row.detail, "confirmation": row.confirmation,
        "local_ok": row.local_ok, "interval_s": row.interval_s,
        "figures": json.loads(row.figures),
    }
    try:
        return _measurement.validate_python(data)
    except ValidationError:
        # Stored by an older collector, before the wire's text rule (issue 12): the text
        # read as the probe now writes it, control characters as escapes.
        cleaned = {**data, "figures": _clean_strings(data["figures"])}
        for field, limit in (("target", 255), ("detail", 500)):
            if data[field] is not None:
                cleaned[field] = clean_text(data[field], limit)
        return _measurement.validate_python(cleaned)


def _clean_strings(value):
    """Every string of the figures cleaned, within the length it had (their limits vary)."""
    if isinstance(value, str):
        return clean_text(value, len(value))
    if isinstance(value, dict):
        return {k: _clean_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    return value


def _measurements(rows) -> list:
    """The rows as measurements, less those that cannot be read at all: stored by an
    older collector with what no rule lets through now (year 1, an infinite duration).
    One such row must not stop the collector's start or a check's replay; raw results
    older than the retention are pruned anyway."""
    out = []
    for row in rows:
        try:
            out.append(measurement_from_row(row))
        except ValidationError as exc:
            log.error("result %d (probe %s, seq %d) cannot be read, left out: %s", row.id,
                      row.probe_id, row.seq, exc.errors(include_url=False)[0]["msg"])
    return out


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # FULL: an acknowledged result must survive a power cut, not just a crash.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
