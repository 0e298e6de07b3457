"""The control results in the database (table control_results, collector/store/schema.py):
written one per measurement, read by key or target for the API, pruned like raw results.
Every function runs on the collector's database thread (Collector.in_db)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select

from collector.store.database import Store
from collector.store.schema import control_results


@dataclass(frozen=True)
class ControlRow:
    key: str
    kind: str
    target: str
    label: str
    settings: str  # JSON
    trigger: str
    measured_at: float
    duration_s: float
    ok: bool
    reason: str | None
    detail: str | None
    ip_version: int | None
    figures: str  # JSON


def insert_result(store: Store, row: ControlRow) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(control_results).values(**row.__dict__))


def page(store: Store, *, key: str | None = None, target: str | None = None,
         start: float, end: float, after: tuple[float, int] | None, limit: int) -> list:
    """Control results of one key or one target measured in [start, end), ordered by
    (measured_at, id), from just after the keyset position `after`; limit + 1 rows, so
    the caller sees whether there are more."""
    t = control_results
    query = select(t).where(t.c.measured_at >= start, t.c.measured_at < end)
    query = query.where(t.c.key == key) if key is not None else query.where(
        t.c.target == target)
    if after is not None:
        query = query.where((t.c.measured_at > after[0])
                            | ((t.c.measured_at == after[0]) & (t.c.id > after[1])))
    query = query.order_by(t.c.measured_at, t.c.id).limit(limit + 1)
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def latest(store: Store) -> list:
    """The newest result of every key: what the metrics show after a restart."""
    t = control_results
    newest = select(t.c.key, func.max(t.c.measured_at).label("at")).group_by(
        t.c.key).subquery()
    query = select(t).join(newest, (t.c.key == newest.c.key)
                           & (t.c.measured_at == newest.c.at))
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def prune(store: Store, before: float) -> int:
    with store.engine.begin() as conn:
        return conn.execute(delete(control_results).where(
            control_results.c.measured_at < before)).rowcount
