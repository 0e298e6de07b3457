"""A fresh store per test, on SQLite and on PostgreSQL: the storage tests run on both."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text, update

from collector.store.database import Store
from collector.store.schema import probes

POSTGRES = os.environ.get("UNHINDERED_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _unreachable(exc: Exception) -> None:
    message = (f"PostgreSQL is not reachable at {POSTGRES} ({type(exc).__name__}): "
               "./scripts/test starts it when run as root")
    if os.geteuid() == 0:
        pytest.fail(message)
    pytest.skip(message)


def _postgres_schema_url() -> tuple[str, str]:
    schema = f"uh_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        _unreachable(exc)
    finally:
        admin.dispose()
    # Each test gets its own schema, so tests never see each other's rows.
    return schema, f"{POSTGRES}?options=-csearch_path%3D{schema}"


def _drop_schema(schema: str) -> None:
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a new PostgreSQL schema of its own, dropped afterwards."""
    schema, url = _postgres_schema_url()
    try:
        yield url
    finally:
        _drop_schema(schema)


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new PostgreSQL database of its own, for tests that change the
    database's own settings (ALTER DATABASE); dropped afterwards, its sessions with it."""
    name = f"uh_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        _unreachable(exc)
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """A migrated, empty store on each backend."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'collector.sqlite'}"
    else:
        schema, url = _postgres_schema_url()
    store = Store(url)
    try:
        store.migrate()
        yield store
    finally:
        store.close()
        if schema:
            _drop_schema(schema)


def registered_since(store: Store, at: float) -> None:
    """Backdates every probe's registration to `at`: the collector refuses results older
    than their probe's registration, and test results are often dated before the test."""
    with store.engine.begin() as conn:
        conn.execute(update(probes).values(created_at=at))
