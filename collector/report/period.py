"""The period a report covers: a year, quarter, month or date range, with its boundaries
at local midnight in a time zone (DST-correct: each boundary is resolved on its own date,
so a month in Europe/Paris across the March change is an hour shorter)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from collector.inventory.maintenance import local_to_utc, zone


class PeriodError(ValueError):
    """str() says what was expected."""


@dataclass(frozen=True)
class Span:
    label: str
    start: float  # UTC epoch seconds, included
    end: float  # excluded


@dataclass(frozen=True)
class Period:
    label: str
    timezone: str
    first_day: date
    end_day: date  # the day after the last one
    start: float
    end: float

    def months(self) -> list[Span]:
        """The calendar months (local) the period touches, clipped to it."""
        spans = []
        day = self.first_day.replace(day=1)
        while day < self.end_day:
            following = _next_month(day)
            start = midnight(max(day, self.first_day), self.timezone)
            end = midnight(min(following, self.end_day), self.timezone)
            spans.append(Span(f"{day:%Y-%m}", start, end))
            day = following
        return spans


def midnight(day: date, tz_name: str) -> float:
    return local_to_utc(datetime.combine(day, datetime.min.time()), zone(tz_name))


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _make(label: str, first: date, end: date, tz_name: str) -> Period:
    if end <= first:
        raise PeriodError("the period must end after it starts")
    return Period(label, tz_name, first, end, midnight(first, tz_name), midnight(end, tz_name))


def period_of(*, tz: str = "UTC", year: int | None = None, quarter: str | None = None,
              month: str | None = None, start: str | None = None,
              end: str | None = None) -> Period:
    """Exactly one of: year (2026), quarter ('2026-Q1'), month ('2026-02'), or start and
    end dates ('2026-01-01', '2026-03-31', both included)."""
    try:
        zone(tz)
    except ValueError as exc:
        raise PeriodError(f"--tz {tz!r}: {exc}") from None
    given = [x is not None for x in (year, quarter, month)] + [start is not None or
                                                               end is not None]
    if sum(given) != 1:
        raise PeriodError("give exactly one of --year, --quarter, --month or --from/--to")
    if year is not None:
        return _make(str(year), date(year, 1, 1), date(year + 1, 1, 1), tz)
    if quarter is not None:
        found = re.fullmatch(r"(\d{4})-?[Qq]([1-4])", quarter.strip())
        if not found:
            raise PeriodError(f"--quarter {quarter!r}: expected YEAR-QN, e.g. 2026-Q1")
        first = date(int(found[1]), 3 * int(found[2]) - 2, 1)
        return _make(f"{found[1]}-Q{found[2]}", first,
                     _next_month(_next_month(_next_month(first))), tz)
    if month is not None:
        found = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
        if not found or not 1 <= int(found[2]) <= 12:
            raise PeriodError(f"--month {month!r}: expected YEAR-MM, e.g. 2026-02")
        first = date(int(found[1]), int(found[2]), 1)
        return _make(month.strip(), first, _next_month(first), tz)
    if start is None or end is None:
        raise PeriodError("--from and --to go together")
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        raise PeriodError(f"--from {start!r} --to {end!r}: expected dates as YYYY-MM-DD"
                          ) from None
    return _make(f"{first} to {last}", first, last + timedelta(days=1), tz)
