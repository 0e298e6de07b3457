"""Reading the read API's requests: the query string (strictly: an unknown or repeated
parameter is refused), times (RFC 3339 or Unix seconds), opaque page cursors, and the
limits on what one request may ask for (page size, time range per endpoint).

Apart from the aiohttp request it reads, it knows nothing of the web app: the handlers
call it, and the OpenAPI document (openapi.py, routes.py) describes the parameters with
the same patterns and limits, so that the document states what is enforced here. Every
problem is a Refusal(400) whose reason names the parameter."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import datetime

from aiohttp import web

from collector.web.context import Refusal

PREFIX = "/api/v1"
DEFAULT_LIMIT, MAX_LIMIT = 500, 5_000
DAY_S = 86_400
# Longest time range per request: a bound on the rows one request can make the database
# read (7 days of a 10 s check is 60,480 raw results, paged through 5,000 at a time).
MAX_RESULTS_DAYS = 7
MAX_MINUTE_ROLLUPS_DAYS = 31
MAX_HOUR_ROLLUPS_DAYS = 400
MAX_INTERVALS_DAYS = 400
MAX_CONTROL_DAYS = 7  # as raw results: the control results are kept as long
MAX_TARGET_CHARS = 2_048
RESOLUTIONS = (60, 3_600)
MAX_CURSOR_CHARS = 512
# 9999-12-31T23:59:59Z: beyond it a time cannot be written in RFC 3339.
LATEST_TIME = 253_402_300_799.0

MISSION_PATTERN = r"^[A-Z0-9][A-Z0-9-]{1,15}$"
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
GROUP_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$"
UNIX_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,9})?$"
RFC3339_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                   r"([Zz]|[+-][0-9]{2}:[0-9]{2})$")
MISSION_RE = re.compile(MISSION_PATTERN)
IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)
GROUP_RE = re.compile(GROUP_PATTERN)
_UNIX = re.compile(UNIX_PATTERN)
_RFC3339 = re.compile(RFC3339_PATTERN)
# "+01:00" in a query string that was not URL-encoded arrives as " 01:00".
_PLUS_AS_SPACE = re.compile(r"[0-9] [0-9]{2}:[0-9]{2}$")


def shown(text: str) -> str:
    """A bit of the client's input for an error message, never a page of it."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def parse_time(name: str, text: str) -> float:
    """RFC 3339 with an offset, or Unix seconds, as Unix seconds; Refusal(400) otherwise."""
    if _UNIX.match(text):
        value = float(text)
    elif _RFC3339.match(text):
        try:
            value = datetime.fromisoformat(text.upper()).timestamp()
        except (ValueError, OverflowError) as exc:  # e.g. month 13
            raise Refusal(400, f"'{name}': {shown(text)} is not a valid time ({exc})") from exc
    elif _PLUS_AS_SPACE.search(text):
        raise Refusal(400, f"'{name}': {shown(text)} has a space where its offset's sign "
                           "should be: URL-encode '+' as %2B (or use Z)")
    else:
        raise Refusal(400, f"'{name}': {shown(text)} is not an RFC 3339 time with an offset "
                           "(2026-11-29T10:00:00Z, 2026-11-29T11:00:00+01:00) nor Unix seconds")
    if not 0 <= value <= LATEST_TIME:
        raise Refusal(400, f"'{name}' must be between 1970 and 9999 (got {shown(text)})")
    return value


def encode_cursor(endpoint: str, after: list) -> str:
    """An opaque position in a listing: the keyset of the last item given out."""
    raw = json.dumps({"e": endpoint, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(endpoint: str, text: str, types: tuple[type, ...]) -> tuple:
    """The keyset of a cursor `encode_cursor(endpoint, ...)` gave out; Refusal(400) for
    anything else (corrupt, from another endpoint, hand-made)."""
    refused = Refusal(400, "'cursor' is not a cursor this endpoint gave out: pass the "
                           "next_cursor of the previous page unchanged")
    if len(text) > MAX_CURSOR_CHARS:
        raise refused
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise refused from None
    if not isinstance(data, dict) or data.get("e") != endpoint:
        raise refused
    after = data.get("a")
    if not isinstance(after, list) or len(after) != len(types):
        raise refused
    values = []
    for value, wanted in zip(after, types, strict=True):
        if isinstance(value, bool):
            raise refused
        if wanted is float and isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
        elif wanted is int and isinstance(value, int) and -2**63 <= value < 2**63:
            values.append(value)  # a row id: the databases' 64-bit integer
        elif wanted is str and isinstance(value, str):
            values.append(value)
        else:
            raise refused
    return tuple(values)


class Params:
    """The query string of one request, read strictly: an unknown parameter is refused,
    because a typo (?mision=FRA) would otherwise silently widen the answer."""

    def __init__(self, request: web.Request, allowed: tuple[str, ...]) -> None:
        self.values: dict[str, str] = {}
        for name, value in request.query.items():
            if name not in allowed:
                takes = ", ".join(allowed) if allowed else "no parameters"
                raise Refusal(400, f"unknown parameter {shown(name)}: this endpoint takes "
                                   f"{takes}")
            if name in self.values:
                raise Refusal(400, f"parameter '{name}' is given more than once")
            self.values[name] = value

    def text(self, name: str, required: bool) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise Refusal(400, f"missing parameter '{name}'")
            return None
        return value

    def matching(self, name: str, pattern: re.Pattern, what: str,
                 required: bool = True) -> str | None:
        value = self.text(name, required)
        if value is not None and not pattern.match(value):
            raise Refusal(400, f"'{name}': {shown(value)} is not {what}")
        return value

    def mission(self, required: bool = True) -> str | None:
        return self.matching("mission", MISSION_RE, "a mission code (upper case, e.g. FRA)",
                             required)

    def time_range(self, max_days: int, what: str) -> tuple[float, float]:
        start = parse_time("from", self.text("from", True))
        end = parse_time("to", self.text("to", True))
        if start >= end:
            raise Refusal(400, "'from' must be before 'to'")
        if end - start > max_days * DAY_S:
            raise Refusal(400, f"'from' to 'to' spans {(end - start) / DAY_S:.4g} days: {what} "
                               f"serves at most {max_days} days per request")
        return start, end

    def limit(self) -> int:
        text = self.text("limit", False)
        if text is None:
            return DEFAULT_LIMIT
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise Refusal(400, f"'limit' must be an integer from 1 to {MAX_LIMIT} "
                               f"(got {shown(text)})")
        return int(text)

    def cursor(self, endpoint: str, types: tuple[type, ...]) -> tuple | None:
        text = self.text("cursor", False)
        return None if text is None else decode_cursor(endpoint, text, types)
