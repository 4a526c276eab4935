"""Working-time calendar: holidays, make-up days (調休), working periods, natural clock."""

from __future__ import annotations

import time as wallclock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.calendar import WorkCalendar

CST = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A wall-clock moment in Beijing time."""
    return datetime(y, mo, d, h, mi, tzinfo=CST)


def local(moment: datetime) -> datetime:
    return moment.astimezone(CST)


# ---- working days ------------------------------------------------------------------------------


def test_national_day_and_mid_autumn_2025() -> None:
    for day in range(1, 9):  # 1–8 October 2025 off (National Day + Mid-Autumn)
        assert not CAL.is_working_day(date(2025, 10, day)), day
    assert CAL.is_working_day(date(2025, 9, 28))  # Sunday, make-up working day
    assert CAL.is_working_day(date(2025, 10, 11))  # Saturday, make-up working day
    assert CAL.is_working_day(date(2025, 10, 9)) and CAL.is_working_day(date(2025, 10, 10))
    assert not CAL.is_working_day(date(2025, 10, 12))  # an ordinary Sunday
    assert not CAL.is_working_day(date(2025, 9, 27))  # an ordinary Saturday


def test_spring_festival_2026() -> None:
    for day in range(15, 24):  # 15–23 February 2026 off
        assert not CAL.is_working_day(date(2026, 2, day)), day
    assert CAL.is_working_day(date(2026, 2, 14))  # Saturday, make-up working day
    assert CAL.is_working_day(date(2026, 2, 28))  # Saturday, make-up working day
    assert CAL.is_working_day(date(2026, 2, 24))


def test_add_across_national_day() -> None:
    # Tuesday 30 Sep 16:00 + 2 working hours: 1.5 h that day, then eight days off.
    assert local(CAL.add(at(2025, 9, 30, 16), 2, "working")) == at(2025, 10, 9, 9, 30)
    # 1 October itself is a holiday: the clock starts on 9 October (7 h), then 1 h on the 10th.
    assert local(CAL.add(at(2025, 10, 1, 10), 8, "working")) == at(2025, 10, 10, 10)
    assert CAL.elapsed(at(2025, 9, 30, 17, 30), at(2025, 10, 9, 9), "working") == 0.0
    assert CAL.elapsed(at(2025, 9, 30, 9), at(2025, 10, 9, 9), "working") == 7.0


def test_make_up_days_count() -> None:
    assert local(CAL.add(at(2025, 9, 28, 9), 2, "working")) == at(2025, 9, 28, 11)  # Sunday
    # Friday 10 Oct 17:00 + 2 h: 0.5 h Friday, then the make-up Saturday 11 Oct.
    assert local(CAL.add(at(2025, 10, 10, 17), 2, "working")) == at(2025, 10, 11, 10, 30)


def test_add_across_spring_festival_2026() -> None:
    # Friday 13 Feb 16:00 + 8 h: 1.5 h Friday, 6.5 h on the make-up Saturday 14 Feb.
    assert local(CAL.add(at(2026, 2, 13, 16), 8, "working")) == at(2026, 2, 14, 17)
    # Saturday 14 Feb 17:00 + 2 h: 0.5 h, then nine days off, resumes Tuesday 24 Feb.
    assert local(CAL.add(at(2026, 2, 14, 17), 2, "working")) == at(2026, 2, 24, 10, 30)
    assert CAL.elapsed(at(2026, 2, 14, 17, 30), at(2026, 2, 24, 9), "working") == 0.0


def test_friday_evening_start_counts_from_monday_morning() -> None:
    friday_evening = at(2025, 11, 14, 19)
    assert local(CAL.add(friday_evening, 2, "working")) == at(2025, 11, 17, 11)
    assert local(CAL.add(at(2025, 11, 14, 17), 1, "working")) == at(2025, 11, 17, 9, 30)
    assert CAL.elapsed(friday_evening, at(2025, 11, 17, 9), "working") == 0.0
    assert CAL.elapsed(friday_evening, at(2025, 11, 17, 10), "working") == 1.0


def test_working_periods_and_lunch_break() -> None:
    monday = (2025, 11, 17)
    assert local(CAL.add(at(*monday, 11), 2, "working")) == at(*monday, 14, 30)
    assert local(CAL.add(at(*monday, 12, 30), 1, "working")) == at(*monday, 14, 30)
    assert local(CAL.add(at(*monday, 7), 0.5, "working")) == at(*monday, 9, 30)
    # Landing exactly on a period end stays there (due 17:30, not next morning).
    assert local(CAL.add(at(*monday, 16, 30), 1, "working")) == at(*monday, 17, 30)
    assert local(CAL.add(at(*monday, 11), 1, "working")) == at(*monday, 12)
    assert CAL.elapsed(at(*monday, 8), at(*monday, 20), "working") == 7.0
    assert CAL.elapsed(at(*monday, 11, 30), at(*monday, 14), "working") == 1.0
    assert CAL.working_hours_on(date(*monday)) == 7.0
    assert CAL.working_hours_on(date(2025, 10, 1)) == 0.0


def test_zero_hours_and_reversed_spans() -> None:
    evening = at(2025, 11, 14, 19)
    assert CAL.add(evening, 0, "working") == evening
    assert CAL.elapsed(at(2025, 11, 17, 11), at(2025, 11, 17, 10), "working") == 0.0
    assert CAL.elapsed(at(2025, 11, 17, 11), at(2025, 11, 17, 11), "natural") == 0.0


def test_natural_clock_is_a_plain_timedelta() -> None:
    start = at(2025, 10, 1, 23)  # a holiday night: natural hours still count
    assert local(CAL.add(start, 2, "natural")) == at(2025, 10, 2, 1)
    assert CAL.elapsed(start, at(2025, 10, 3, 23), "natural") == 48.0
    assert CAL.add(start, 1.25, "natural") - start == timedelta(minutes=75)


def test_results_are_utc_and_inputs_may_use_any_zone() -> None:
    start_utc = datetime(2025, 11, 17, 1, 0, tzinfo=UTC)  # 09:00 in Beijing
    due = CAL.add(start_utc, 1, "working")
    assert due.tzinfo is UTC and due == datetime(2025, 11, 17, 2, 0, tzinfo=UTC)
    assert CAL.elapsed(start_utc, at(2025, 11, 17, 10), "working") == 1.0


def test_naive_datetimes_and_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add(datetime(2025, 11, 17, 9), 1, "working")
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.elapsed(at(2025, 11, 17, 9), datetime(2025, 11, 17, 10), "working")
    with pytest.raises(ValueError, match="negative"):
        CAL.add(at(2025, 11, 17, 9), -1, "working")
    with pytest.raises(ValueError, match="clock"):
        CAL.add(at(2025, 11, 17, 9), 1, "lunar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end after"):
        WorkCalendar(periods=[(time(12), time(9))])
    with pytest.raises(ValueError, match="overlap"):
        WorkCalendar(periods=[(time(9), time(12)), (time(11), time(17))])
    with pytest.raises(ValueError, match="at least one"):
        WorkCalendar(periods=[])


def test_custom_periods_and_zone() -> None:
    utc_calendar = WorkCalendar(periods=[(time(8), time(18))], tz="UTC")
    start = datetime(2025, 11, 14, 17, tzinfo=UTC)  # Friday
    assert utc_calendar.add(start, 3, "working") == datetime(2025, 11, 17, 10, tzinfo=UTC)
    assert utc_calendar.working_hours_on(date(2025, 11, 17)) == 10.0


# ---- years the holiday table does not cover ------------------------------------------------------


def test_out_of_coverage_year_falls_back_to_monday_to_friday() -> None:
    assert CAL.covers(date(2025, 10, 1)) and CAL.covers(date(2026, 2, 15))
    assert not CAL.covers(date(2099, 10, 1))
    assert not CAL.covers(date(1999, 10, 1))
    assert CAL.is_working_day(date(2099, 10, 1))  # Thursday: no holiday data, so it counts
    assert not CAL.is_working_day(date(2099, 10, 3))  # Saturday
    friday = datetime(2099, 10, 2, 17, tzinfo=CST)
    assert local(CAL.add(friday, 2, "working")) == datetime(2099, 10, 5, 10, 30, tzinfo=CST)
    assert CAL.elapsed(friday, datetime(2099, 10, 5, 10, 30, tzinfo=CST), "working") == 2.0


# ---- long spans -----------------------------------------------------------------------------


def test_long_spans_are_fast_and_exact() -> None:
    calendar = WorkCalendar()
    start, end = at(2010, 1, 1), at(2030, 1, 1)
    began = wallclock.perf_counter()
    total = calendar.elapsed(start, end, "working")
    back = calendar.add(start, total, "working")
    spent = wallclock.perf_counter() - began
    days = [date(2010, 1, 1) + timedelta(days=i) for i in range((end - start).days)]
    assert total == sum(calendar.working_hours_on(d) for d in days)
    assert 30_000 < total < 40_000  # ~250 working days × 7 h × 20 years
    assert local(back) == at(2029, 12, 31, 17, 30)  # last working moment of the span
    assert spent < 2.0


# ---- properties ------------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(CST)
)
hours = st.floats(min_value=0.0, max_value=600.0, allow_nan=False, allow_infinity=False)


def _in_working_time(moment: datetime) -> bool:
    wall = local(moment)
    if not CAL.is_working_day(wall.date()):
        return False
    return any(start <= wall.time() <= end for start, end in CAL.periods)


@given(start=moments, h=hours)
def test_elapsed_inverts_add(start: datetime, h: float) -> None:
    due = CAL.add(start, h, "working")
    assert CAL.elapsed(start, due, "working") == pytest.approx(h, abs=1e-6)
    assert due >= start
    if timedelta(hours=h) > timedelta(0):  # below a microsecond it is zero: start unchanged
        assert _in_working_time(due)
    natural = CAL.add(start, h, "natural")
    assert CAL.elapsed(start, natural, "natural") == pytest.approx(h, abs=1e-6)


@given(start=moments, a=hours, b=hours)
def test_add_is_monotonic_and_composes(start: datetime, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert CAL.add(start, low, "working") <= CAL.add(start, high, "working")
    # Zero is the identity (a start outside working time stays put), so composition holds
    # for steps of at least the datetime resolution, one microsecond.
    if timedelta(hours=a) > timedelta(0) and timedelta(hours=b) > timedelta(0):
        chained = CAL.add(CAL.add(start, a, "working"), b, "working")
        direct = CAL.add(start, a + b, "working")
        assert abs((chained - direct).total_seconds()) < 1e-3


@given(first=moments, second=moments, third=moments)
def test_elapsed_is_additive(first: datetime, second: datetime, third: datetime) -> None:
    a, b, c = sorted((first, second, third))
    whole = CAL.elapsed(a, c, "working")
    assert whole == pytest.approx(CAL.elapsed(a, b, "working") + CAL.elapsed(b, c, "working"))
    assert 0.0 <= whole <= CAL.elapsed(a, c, "natural")
