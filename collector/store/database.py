"""Storage: one query layer (SQLAlchemy Core) over the schema in collector/store/schema.py,
for SQLite (the default) and PostgreSQL, migrated with Alembic.

About 500 lines, kept as one: `Store` is the single object every writer goes through
(probes and credentials, results, state intervals), and one transaction may span all of
them (`Store.transaction`); splitting it would split that boundary. Its read-only queries
for the API are apart, in queries.py, and rollups in rollups.py."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from alembic import command
from alembic.config import Config
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError

from collector.store.schema import enrollments, probes, readers, results, state_intervals
from unhindered.measurement import Batch, Measurement, clean_text

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

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
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
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

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        self.engine.dispose()

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
                probes.c.token_hash.is_not(None),
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

    def store_batch(self, batch: Batch, received_at: float) -> Stored:
        """Stores the batch's new measurements in one transaction. Seqs already stored are
        counted as duplicates, which makes a batch sent again harmless.

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

    def rewrite_intervals(self, mission: str, key: str, since: float,
                          new: list[tuple[float, str, str]], table=state_intervals) -> None:
        """Replaces the history of (mission, key) from `since` on: the interval covering
        `since` ends there, later ones go, then `new` (start, state, cause) follow, each
        ending where the next begins and the last one open."""
        column = table.c.check_id if table is state_intervals else table.c.check_group
        match = (table.c.mission == mission) & (column == key)
        with self._connection() as conn:
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
            for i, (start, state, cause) in enumerate(new):
                end = new[i + 1][0] if i + 1 < len(new) else None
                rows.append({"mission": mission, column.name: key, "started_at": start,
                             "ended_at": end, "state": state, "cause": cause})
            if rows:
                conn.execute(insert(table), rows)


# The columns _row fills, in its order (all but the id).
RESULT_COLUMNS = ("probe_id", "outbox_id", "seq", "mission", "check_id", "kind", "check_group",
                  "target", "ip_version", "started_at", "duration_s", "ok", "reason", "detail",
                  "confirmation", "local_ok", "interval_s", "figures", "received_at")


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
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
