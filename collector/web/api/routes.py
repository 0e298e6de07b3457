"""The table of the read API's endpoints: path, handler, parameters, response model and
errors of each. It is the one table both the routes are added from (add_routes in
__init__.py) and the OpenAPI document is built from (openapi.py), so the document cannot
list an endpoint that is not served, nor miss one that is.

Its own module because it imports the handlers and openapi.py imports it: in handlers.py
or openapi.py it would tie the two together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from collector.web.api.handlers import (
    Handler,
    control,
    intervals,
    mission,
    missions,
    probes,
    results,
    rollups,
    states,
)
from collector.web.api.models import (
    ControlPage,
    IntervalPage,
    MissionDetail,
    MissionList,
    PathPage,
    ProbeList,
    ResultPage,
    RollupPage,
    StatePage,
)
from collector.web.api.params import (
    DEFAULT_LIMIT,
    GROUP_PATTERN,
    IDENTIFIER_PATTERN,
    MAX_CONTROL_DAYS,
    MAX_CURSOR_CHARS,
    MAX_HOUR_ROLLUPS_DAYS,
    MAX_INTERVALS_DAYS,
    MAX_LIMIT,
    MAX_MINUTE_ROLLUPS_DAYS,
    MAX_RESULTS_DAYS,
    MAX_TARGET_CHARS,
    MISSION_PATTERN,
    PREFIX,
    RESOLUTIONS,
    UNIX_PATTERN,
)
from collector.web.api.paths import MAX_PATHS_DAYS, paths


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "path"]
    schema: dict
    description: str
    required: bool = False


_TIME_SCHEMA = {"anyOf": [{"type": "string", "format": "date-time"},
                          {"type": "string", "pattern": UNIX_PATTERN}]}
_MISSION_PARAM = Param("mission", "query", {"type": "string", "pattern": MISSION_PATTERN},
                       "mission code, e.g. FRA", required=True)
_CHECK_PARAM = Param("check", "query", {"type": "string", "pattern": IDENTIFIER_PATTERN},
                     "check id, e.g. internet-icmp", required=True)
_FROM = Param("from", "query", _TIME_SCHEMA, "start of the range, inclusive: RFC 3339 with "
              "an offset (encode + as %2B) or Unix seconds", required=True)
_TO = Param("to", "query", _TIME_SCHEMA, "end of the range, exclusive; after `from`",
            required=True)
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                  "default": DEFAULT_LIMIT}, "items per page")
_CURSOR = Param("cursor", "query", {"type": "string", "maxLength": MAX_CURSOR_CHARS},
                "`next_cursor` of the previous page, unchanged")


@dataclass(frozen=True)
class Endpoint:
    path: str
    handler: Handler
    summary: str
    description: str
    params: tuple[Param, ...]
    response: type[BaseModel]
    errors: tuple[int, ...] = (400, 401)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(f"{PREFIX}/missions", missions, "Every mission and its current access",
             "Missions of the inventory and missions probes have reported for, with the "
             "current access state overall and per group of checks.", (), MissionList),
    Endpoint(f"{PREFIX}/missions/{{code}}", mission, "One mission, with its checks",
             "The mission's access and the current state and newest figures of each check.",
             (Param("code", "path", {"type": "string", "pattern": MISSION_PATTERN},
                    "mission code, e.g. FRA", required=True),),
             MissionDetail, (400, 401, 404)),
    Endpoint(f"{PREFIX}/states", states, "Current state of every check",
             "One item per (mission, check), ordered by mission then check.",
             (Param("mission", "query", {"type": "string", "pattern": MISSION_PATTERN},
                    "only this mission's checks"), _LIMIT, _CURSOR), StatePage),
    Endpoint(f"{PREFIX}/intervals", intervals, "State or access intervals in a time range",
             "The periods overlapping [from, to), oldest first: of one check (`check`), or "
             "of the mission's access (`group`: * overall, or one group). Give exactly one "
             f"of them. At most {MAX_INTERVALS_DAYS} days per request.",
             (_MISSION_PARAM,
              Param("check", "query", {"type": "string", "pattern": IDENTIFIER_PATTERN},
                    "check id: that check's state intervals"),
              Param("group", "query", {"type": "string", "pattern": GROUP_PATTERN},
                    "group name, or * for the mission overall: access intervals"),
              _FROM, _TO, _LIMIT, _CURSOR), IntervalPage),
    Endpoint(f"{PREFIX}/results", results, "Raw results of a check",
             "Results measured in [from, to), ordered by measurement time, each as the "
             "probe sent it plus `received_at`. At most "
             f"{MAX_RESULTS_DAYS} days per request; raw results are kept for the "
             "collector's retention.raw_days only.",
             (_MISSION_PARAM, _CHECK_PARAM, _FROM, _TO, _LIMIT, _CURSOR), ResultPage),
    Endpoint(f"{PREFIX}/rollups", rollups, "Per-minute or per-hour summaries of a check",
             "Buckets starting in [from, to), oldest first. At most "
             f"{MAX_MINUTE_ROLLUPS_DAYS} days per request at resolution 60, "
             f"{MAX_HOUR_ROLLUPS_DAYS} at 3600.",
             (_MISSION_PARAM, _CHECK_PARAM,
              Param("resolution", "query", {"type": "integer", "enum": list(RESOLUTIONS)},
                    "bucket length in seconds", required=True),
              _FROM, _TO, _LIMIT, _CURSOR), RollupPage),
    Endpoint(f"{PREFIX}/probes", probes, "Registered probes",
             "Every registered probe with its status, and since the collector started the "
             "time of its last accepted batch and the backlog it reported.", (), ProbeList),
    Endpoint(f"{PREFIX}/control", control, "The centre's control measurements of a target",
             "Control results measured in [from, to), oldest first (docs/control.md): of "
             "one target (`target`, as the control measured it), or of the target of one "
             "mission's check (`mission` and `check`), then with the mission's newest round "
             "beside them and, when the centre does not measure that check, why. At most "
             f"{MAX_CONTROL_DAYS} days per request.",
             (Param("target", "query", {"type": "string", "maxLength": MAX_TARGET_CHARS},
                    "a target as measured: URL, host or resolver address"),
              Param("mission", "query", {"type": "string", "pattern": MISSION_PATTERN},
                    "mission code, with `check`"),
              Param("check", "query", {"type": "string", "pattern": IDENTIFIER_PATTERN},
                    "check id, with `mission`"),
              _FROM, _TO, _LIMIT, _CURSOR), ControlPage),
    Endpoint(f"{PREFIX}/paths", paths, "Paths recorded to a check's target",
             "The paths the mission's probe recorded to the check's target in [from, to), "
             "newest first (docs/path.md): after a confirmed failure (`trigger` failure) and "
             "as a daily baseline; `last_good` is the newest baseline, whenever recorded. "
             f"At most {MAX_PATHS_DAYS} days per request.",
             (_MISSION_PARAM, _CHECK_PARAM, _FROM, _TO, _LIMIT, _CURSOR), PathPage),
)
