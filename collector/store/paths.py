"""The paths probes recorded (docs/path.md), in the `paths` table: stored from the results
that carry them (Collector.store_results), read by the API and the mission page, and
pruned. Its own module beside database.py, which stays the store of results and states.
Run on the collector's database thread."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select

from collector.store.database import Store
from collector.store.schema import paths
from unhindered.measurement import AnyMeasurement
from unhindered.path import PathRecord


def store_paths(store: Store, measurements: list[AnyMeasurement], received_at: float) -> int:
    """Stores the paths carried by `measurements` (new results only: each path is stored
    once, with the result that brought it); returns how many."""
    rows = [{
        "mission": m.mission, "check_id": m.check_id, "probe_id": m.probe_id,
        "trigger": m.path.trigger, "started_at": m.path.started_at.timestamp(),
        "method": m.path.method, "address": m.path.address, "reached": m.path.reached,
        "stopped_after_ttl": m.path.stopped_after_ttl, "result_ok": m.ok,
        "record": m.path.model_dump_json(), "received_at": received_at,
    } for m in measurements if m.path is not None]
    if rows:
        with store.engine.begin() as conn:
            conn.execute(insert(paths), rows)
    return len(rows)


def record_of(row) -> PathRecord:
    return PathRecord.model_validate_json(row.record)


def page(store: Store, mission: str, check_id: str, start: float, end: float,
         after: tuple[float, int] | None, limit: int) -> list:
    """A check's paths recorded in [start, end), newest first, from just after the keyset
    position `after`; at most limit + 1 rows."""
    c = paths.c
    query = select(paths).where(c.mission == mission, c.check_id == check_id,
                                c.started_at >= start, c.started_at < end)
    if after is not None:
        query = query.where((c.started_at < after[0])
                            | ((c.started_at == after[0]) & (c.id < after[1])))
    query = query.order_by(c.started_at.desc(), c.id.desc()).limit(limit + 1)
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def newest(store: Store, mission: str, check_id: str, trigger: str | None = None,
           before: float | None = None):
    """The check's newest path (of that trigger when given: "baseline" is the last good
    path; recorded before `before` when given), or None."""
    c = paths.c
    query = select(paths).where(c.mission == mission, c.check_id == check_id)
    if trigger is not None:
        query = query.where(c.trigger == trigger)
    if before is not None:
        query = query.where(c.started_at < before)
    with store.engine.connect() as conn:
        return conn.execute(query.order_by(c.started_at.desc(), c.id.desc()).limit(1)).first()


def prune(store: Store, before: float) -> int:
    """Deletes baseline paths recorded before `before`, except each check's newest (the
    last good path a failure is compared with); failure paths stay, like the outages."""
    c = paths.c
    keep = select(func.max(c.id)).where(c.trigger == "baseline").group_by(
        c.mission, c.check_id).scalar_subquery()
    with store.engine.begin() as conn:
        return conn.execute(delete(paths).where(
            c.trigger == "baseline", c.started_at < before, c.id.not_in(keep))).rowcount
