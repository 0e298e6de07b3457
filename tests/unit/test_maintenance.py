"""Maintenance windows: wall-clock times in IANA zones across DST changes, merging,
clipping and the edges (start inside, end outside)."""

from datetime import UTC, datetime

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from collector.inventory.maintenance import MaintenanceWindow, Schedule, local_to_utc, zone

WINDOW = TypeAdapter(MaintenanceWindow)


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def schedule(*windows: str, timezone: str | None = None) -> Schedule:
    """A schedule from windows written as in the inventory (YAML flow mappings)."""
    return Schedule(tuple(WINDOW.validate_python(yaml.safe_load(w)) for w in windows),
                    timezone)


def between(s: Schedule, start: float, end: float) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))
            for a, b in s.windows_between(start, end)]


def d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- one-off ---

def test_one_off_with_offsets_ignores_the_time_zone():
    s = schedule("{start: 2026-05-01T20:00:00+02:00, end: 2026-05-01T23:30:00+02:00}",
                 timezone="America/New_York")
    assert between(s, utc(2026, 5, 1), utc(2026, 5, 2)) == [(d(2026, 5, 1, 18),
                                                            d(2026, 5, 1, 21, 30))]


def test_one_off_naive_is_wall_clock_in_its_own_zone_else_the_schedules():
    own = schedule("{start: '2026-07-01T22:00', end: '2026-07-02T01:00', "
                   "timezone: Asia/Tokyo}", timezone="Europe/Paris")
    assert between(own, utc(2026, 7, 1), utc(2026, 7, 3)) == [(d(2026, 7, 1, 13),
                                                              d(2026, 7, 1, 16))]
    inherited = schedule("{start: '2026-07-01T22:00', end: '2026-07-02T01:00'}",
                         timezone="Europe/Paris")
    assert between(inherited, utc(2026, 7, 1), utc(2026, 7, 3)) == [(d(2026, 7, 1, 20),
                                                                    d(2026, 7, 1, 23))]


def test_one_off_z_suffix_and_yaml_timestamps():
    s = schedule("{start: '2026-01-10T08:00Z', end: 2026-01-10 09:00:00+00:00}")
    assert between(s, utc(2026, 1, 10), utc(2026, 1, 11)) == [(d(2026, 1, 10, 8),
                                                              d(2026, 1, 10, 9))]


# --- weekly, Europe/Paris: CET (+1) until 2026-03-29 01:00 UTC, CEST (+2) until 2026-10-25
# 01:00 UTC ---

SAT_2AM_PARIS = "{every: week, days: [sat], at: '02:00', duration: 3h, timezone: Europe/Paris}"


def test_weekly_stays_at_local_02_00_across_spring_forward():
    s = schedule(SAT_2AM_PARIS)
    assert between(s, utc(2026, 3, 20), utc(2026, 4, 6)) == [
        (d(2026, 3, 21, 1), d(2026, 3, 21, 4)),  # 02:00 CET
        (d(2026, 3, 28, 1), d(2026, 3, 28, 4)),  # 02:00 CET, the day before the change
        (d(2026, 4, 4, 0), d(2026, 4, 4, 3)),  # 02:00 CEST
    ]


def test_weekly_stays_at_local_02_00_across_fall_back():
    s = schedule(SAT_2AM_PARIS)
    assert between(s, utc(2026, 10, 23), utc(2026, 11, 1)) == [
        (d(2026, 10, 24, 0), d(2026, 10, 24, 3)),  # 02:00 CEST
        (d(2026, 10, 31, 1), d(2026, 10, 31, 4)),  # 02:00 CET
    ]


def test_duration_is_elapsed_time_across_the_change():
    # Saturday 23:00 CET for 3 h crosses the jump: it ends at 03:00 CEST, 3 real hours.
    s = schedule("{every: week, days: [saturday], at: '23:00', duration: 3h, "
                 "timezone: Europe/Paris}")
    assert between(s, utc(2026, 3, 28), utc(2026, 3, 30)) == [(d(2026, 3, 28, 22),
                                                              d(2026, 3, 29, 1))]


def test_non_existent_local_time_is_read_with_the_offset_before_the_gap():
    # 02:30 on 2026-03-29 does not exist in Paris: RFC 5545 reads it as 02:30 CET, that is
    # 01:30 UTC = 03:30 CEST, and the window keeps its full hour.
    s = schedule("{every: week, days: [sun], at: '02:30', duration: 1h, "
                 "timezone: Europe/Paris}")
    assert between(s, utc(2026, 3, 21), utc(2026, 4, 6)) == [
        (d(2026, 3, 22, 1, 30), d(2026, 3, 22, 2, 30)),  # 02:30 CET
        (d(2026, 3, 29, 1, 30), d(2026, 3, 29, 2, 30)),  # the gap: 03:30 CEST
        (d(2026, 4, 5, 0, 30), d(2026, 4, 5, 1, 30)),  # 02:30 CEST
    ]
    assert local_to_utc(datetime(2026, 3, 29, 2, 30), zone("Europe/Paris")) == utc(
        2026, 3, 29, 1, 30)


def test_ambiguous_local_time_is_the_first_occurrence():
    s = schedule("{every: week, days: [sun], at: '02:30', duration: 1h, "
                 "timezone: Europe/Paris}")
    assert between(s, utc(2026, 10, 24), utc(2026, 10, 26)) == [
        (d(2026, 10, 25, 0, 30), d(2026, 10, 25, 1, 30))]  # 02:30 CEST, not CET


def test_new_york_spring_forward_and_fall_back():
    # EST (-5) until 2026-03-08 07:00 UTC, EDT (-4) until 2026-11-01 06:00 UTC.
    s = schedule("{every: week, days: [sun], at: '02:00', duration: 2h}",
                 timezone="America/New_York")
    assert between(s, utc(2026, 3, 1), utc(2026, 3, 16)) == [
        (d(2026, 3, 1, 7), d(2026, 3, 1, 9)),  # 02:00 EST
        (d(2026, 3, 8, 7), d(2026, 3, 8, 9)),  # 02:00 does not exist: 03:00 EDT
        (d(2026, 3, 15, 6), d(2026, 3, 15, 8)),  # 02:00 EDT
    ]
    assert between(s, utc(2026, 10, 25), utc(2026, 11, 2)) == [
        (d(2026, 10, 25, 6), d(2026, 10, 25, 8)),  # 02:00 EDT
        (d(2026, 11, 1, 7), d(2026, 11, 1, 9)),  # 02:00 EST, after the fall back
    ]
    twice = schedule("{every: week, days: [sun], at: '01:30', duration: 1h}",
                     timezone="America/New_York")
    assert between(twice, utc(2026, 11, 1), utc(2026, 11, 2)) == [
        (d(2026, 11, 1, 5, 30), d(2026, 11, 1, 6, 30))]  # the first 01:30, EDT


def test_weekly_several_days():
    s = schedule("{every: week, days: [mon, thu], at: '12:00', duration: 30m}",
                 timezone="UTC")
    # 2026-06-01 is a Monday.
    assert between(s, utc(2026, 6, 1), utc(2026, 6, 8)) == [
        (d(2026, 6, 1, 12), d(2026, 6, 1, 12, 30)), (d(2026, 6, 4, 12), d(2026, 6, 4, 12, 30))]


# --- monthly ---

def starts(s: Schedule, start: float, end: float) -> list[datetime]:
    return [a for a, _ in between(s, start, end)]


def test_monthly_by_day_of_month_skips_months_without_that_day():
    s = schedule("{every: month, day: 31, at: '03:00', duration: 1h}", timezone="UTC")
    assert starts(s, utc(2026, 1, 1), utc(2026, 6, 1)) == [
        d(2026, 1, 31, 3), d(2026, 3, 31, 3), d(2026, 5, 31, 3)]


def test_monthly_first_sunday_and_last_friday():
    first = schedule("{every: month, day: first sun, at: '03:00', duration: 1h}",
                     timezone="Europe/Paris")
    # 2026-03-01 is a Sunday (CET); April's first Sunday is the 5th (CEST).
    assert starts(first, utc(2026, 3, 1), utc(2026, 6, 1)) == [
        d(2026, 3, 1, 2), d(2026, 4, 5, 1), d(2026, 5, 3, 1)]
    last = schedule("{every: month, day: 'Last Friday', at: '22:00', duration: 4h}",
                    timezone="UTC")
    assert starts(last, utc(2026, 3, 1), utc(2026, 5, 1)) == [
        d(2026, 3, 27, 22), d(2026, 4, 24, 22)]


# --- merging, clipping, edges ---

def test_windows_between_merges_overlapping_and_touching_windows():
    s = schedule(SAT_2AM_PARIS,  # 2026-04-04 00:00-03:00 UTC
                 "{start: 2026-04-04T02:00:00Z, end: 2026-04-04T05:00:00Z}",  # overlaps
                 "{start: 2026-04-04T05:00:00Z, end: 2026-04-04T06:00:00Z}",  # touches
                 "{start: 2026-04-04T07:00:00Z, end: 2026-04-04T08:00:00Z}")  # apart
    assert between(s, utc(2026, 4, 3), utc(2026, 4, 5)) == [
        (d(2026, 4, 4, 0), d(2026, 4, 4, 6)), (d(2026, 4, 4, 7), d(2026, 4, 4, 8))]


def test_windows_between_clips_to_the_range():
    s = schedule(SAT_2AM_PARIS)
    assert between(s, utc(2026, 4, 4, 1), utc(2026, 4, 4, 2)) == [
        (d(2026, 4, 4, 1), d(2026, 4, 4, 2))]
    # A window that began before the range (the day before, local time) is found too.
    late = schedule("{every: week, days: [fri], at: '23:00', duration: 4h}", timezone="UTC")
    assert between(late, utc(2026, 4, 4), utc(2026, 4, 5)) == [
        (d(2026, 4, 4), d(2026, 4, 4, 3))]
    assert s.windows_between(utc(2026, 4, 5), utc(2026, 4, 5)) == []
    assert s.windows_between(utc(2026, 4, 6), utc(2026, 4, 5)) == []
    assert Schedule().windows_between(0, utc(2030, 1, 1)) == []


def test_in_maintenance_start_inclusive_end_exclusive():
    s = schedule(SAT_2AM_PARIS)
    start, end = utc(2026, 4, 4, 0), utc(2026, 4, 4, 3)
    assert not s.in_maintenance(start - 0.001)
    assert s.in_maintenance(start)
    assert s.in_maintenance(end - 0.001)
    assert not s.in_maintenance(end)
    one_off = schedule("{start: 2026-04-10T10:00:00Z, end: 2026-04-10T11:00:00Z}")
    assert one_off.in_maintenance(utc(2026, 4, 10, 10))
    assert not one_off.in_maintenance(utc(2026, 4, 10, 11))


def test_a_touching_pair_has_no_gap_at_the_joint():
    s = schedule("{start: 2026-04-10T10:00:00Z, end: 2026-04-10T11:00:00Z}",
                 "{start: 2026-04-10T11:00:00Z, end: 2026-04-10T12:00:00Z}")
    assert s.in_maintenance(utc(2026, 4, 10, 11))


def test_a_year_of_weekly_windows():
    s = schedule(SAT_2AM_PARIS)
    windows = s.windows_between(utc(2026, 1, 1), utc(2027, 1, 1))
    assert len(windows) == 52  # 2026 has 52 Saturdays
    assert all(b - a == 3 * 3600 for a, b in windows)


# --- what is refused ---

@pytest.mark.parametrize("text, expectation", [
    ("{every: week, days: [sat], at: 12:30, duration: 3h}", "in quotes"),
    ("{every: week, days: [sat], at: '25:00', duration: 3h}", "HH:MM"),
    ("{every: week, days: [sat], at: '02:00', duration: 3}", "3h, 90m"),
    ("{every: week, days: [sat], at: '02:00', duration: 8d}", "at most 7 days"),
    ("{every: week, days: [caturday], at: '02:00', duration: 3h}", "mon, tue"),
    ("{every: week, on: [sat], at: '02:00', duration: 3h}", "days: [sat]"),
    ("{every: fortnight, days: [sat], at: '02:00', duration: 3h}", "every: week"),
    ("{every: month, day: 32, at: '02:00', duration: 3h}", "1 to 31"),
    ("{every: month, day: fifth sun, at: '02:00', duration: 3h}", "first sun"),
    ("{every: week, days: [sat], at: '02:00', duration: 3h, timezone: Mars/Olympus}",
     "IANA time zone"),
    ("{start: 2026-05-02T02:00:00Z, end: 2026-05-01T02:00:00Z}", "after start"),
    ("{start: 2026-05-01T02:00:00Z, end: '2026-05-02T02:00'}", "both with a UTC offset"),
    ("{start: 2026-05-01, end: 2026-05-02}", "date and time"),
    ("{start: 1777600000, end: 1777700000}", "date and time"),
])
def test_mistakes_say_what_was_expected(text, expectation):
    with pytest.raises(ValidationError) as caught:
        WINDOW.validate_python(yaml.safe_load(text))
    assert expectation in str(caught.value)
