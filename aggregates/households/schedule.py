"""When a household is due its next visit (走访时限), and its traffic light.

The same rules as case deadlines (``aggregates.deadlines`` on ``core.calendar``): the interval
comes from the city's schedules (``core.visits``, configuration), counted on the working or the
natural clock; the light is green below 80 % of the interval, yellow from 80 % to due, red
once due has passed. Pure: every moment comes in as data.

The deadline runs while a household has at least one flag. It starts when the first flag is
set (or at the last visit, whichever is later) and is the shortest interval among the active
flags; each visit starts it again. Lifting the last flag stops it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aggregates import deadlines
from aggregates.households.state import HouseholdState
from core.calendar import WorkCalendar
from core.visits import VisitSchedules

Light = Literal["none", "green", "yellow", "red"]


def next_due(
    state: HouseholdState, schedules: VisitSchedules, calendar: WorkCalendar
) -> tuple[datetime | None, datetime | None, str | None]:
    """(due, started_at, flag whose schedule sets it) after ``state``'s facts; all None when
    no flag is active (or the household is archived)."""
    if not state.flags or state.archived or state.flagged_since is None:
        return None, None, None
    start = state.flagged_since
    if state.last_visit_at is not None and state.last_visit_at > start:
        start = state.last_visit_at
    best: tuple[datetime, str] | None = None
    for flag in sorted(state.flags):
        schedule = schedules.of(flag)
        due = calendar.add(start, schedule.hours(calendar), schedule.clock)
        if best is None or due < best[0]:
            best = (due, flag)
    assert best is not None
    return best[0], start, best[1]


def light(
    due: datetime | None,
    started_at: datetime | None,
    flag: str | None,
    now: datetime,
    schedules: VisitSchedules,
    calendar: WorkCalendar,
) -> Light:
    """The visit deadline's light at ``now`` (``none``: no visit due at all)."""
    if due is None or started_at is None or flag is None:
        return "none"
    if now >= due:
        return "red"
    clock = schedules.of(flag).clock
    if now >= deadlines.warning_at(started_at, due, clock, calendar):
        return "yellow"
    return "green"


def warning_at(
    due: datetime, started_at: datetime, flag: str, schedules: VisitSchedules,
    calendar: WorkCalendar,
) -> datetime:
    """When the light turns yellow (80 % of the interval, as for case steps)."""
    return deadlines.warning_at(started_at, due, schedules.of(flag).clock, calendar)
