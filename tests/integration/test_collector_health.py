"""The collector's own health (issue 12): /healthz proves that the database takes a write,
and answers within a second whatever the database does; a SQLite file deleted or
replaced under a running collector is refused, never recreated empty; and a second
collector on the same database says so in one line."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import create_engine, make_url, text

from collector.config import CollectorConfig, RetentionSettings
from collector.core import Collector
from collector.store.database import DatabaseGone, Store
from collector.web.app import create_app
from collector.web.context import COLLECTOR
from tests.support import free_port, wait_for
from tests.support.storage import POSTGRES, postgres_database, registered_since
from tests.unit.test_measurement import batch

REGISTERED = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
CONFIG = CollectorConfig(retention=RetentionSettings(raw_days=3650))
# /healthz answers within this, whatever the database does (the test machine is slow).
ANSWER_WITHIN_S = 1.2


@asynccontextmanager
async def served(store: Store):
    async with TestClient(TestServer(create_app(CONFIG, store))) as client:
        yield client


async def healthz(client) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = await client.get("/healthz")
    return response.status, await response.json(), time.monotonic() - started


async def healthy_again(client, within_s: float = 10) -> dict:
    deadline = time.monotonic() + within_s
    while True:
        status, body, took = await healthz(client)
        if status == 200:
            assert took < ANSWER_WITHIN_S
            return body
        assert time.monotonic() < deadline, f"/healthz still answers {status}: {body}"
        await asyncio.sleep(0.2)


async def post(client, body: dict, token: str) -> tuple[int, dict]:
    response = await client.post(
        "/api/v1/results", data=gzip.compress(json.dumps(body).encode()),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Content-Encoding": "gzip"})
    return response.status, await response.json()


@contextmanager
def write_locked(store: Store) -> Iterator[None]:
    """Another client holds the database's (or the table's) write lock: SQLite's by an
    open write transaction, PostgreSQL's by LOCK TABLE on the table /healthz writes."""
    if store.engine.dialect.name == "sqlite":
        other = sqlite3.connect(store.engine.url.database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    engine = create_engine(store.engine.url)
    try:
        with engine.connect() as other:
            other.execute(text("LOCK TABLE collector_meta IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                other.rollback()
    finally:
        engine.dispose()


# --- case 1: /healthz writes ---

async def test_healthz_answers_503_within_a_second_while_the_database_takes_no_write(
        any_store):
    """Reads work all along (the old /healthz ran SELECT 1 and said ok); the write waits
    on the other client's lock."""
    async with served(any_store) as client:
        status, body, _ = await healthz(client)
        assert (status, body["status"]) == (200, "ok")
        with write_locked(any_store):
            for _ in range(3):  # and again: the test writes do not pile up behind the lock
                status, body, took = await healthz(client)
                assert status == 503, body
                assert took < ANSWER_WITHIN_S, f"/healthz took {took:.2f} s"
                assert body["status"] == "failing"
                assert "lock" in body["database"] or "busy" in body["database"], body
        await healthy_again(client)


async def test_healthz_answers_503_within_a_second_while_the_database_thread_is_stuck(
        tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'collector.sqlite'}")
    async with served(store) as client:
        collector = client.app[COLLECTOR]
        stuck = asyncio.ensure_future(collector.in_db(time.sleep, 3))
        await asyncio.sleep(0.1)
        status, body, took = await healthz(client)
        assert status == 503, body
        assert took < ANSWER_WITHIN_S
        assert "busy" in body["database"]
        await stuck
        await healthy_again(client)


def _read_only(admin, database: str, on: bool) -> None:
    """What a failover to a standby does: the database takes no write. Set for the
    database; the sessions open are ended so that the new setting applies (the
    collector's writer lock's session excepted: only the store's pool reconnects)."""
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = '
                          f"{'on' if on else 'off'}"))
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db "
            "AND pid <> pg_backend_pid() "
            "AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"),
            {"db": database})


async def test_healthz_answers_503_while_postgresql_is_read_only():
    with postgres_database() as url:
        store = Store(url)
        store.migrate()
        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        database = make_url(url).database
        try:
            async with served(store) as client:
                assert (await healthz(client))[0] == 200
                _read_only(admin, database, True)
                answers = [await healthz(client) for _ in range(3)]
                assert [status for status, _, _ in answers] == [503] * 3, answers
                assert all(took < ANSWER_WITHIN_S for _, _, took in answers)
                assert "read-only" in answers[-1][1]["database"], answers[-1]
                _read_only(admin, database, False)
                await healthy_again(client)
        finally:
            admin.dispose()


# --- case 2: the SQLite file deleted or replaced under the collector ---

@pytest.fixture
def sqlite_store(tmp_path):
    path = tmp_path / "collector.sqlite"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    token = store.add_probe("fra-1", "FRA")
    registered_since(store, REGISTERED)
    return store, path, token


async def test_a_deleted_database_file_is_refused_and_never_recreated(sqlite_store):
    store, path, token = sqlite_store
    async with served(store) as client:
        assert (await post(client, batch(1, 2), token))[0] == 200
        path.unlink()
        status, body, took = await healthz(client)
        assert status == 503, body
        assert took < ANSWER_WITHIN_S
        assert str(path) in body["database"] and "deleted" in body["database"]
        # A probe's batch is refused, not acknowledged into the deleted file: the probe
        # keeps it. Neither is its token refused as unknown (the 401 of an empty file).
        status, answer = await post(client, batch(3), token)
        assert status == 503, answer
        assert str(path) in answer["error"]
        assert not path.exists(), "the database file was created again"
        # Nor by a connection opened now (SQLite creates a missing file unless told not to).
        store.engine.dispose()
        assert (await healthz(client))[0] == 503
        with pytest.raises(DatabaseGone, match="deleted"):
            store.write_check(time.time())
        assert not path.exists(), "the database file was created again"


async def test_a_replaced_database_file_is_refused(sqlite_store, tmp_path):
    store, path, token = sqlite_store
    backup = tmp_path / "backup.sqlite"
    async with served(store) as client:
        assert (await post(client, batch(1, 2), token))[0] == 200
        with sqlite3.connect(path) as source, sqlite3.connect(backup) as copy:
            source.backup(copy)
        os.replace(backup, path)  # e.g. a restore while it runs
        status, body, _ = await healthz(client)
        assert status == 503, body
        assert str(path) in body["database"] and "replaced" in body["database"]
        assert (await post(client, batch(3), token))[0] == 503


async def test_a_missing_database_whose_wal_is_left_is_not_created_again(tmp_path):
    """The file is gone but SQLite's write-ahead log is there: the database was deleted
    (or moved) and the log may hold its newest results. Creating a file would make SQLite
    throw the log away."""
    path = tmp_path / "collector.sqlite"
    wal = tmp_path / "collector.sqlite-wal"
    wal.write_bytes(b"\0" * 32)
    collector = Collector(CONFIG, Store(f"sqlite:///{path}"))
    try:
        with pytest.raises(DatabaseGone, match=f"{path}.*-wal"):
            await collector.start()
    finally:
        collector.db_thread.shutdown(wait=True)
        collector.store.close()
    assert not path.exists()
    assert wal.read_bytes() == b"\0" * 32


async def test_a_first_start_creates_the_database_and_says_so(tmp_path, caplog):
    path = tmp_path / "collector.sqlite"
    collector = Collector(CONFIG, Store(f"sqlite:///{path}"))
    with caplog.at_level(logging.WARNING):
        await collector.start()
    try:
        assert path.exists()
        assert any("new, empty database" in r.getMessage() and str(path) in r.getMessage()
                   for r in caplog.records), caplog.text
    finally:
        await collector.stop()


# --- case 3: a second collector on the same database ---

def test_a_second_collector_on_the_same_database_exits_with_one_line(any_store, tmp_path):
    url = any_store.engine.url.render_as_string(hide_password=False)

    def config(name: str, port: int):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"database": {"url": url},
                                        "listen": {"host": "127.0.0.1", "port": port}}))
        return [sys.executable, "-m", "collector.cli", "-c", str(path), "serve"]

    first_port = free_port()
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(config("first", first_port), stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: first.poll() is None and _status(first_port) == 200, 30,
                 "the first collector to serve /healthz")
        second = subprocess.run(config("second", free_port()), capture_output=True,
                                text=True, timeout=60)
    finally:
        first.terminate()
        assert first.wait(15) == 0
    lines = [line for line in (second.stdout + second.stderr).splitlines() if line.strip()]
    assert second.returncode == 1
    assert len(lines) == 1, "\n".join(lines)
    line = lines[0]
    assert line.startswith("unhindered-collector: another collector is serving from"), line
    assert "stop it first" in line
    if any_store.engine.dialect.name == "sqlite":
        assert any_store.engine.url.database in line
    else:
        assert "schema uh_" in line and "127.0.0.1:5432" in line


def _status(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
        return answer.status
