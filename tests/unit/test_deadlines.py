"""Deadline policy: due times per step, traffic lights, extension, suspension, overdue."""

from __future__ import annotations

import ast
from datetime import datetime, timedelta
from pathlib import Path
from typing import get_args
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregates import deadlines
from aggregates.deadlines import (
    WARNING_RATIO,
    due_at,
    extend,
    overdue_hours,
    resume,
    suspended_hours,
    warning_at,
)
from core.calendar import WorkCalendar
from core.catalogue import Catalogue, Clock

ROOT = Path(__file__).resolve().parents[2]
CST = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()
SECOND = timedelta(seconds=1)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(ROOT / "deploy" / "categories.v1.json")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=CST)


def local(moment: datetime) -> datetime:
    return moment.astimezone(CST)


# ---- due_at ---------------------------------------------------------------------------------


def test_exposed_garbage_is_due_four_working_hours_later(catalogue: Catalogue) -> None:
    garbage = catalogue.get("SJ0101")
    friday_4pm = at(2025, 11, 14, 16)
    # 1.5 h on Friday, 2.5 h on Monday morning.
    due = due_at(garbage, "ordinary", "handle", friday_4pm, CAL)
    assert local(due) == at(2025, 11, 17, 11, 30)


def test_each_step_uses_its_own_limit(catalogue: Catalogue) -> None:
    cover = catalogue.get("BJ0101")
    monday_9 = at(2025, 11, 17, 9)
    assert local(due_at(cover, "urgent", "dispatch", monday_9, CAL)) == at(2025, 11, 17, 9, 30)
    assert local(due_at(cover, "important", "file", monday_9, CAL)) == at(2025, 11, 17, 10)
    assert local(due_at(cover, "urgent", "handle", monday_9, CAL)) == at(2025, 11, 17, 11)
    # one working day (7 working hours) from Monday 09:00 ends Monday 17:30
    assert local(due_at(cover, "important", "handle", monday_9, CAL)) == at(2025, 11, 17, 17, 30)
    assert local(due_at(cover, "ordinary", "verify", monday_9, CAL)) == at(2025, 11, 17, 14, 30)
    with pytest.raises(ValueError, match="unknown step"):
        due_at(cover, "urgent", "archive", monday_9, CAL)  # type: ignore[arg-type]


def test_urgent_safety_category_counts_natural_hours(catalogue: Catalogue) -> None:
    missing_cover = catalogue.get("SJ0402")
    saturday_night = at(2025, 10, 4, 23)  # a holiday weekend night
    due = due_at(missing_cover, "urgent", "handle", saturday_night, CAL)
    assert local(due) == at(2025, 10, 5, 1)


def test_illegal_construction_ordinary_spans_national_day(catalogue: Catalogue) -> None:
    illegal = catalogue.get("SJ0301")
    start = at(2025, 9, 29, 9)  # Monday before National Day
    due = due_at(illegal, "ordinary", "handle", start, CAL)
    # 49 h at 7 working hours a day = 7 full days: 29, 30 Sep, then 9, 10, 11 (make-up
    # Saturday), 13, 14 Oct — the 1–8 Oct holiday and Sunday 12 Oct do not count.
    assert local(due) == at(2025, 10, 14, 17, 30)
    assert local(due_at(illegal, "urgent", "handle", start, CAL)) == at(2025, 9, 29, 14, 30)


# ---- extension, suspension, overdue ---------------------------------------------------------


def test_extension_moves_due_by_working_hours() -> None:
    friday_5pm = at(2025, 11, 14, 17)
    assert local(extend(friday_5pm, 2, "working", CAL)) == at(2025, 11, 17, 10, 30)
    assert local(extend(friday_5pm, 2, "natural", CAL)) == at(2025, 11, 14, 19)
    # Extending a due that falls on a period end continues after lunch.
    assert local(extend(at(2025, 11, 17, 12), 1, "working", CAL)) == at(2025, 11, 17, 14, 30)
    with pytest.raises(ValueError, match="positive"):
        extend(friday_5pm, 0, "working", CAL)


def test_resume_moves_due_by_suspended_working_time() -> None:
    due = at(2025, 11, 18, 12)  # Tuesday noon
    # Suspended over the weekend only: no working time lost, due unchanged.
    same = resume(due, at(2025, 11, 14, 17, 30), at(2025, 11, 17, 9), "working", CAL)
    assert local(same) == at(2025, 11, 18, 12)
    # Suspended Monday 10:00 → Tuesday 10:00 (7 working hours): 4 h Tuesday afternoon and
    # 3 h Wednesday morning → due Wednesday 12:00.
    moved = resume(due, at(2025, 11, 17, 10), at(2025, 11, 18, 10), "working", CAL)
    assert local(moved) == at(2025, 11, 19, 12)
    # Natural clock: moves by the wall-clock duration of the suspension.
    natural = resume(due, at(2025, 11, 15, 8), at(2025, 11, 16, 20), "natural", CAL)
    assert local(natural) == at(2025, 11, 20, 0)


def test_resume_across_a_holiday_suspension() -> None:
    due = at(2025, 9, 30, 15)
    # Suspended 30 Sep 14:00 → 9 Oct 10:00: 3.5 h on 30 Sep + 1 h on 9 Oct = 4.5 h; the due
    # moves 2.5 h to the end of 30 Sep, skips the holiday, and 2 h into 9 Oct.
    moved = resume(due, at(2025, 9, 30, 14), at(2025, 10, 9, 10), "working", CAL)
    assert CAL.elapsed(due, moved, "working") == pytest.approx(4.5)
    assert local(moved) == at(2025, 10, 9, 11)


def test_overdue_hours() -> None:
    due = at(2025, 11, 14, 17)  # Friday 17:00
    assert overdue_hours(due, at(2025, 11, 17, 10), "working", CAL) == 1.5
    assert overdue_hours(due, at(2025, 11, 17, 10), "natural", CAL) == 65.0
    assert overdue_hours(due, at(2025, 11, 14, 16), "working", CAL) == 0.0


# ---- properties -----------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2024, 6, 1), max_value=datetime(2026, 12, 31), timezones=st.just(CST)
)
limits = st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0, 24.0, 56.0])
clocks = st.sampled_from(get_args(Clock))


@given(start=moments, hours=limits, clock=clocks)
def test_warning_is_at_80_percent_of_the_limit(start: datetime, hours: float, clock: Clock) -> None:
    due = CAL.add(start, hours, clock)
    warn = warning_at(start, due, clock, CAL)
    assert start <= warn <= due
    assert CAL.elapsed(start, warn, clock) == pytest.approx(WARNING_RATIO * hours, abs=1e-6)


@given(due=moments, paused_at=moments, length=st.floats(0, 300), clock=clocks)
def test_resume_preserves_remaining_time(
    due: datetime, paused_at: datetime, length: float, clock: Clock
) -> None:
    resumed_at = paused_at + timedelta(hours=length)
    moved = resume(due, paused_at, resumed_at, clock, CAL)
    assert moved >= due
    lost = suspended_hours(paused_at, resumed_at, clock, CAL)
    assert CAL.elapsed(due, moved, clock) == pytest.approx(lost, abs=1e-6)


# ---- purity ---------------------------------------------------------------------------------


def test_policy_modules_never_read_the_clock_or_do_io() -> None:
    forbidden = {"now", "utcnow", "today", "time", "monotonic", "open", "read_text", "urlopen"}
    for module in (deadlines, __import__("aggregates.triage", fromlist=["x"])):
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        called = {
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
        }
        assert not called & forbidden, (module.__name__, called & forbidden)
