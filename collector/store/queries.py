"""Read-only queries of the REST API (collector/web/api/) that store.py and rollups.py do not
have: time ranges with keyset pagination. SQLAlchemy Core, the same on SQLite and
PostgreSQL. Each returns at most `limit` + 1 rows, so the caller can tell whether another
page follows without counting. Run on the collector's database thread.
"""

from __future__ import annotations

from sqlalchemy import Table, select

from collector.store.database import Store
from collector.store.schema import access_intervals, results, rollups, state_intervals


def _after(query, table: Table, after: tuple[float, int] | None):
    """Orders by (started_at, id) and starts just after the keyset position `after`."""
    if after is not None:
        # Written out rather than as a row-value comparison: the same plan on both backends.
        query = query.where((table.c.started_at > after[0])
                            | ((table.c.started_at == after[0]) & (table.c.id > after[1])))
    return query.order_by(table.c.started_at, table.c.id)


def results_page(store: Store, mission: str, check_id: str, start: float, end: float,
                 after: tuple[float, int] | None, limit: int) -> list:
    """Raw results of a check measured in [start, end), ordered by (started_at, id), from
    just after the keyset position `after`."""
    query = select(results).where(
        results.c.mission == mission, results.c.check_id == check_id,
        results.c.started_at >= start, results.c.started_at < end)
    query = _after(query, results, after).limit(limit + 1)
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def intervals_page(store: Store, mission: str, key: str, access: bool, start: float,
                   end: float, after: tuple[float, int] | None, limit: int) -> list:
    """State intervals of a check (access=False) or access intervals of a group of a mission
    (access=True, key "*" for the mission overall) that overlap [start, end); the current
    interval has ended_at NULL."""
    table: Table = access_intervals if access else state_intervals
    column = table.c.check_group if access else table.c.check_id
    query = select(table).where(
        table.c.mission == mission, column == key, table.c.started_at < end,
        table.c.ended_at.is_(None) | (table.c.ended_at > start))
    query = _after(query, table, after).limit(limit + 1)
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def rollups_page(store: Store, mission: str, check_id: str, resolution_s: int, start: float,
                 end: float, after: float | None, limit: int) -> list:
    """Rollup buckets of a check starting in [start, end), oldest first. A bucket's start is
    unique within (mission, check, resolution), so it alone is the keyset."""
    query = select(rollups).where(
        rollups.c.mission == mission, rollups.c.check_id == check_id,
        rollups.c.resolution_s == resolution_s, rollups.c.bucket_start >= start,
        rollups.c.bucket_start < end)
    if after is not None:
        query = query.where(rollups.c.bucket_start > after)
    query = query.order_by(rollups.c.bucket_start).limit(limit + 1)
    with store.engine.connect() as conn:
        return list(conn.execute(query))
