"""Maintenance windows: when a mission's outages are planned, so that uptime leaves them out
(uptime = time up / (time observed - maintenance), see DESIGN.md).

A window is either one-off (`start`, `end`) or recurring (`every: week` or `every: month`,
at a wall-clock time for a duration). Wall-clock times are in the window's IANA time zone,
so "Saturday 02:00 Europe/Paris" stays at 02:00 in Paris all year: its UTC instant moves by
an hour at each DST change.

Local times that do not exist or exist twice are resolved as iCalendar does (RFC 5545,
3.3.5), which is also what Python gives for `fold=0`:

- a time skipped by the spring-forward change (02:30 on 2026-03-29 in Paris) is read with
  the offset from before the change, so it lands as far after the jump as it was meant to
  be after its start: 02:30 CET = 01:30 UTC = 03:30 CEST;
- a time that happens twice at the fall-back change (02:30 on 2026-10-25 in Paris) is
  the first of the two: 02:30 CEST = 00:30 UTC.

A duration is elapsed time: a 3 h window lasts 3 h even across a DST change (its end on
the wall clock moves instead). Windows are half-open: the start is inside, the end is not.
Full description and examples: docs/inventory.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
# Longer than a week, a recurring window overlaps its next occurrence: surely a mistake.
MAX_RECURRING_DURATION = timedelta(days=7)
_DAY = timedelta(days=1)

Interval = tuple[float, float]  # (start, end) in UTC epoch seconds, end excluded


# --- field types ---

def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or ValueError saying what was expected."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        try:
            ZoneInfo("UTC")
        except ZoneInfoNotFoundError:
            raise ValueError("no time zone database on this machine: install the system's "
                             "tzdata package or the Python package tzdata") from exc
        raise ValueError("expected an IANA time zone name such as Europe/Paris or "
                         "America/New_York") from exc


def _check_zone(name: str) -> str:
    zone(name)
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _parse_clock(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 12:30 as the base-60 number 750.
        raise ValueError('expected a time of day in quotes, e.g. "12:30" (unquoted, YAML '
                         "reads 12:30 as a number)")
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError('expected a time of day as "HH:MM", e.g. "02:00"')
    return time(int(match[1]), int(match[2]))


Clock = Annotated[time, BeforeValidator(_parse_clock)]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


def parse_duration(value: Any) -> timedelta:
    """'3h', '90m', '1h30m', '2d': a number alone would leave the unit to a guess."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if match is None or not any(match.groups()):
        raise ValueError("expected a duration such as 3h, 90m, 1h30m or 2d")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _parse_datetime(value: Any) -> datetime:
    # YAML already turns most ISO timestamps into datetimes; strings cover the rest
    # ("2026-03-29T02:00", "...Z"). Numbers and bare dates are refused: a Unix time is
    # unreadable in a file people edit, and a date alone leaves the hour to a guess.
    if isinstance(value, datetime):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if "T" in text.upper() or " " in text:  # a time part: not a bare date
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError("expected an ISO 8601 date and time, e.g. 2026-03-29T02:00 (in the "
                     "window's time zone) or 2026-03-29T02:00:00+02:00")


DateTime = Annotated[datetime, BeforeValidator(_parse_datetime)]


def _parse_weekday(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text in WEEKDAYS:
        return text
    if text in _FULL_WEEKDAYS:
        return WEEKDAYS[_FULL_WEEKDAYS.index(text)]
    raise ValueError("expected a day of the week: " + ", ".join(WEEKDAYS))


Weekday = Annotated[str, BeforeValidator(_parse_weekday)]


def _parse_month_day(value: Any) -> int | str:
    """15 (day of the month) or 'first sun' ... 'last fri' (normalised to that form)."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 31:
        return value
    if isinstance(value, str):
        parts = value.strip().lower().split()
        if len(parts) == 1 and parts[0].isdigit() and 1 <= int(parts[0]) <= 31:
            return int(parts[0])
        if len(parts) == 2 and parts[0] in ORDINALS:
            try:
                return f"{parts[0]} {_parse_weekday(parts[1])}"
            except ValueError:
                pass
    raise ValueError("expected a day of the month from 1 to 31, or an ordinal and a weekday "
                     "such as 'first sun' or 'last fri' (first, second, third, fourth, last)")


MonthDay = Annotated[int | str, BeforeValidator(_parse_month_day)]


def invalid_at(title: str, problems: Iterable[tuple[tuple, str, Any]]) -> ValidationError:
    """A ValidationError at the given (location, message, input) places. Raised from a
    validator, pydantic keeps it and prefixes the locations, so the error points at the
    line of the field concerned rather than at the whole model."""
    return ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError("invalid", "{message}", {"message": msg}),
                         loc=loc, input=value)
        for loc, msg, value in problems])


# --- the windows ---

class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: TimeZoneName | None = Field(
        None, description="IANA zone of the wall-clock times; default: the mission's, then "
                          "the inventory's")
    note: str | None = Field(None, max_length=500, description="why: shown in reports")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_is_true(cls, data: Any) -> Any:
        # YAML 1.1 reads the key `on` as the boolean true: say so instead of "unknown True".
        for key, value in data.items() if isinstance(data, dict) else ():
            if isinstance(key, bool):
                raise invalid_at("window", [(
                    ("on" if key else "off",),
                    "this key reads as true or false in YAML (like on, off, yes, no): for "
                    "the days of a weekly window write days: [sat]", value)])
        return data


class OneOffWindow(_Window):
    """From `start` to `end`. Times without an offset are in the window's time zone."""

    start: DateTime
    end: DateTime

    @model_validator(mode="after")
    def _consistent(self) -> OneOffWindow:
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise ValueError("give start and end both with a UTC offset or both without")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def needs_timezone(self) -> bool:
        return self.start.tzinfo is None

    def first_time(self) -> tuple[str, str]:
        """The field and text of its first time, where an error about its times points."""
        return "start", self.start.isoformat()


class _Recurring(_Window):
    at: Clock = Field(description="local start time, HH:MM")
    duration: Duration

    @field_validator("duration")
    @classmethod
    def _duration_range(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= MAX_RECURRING_DURATION:
            raise ValueError("expected a duration longer than 0 and at most 7 days")
        return value

    @property
    def needs_timezone(self) -> bool:
        return True

    def first_time(self) -> tuple[str, str]:
        return "at", self.at.strftime("%H:%M")

    def matches(self, day: date) -> bool:
        raise NotImplementedError


class WeeklyWindow(_Recurring):
    """Every week on `days` at `at` for `duration`."""

    every: Literal["week"]
    days: list[Weekday] = Field(min_length=1, max_length=7)

    def matches(self, day: date) -> bool:
        return WEEKDAYS[day.weekday()] in self.days


class MonthlyWindow(_Recurring):
    """Every month on `day` (1-31, or 'first sun' ... 'last fri') at `at` for `duration`.
    A month without that day (31 in April) has no window that month, as in cron and RRULE."""

    every: Literal["month"]
    day: MonthDay

    def matches(self, day: date) -> bool:
        if isinstance(self.day, int):
            return day.day == self.day
        ordinal, weekday = self.day.split()
        if WEEKDAYS[day.weekday()] != weekday:
            return False
        n = ORDINALS[ordinal]
        if n == -1:
            return (day + timedelta(days=7)).month != day.month  # no later one this month
        return (day.day - 1) // 7 + 1 == n


def _window_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        every = value.get("every", "once")
        return every if isinstance(every, str) else None
    if isinstance(value, BaseModel):
        return getattr(value, "every", "once")
    return None


MaintenanceWindow = Annotated[
    Annotated[OneOffWindow, Tag("once")]
    | Annotated[WeeklyWindow, Tag("week")]
    | Annotated[MonthlyWindow, Tag("month")],
    Discriminator(
        _window_kind, custom_error_type="maintenance_window",
        custom_error_message="expected a one-off window (start, end) or a recurring one "
                             "with every: week (days, at, duration) or every: month (day, "
                             "at, duration)"),
]
AnyWindow = OneOffWindow | WeeklyWindow | MonthlyWindow


# --- from wall-clock times to UTC instants ---

def local_to_utc(local: datetime, tz: ZoneInfo) -> float:
    """Epoch seconds of `local` (naive, wall-clock in `tz`), as RFC 5545 resolves it.

    fold=0 is exactly that rule: for a time in the spring-forward gap Python uses the offset
    from before the gap (02:30 -> 03:30 summer time); for a time that happens twice it
    takes the first (summer time). Written out so the choice is visible, not an accident.
    """
    return local.replace(tzinfo=tz, fold=0).timestamp()


def _instant(value: datetime, tz: ZoneInfo | None) -> float:
    if value.tzinfo is not None:
        return value.timestamp()
    if tz is None:
        raise ValueError("a time without a UTC offset needs a time zone")
    return local_to_utc(value, tz)


def occurrences(window: AnyWindow, tz: ZoneInfo | None, lo: float,
                hi: float) -> Iterator[Interval]:
    """Every occurrence of `window` that ends after `lo` and starts at or before `hi`,
    unclipped. `tz` is the zone for its wall-clock times (the window's own wins)."""
    if window.timezone is not None:
        tz = zone(window.timezone)
    if isinstance(window, OneOffWindow):
        start, end = _instant(window.start, tz), _instant(window.end, tz)
        if end > lo and start <= hi and end > start:
            yield start, end
        return
    if tz is None:
        raise ValueError("a recurring window needs a time zone")
    length = window.duration.total_seconds()
    # Local dates whose occurrence could reach [lo, hi]: a day of margin on each side
    # covers any UTC offset (at most 14 h) and the DST shift.
    first = datetime.fromtimestamp(lo - length, tz).date() - _DAY
    last = datetime.fromtimestamp(hi, tz).date() + _DAY
    day = first
    while day <= last:
        if window.matches(day):
            start = local_to_utc(datetime.combine(day, window.at), tz)
            if start + length > lo and start <= hi:
                yield start, start + length
        day += _DAY


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals joined ([a, b) + [b, c) = [a, c))."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True)
class Schedule:
    """One mission's maintenance: its windows and the time zone their wall-clock times
    default to (the mission's, else the inventory's)."""

    windows: tuple[AnyWindow, ...] = ()
    timezone: str | None = None

    def _zone(self) -> ZoneInfo | None:
        return zone(self.timezone) if self.timezone is not None else None

    def windows_between(self, start_utc: float, end_utc: float) -> list[Interval]:
        """The maintenance inside [start_utc, end_utc): merged, clipped to the range,
        sorted, as (start, end) UTC epoch seconds."""
        if end_utc <= start_utc:
            return []
        tz = self._zone()
        found = (occ for w in self.windows for occ in occurrences(w, tz, start_utc, end_utc))
        clipped = ((max(s, start_utc), min(e, end_utc)) for s, e in found)
        return merge((s, e) for s, e in clipped if e > s)

    def in_maintenance(self, t_utc: float) -> bool:
        """Whether `t_utc` is inside a window: its start is, its end is not."""
        tz = self._zone()
        return any(s <= t_utc < e
                   for w in self.windows for s, e in occurrences(w, tz, t_utc, t_utc))


def check(window: AnyWindow, tz_name: str | None) -> str | None:
    """What is wrong with `window` once its time zone is known, or None."""
    if window.needs_timezone and window.timezone is None and tz_name is None:
        return ("no time zone for these wall-clock times: set timezone here, on the "
                "mission, or in defaults.timezone")
    name = window.timezone or tz_name
    if isinstance(window, OneOffWindow) and name is not None and window.needs_timezone:
        tz = zone(name)
        # Ordered as written, the two can still swap when start falls in a DST gap.
        if _instant(window.end, tz) <= _instant(window.start, tz):
            return "end is not after start once resolved in the time zone (a DST change)"
    return None
