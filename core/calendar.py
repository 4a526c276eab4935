"""Working-time calendar (工作日历): working hours, public holidays and make-up days (调休).

Why a calendar object and not ``timedelta``: time limits (限时办结) of most categories count
*working* hours — a case dispatched on Friday at 17:00 with a 2-hour limit is due on Monday at
10:00, and one dispatched before the National Day holiday is due after it. Urgent safety
categories count natural hours instead; both clocks go through the same two functions
(:meth:`WorkCalendar.add` and :meth:`WorkCalendar.elapsed`) so deadlines, traffic lights and
overdue margins can never disagree about what an hour is.

Datetimes must be timezone-aware; results are returned in UTC (what the event store keeps),
while working hours and the working-day test are interpreted in the calendar's own time zone.
Public holidays come from ``chinese_calendar`` (a maintained table of State Council notices).
For years it does not know yet it raises ``NotImplementedError``; we then fall back to
Monday–Friday and expose :meth:`WorkCalendar.covers`, so callers can warn that deadlines in
that year ignore holidays instead of failing to compute them at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from core.catalogue import Clock

DEFAULT_PERIODS: tuple[tuple[time, time], ...] = (
    (time(9, 0), time(12, 0)),
    (time(13, 30), time(17, 30)),
)
DEFAULT_TZ = "Asia/Shanghai"

_ONE_DAY = timedelta(days=1)
_ZERO = timedelta(0)
_HOUR = timedelta(hours=1)


def _require_aware(value: datetime, name: str) -> datetime:
    # A naive datetime is ambiguous by eight hours here; refusing it is cheaper than the bug.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _check_clock(clock: str) -> None:
    if clock not in ("working", "natural"):
        raise ValueError(f"unknown clock {clock!r} (expected 'working' or 'natural')")


class WorkCalendar:
    """Working periods of a day plus the working-day rule of the People's Republic of China."""

    def __init__(
        self,
        periods: Iterable[tuple[time, time]] = DEFAULT_PERIODS,
        tz: str = DEFAULT_TZ,
    ) -> None:
        self.periods: tuple[tuple[time, time], ...] = tuple(periods)
        if not self.periods:
            raise ValueError("a working calendar needs at least one working period")
        previous_end: time | None = None
        for start, end in self.periods:
            if start.tzinfo is not None or end.tzinfo is not None:
                raise ValueError("working periods are wall-clock times; pass naive times")
            if not start < end:
                raise ValueError(f"working period {start}–{end} must end after it starts")
            if previous_end is not None and start < previous_end:
                raise ValueError("working periods must be in order and must not overlap")
            previous_end = end
        self.tz_name = tz
        self.tz = ZoneInfo(tz)
        self._working_day: dict[date, bool] = {}
        self._day_intervals: dict[date, list[tuple[datetime, datetime]]] = {}

    def __repr__(self) -> str:
        spans = ", ".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in self.periods)
        return f"WorkCalendar(periods=[{spans}], tz={self.tz_name!r})"

    # ---- days -----------------------------------------------------------------------------

    def covers(self, d: date) -> bool:
        """Whether the holiday table knows ``d``'s year (else working days are Mon–Fri)."""
        try:
            chinese_calendar.is_workday(d)
        except NotImplementedError:
            return False
        return True

    def is_working_day(self, d: date) -> bool:
        """Working day: statutory rules incl. 调休 where known, Monday–Friday otherwise."""
        cached = self._working_day.get(d)
        if cached is None:
            try:
                cached = bool(chinese_calendar.is_workday(d))
            except NotImplementedError:
                cached = d.weekday() < 5
            self._working_day[d] = cached
        return cached

    def _intervals(self, d: date) -> list[tuple[datetime, datetime]]:
        """The working periods of local day ``d`` as UTC intervals (empty on a day off).

        Kept per day: every deadline of every event asks for the same few days, and the
        time-zone conversions were most of a deadline's cost (a calendar's days and periods
        never change once it is loaded)."""
        cached = self._day_intervals.get(d)
        if cached is not None:
            return cached
        if not self.is_working_day(d):
            intervals: list[tuple[datetime, datetime]] = []
        else:
            intervals = [
                (
                    datetime.combine(d, start, tzinfo=self.tz).astimezone(UTC),
                    datetime.combine(d, end, tzinfo=self.tz).astimezone(UTC),
                )
                for start, end in self.periods
            ]
        self._day_intervals[d] = intervals
        return intervals

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    # ---- arithmetic ---------------------------------------------------------------------------

    def add(self, start: datetime, hours: float, clock: Clock) -> datetime:
        """The moment ``hours`` of ``clock`` time after ``start`` (UTC-aware).

        Working clock: time outside working periods does not count, so a start in the evening
        counts from the next period's start, and a result that lands exactly on the end of a
        period stays there (due at 17:30, not at 09:00 the next working day). Zero hours return
        ``start`` unchanged. Cost grows with the number of *days* spanned, never minutes.
        """
        _check_clock(clock)
        begin = _require_aware(start, "start")
        if hours < 0:
            raise ValueError(f"hours must not be negative, got {hours}")
        remaining = timedelta(hours=hours)
        if clock == "natural" or remaining == _ZERO:
            return begin + remaining
        day = self._local_date(begin)
        cursor = begin
        while True:
            for period_start, period_end in self._intervals(day):
                if cursor >= period_end:
                    continue
                position = max(cursor, period_start)
                available = period_end - position
                if remaining <= available:
                    return position + remaining
                remaining -= available
                cursor = period_end
            day += _ONE_DAY

    def elapsed(self, start: datetime, end: datetime, clock: Clock) -> float:
        """Hours of ``clock`` time in ``[start, end]``; 0 when ``end`` is not after ``start``."""
        _check_clock(clock)
        begin = _require_aware(start, "start")
        finish = _require_aware(end, "end")
        if finish <= begin:
            return 0.0
        if clock == "natural":
            return (finish - begin) / _HOUR
        total = _ZERO
        day = self._local_date(begin)
        last = self._local_date(finish)
        while day <= last:
            for period_start, period_end in self._intervals(day):
                low = max(period_start, begin)
                high = min(period_end, finish)
                if high > low:
                    total += high - low
            day += _ONE_DAY
        return total / _HOUR

    def working_hours_on(self, d: date) -> float:
        """Working hours of local day ``d`` (0 on a day off); handy for UIs and reports."""
        return sum(((e - s) for s, e in self._intervals(d)), _ZERO) / _HOUR


__all__ = ["DEFAULT_PERIODS", "DEFAULT_TZ", "WorkCalendar"]
