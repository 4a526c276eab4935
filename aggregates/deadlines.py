"""Deadline policy (限时办结): due times, traffic lights, extensions, suspensions, overdue.

Why pure functions: the case aggregate, the overdue watcher and the dashboards must all compute
the *same* due time and the *same* light from recorded facts, today and when an auditor replays
a case years later. So nothing here reads the clock or does I/O: every moment (``start``,
``now``, ``paused_at``...) is passed in, and all arithmetic goes through the
:class:`~core.calendar.WorkCalendar`, the single definition of a working hour.

Traffic light (红黄绿灯) per step: green while less than 80 % of the step's limit has elapsed,
yellow from 80 % up to the due moment, red once the due moment has passed.
"""

from __future__ import annotations

from datetime import datetime

from core.calendar import WorkCalendar
from core.catalogue import Category, Clock, Priority
from core.vocabulary import LIMITED_STEPS, Step

#: Steps whose limit the catalogue defines (a review date is set by hand).
STEPS: tuple[Step, ...] = LIMITED_STEPS
WARNING_RATIO = 0.8

# Datetimes carry microseconds, so a moment computed as "80 % of the limit" can come out a few
# microseconds short; without this tolerance the light at ``warning_at`` would flicker green.
_TOLERANCE_HOURS = 1e-8


def due_at(
    category: Category, priority: Priority, step: Step, start: datetime, calendar: WorkCalendar
) -> datetime:
    """When ``step`` started at ``start`` is due, from the category's limit for ``priority``."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r} (expected one of {', '.join(STEPS)})")
    return calendar.add(start, category.limit(priority, step), category.clock)


def warning_at(start: datetime, due: datetime, clock: Clock, calendar: WorkCalendar) -> datetime:
    """The moment 80 % of the limit has elapsed (when the light turns yellow).

    The watcher schedules its yellow notification at this moment instead of polling.
    """
    limit = calendar.elapsed(start, due, clock)
    return calendar.add(start, WARNING_RATIO * limit, clock)


def extend(due: datetime, hours: float, clock: Clock, calendar: WorkCalendar) -> datetime:
    """The new due moment after an approved extension (延期) of ``hours``."""
    if hours <= 0:
        raise ValueError(f"an extension must be positive, got {hours} h")
    return calendar.add(due, hours, clock)


def suspended_hours(
    paused_at: datetime, resumed_at: datetime, clock: Clock, calendar: WorkCalendar
) -> float:
    """Clock time a suspension (挂账) lasted; feed sums of it to :func:`light`."""
    return calendar.elapsed(paused_at, resumed_at, clock)


def resume(
    due: datetime,
    paused_at: datetime,
    resumed_at: datetime,
    clock: Clock,
    calendar: WorkCalendar,
) -> datetime:
    """The due moment after a suspension ends: moved by the clock time it was suspended.

    Why move the due time and not remember the pause forever: every later computation
    (light, overdue, escalation) then needs only ``due``. A suspension over a weekend on the
    working clock moves nothing, exactly as the department lost no working time.
    """
    paused = suspended_hours(paused_at, resumed_at, clock, calendar)
    if paused == 0:
        return due
    return calendar.add(due, paused, clock)


def overdue_hours(due: datetime, now: datetime, clock: Clock, calendar: WorkCalendar) -> float:
    """How far past due ``now`` is, in clock hours (0 if not yet due).

    The watcher compares this with ``Category.escalate_after_overdue_hours`` to escalate.
    """
    return calendar.elapsed(due, now, clock)


__all__ = [
    "STEPS",
    "WARNING_RATIO",
    "Step",
    "due_at",
    "extend",
    "overdue_hours",
    "resume",
    "suspended_hours",
    "warning_at",
]
