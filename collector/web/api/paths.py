"""GET /api/v1/paths: the paths a mission's probe recorded to a check's target
(docs/path.md), newest first, with the last good path beside them. Its own module: the
handler and the stored paths (collector/store/paths.py) belong together."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from collector.store import paths as stored_paths
from collector.web.api.models import PathItem, PathPage
from collector.web.api.params import IDENTIFIER_RE, PREFIX, Params, encode_cursor
from collector.web.context import collector_of

MAX_PATHS_DAYS = 400  # paths are sparse: one a day and one per failure, per check


def path_item(row) -> PathItem:
    return PathItem(mission=row.mission, check_id=row.check_id, probe_id=row.probe_id,
                    result_ok=row.result_ok,
                    received_at=datetime.fromtimestamp(row.received_at, UTC),
                    path=stored_paths.record_of(row))


def _read(store, mission: str, check: str, start: float, end: float,
          after: tuple[float, int] | None, limit: int) -> tuple[list, object]:
    rows = stored_paths.page(store, mission, check, start, end, after, limit)
    return rows, stored_paths.newest(store, mission, check, trigger="baseline")


async def paths(request: web.Request) -> web.Response:
    q = Params(request, ("mission", "check", "from", "to", "limit", "cursor"))
    mission = q.mission()
    check = q.matching("check", IDENTIFIER_RE, "a check id")
    start, end = q.time_range(MAX_PATHS_DAYS, f"{PREFIX}/paths")
    limit = q.limit()
    after = q.cursor("paths", (float, int))
    collector = collector_of(request)
    rows, good = await collector.in_db(_read, collector.store, mission, check, start, end,
                                       after, limit)
    more = len(rows) > limit
    rows = rows[:limit]
    page = PathPage(
        last_good=None if good is None else path_item(good),
        items=[path_item(r) for r in rows],
        next_cursor=encode_cursor("paths", [rows[-1].started_at, rows[-1].id])
        if more else None)
    return web.Response(text=page.model_dump_json(), content_type="application/json")
