"""The watcher looks only at rows the SLA policy may act on now: ``may_need_decision`` is
False only where ``decide`` calls for nothing at that moment — with the yellow moment the
case recorded, or without one (an older store's rows), where ``decide`` computes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from aggregates import deadlines
from aggregates.deadlines import STEPS
from aggregates.sla import WarningTimes, decide, may_need_decision
from core.refdata import load_reference
from core.settings import Settings

REF = load_reference(Settings())
CATEGORIES = sorted(c.code for c in REF.catalogue.all())
NOW = datetime(2026, 6, 3, 9, tzinfo=UTC)


@given(
    warning=st.booleans(),
    overdue=st.booleans(),
    step=st.sampled_from([None, "review", *STEPS]),
    escalate=st.booleans(),
    category=st.sampled_from(CATEGORIES),
    started_h=st.floats(min_value=-2000, max_value=0),
    due_h=st.floats(min_value=-2000, max_value=2000),
    recorded=st.booleans(),
)
def test_a_row_left_out_is_one_decide_leaves_alone(
    warning: bool, overdue: bool, step: str | None, escalate: bool, category: str,
    started_h: float, due_h: float, recorded: bool,
) -> None:
    due = NOW + timedelta(hours=due_h)
    started = NOW + timedelta(hours=min(started_h, due_h))
    clock = REF.catalogue.get(category).clock
    yellow = deadlines.warning_at(started, due, clock, REF.calendar)
    row = {
        "case_no": "GD-TEST", "category": category, "warning": warning, "overdue": overdue,
        "due_step": step, "due_at": due, "due_started_at": started,
        "warning_at": yellow if recorded and step != "review" else None,
        "offers": {"system": ["escalate"]} if escalate else {"dispatcher": ["dispatch"]},
    }
    if not may_need_decision(row, NOW):
        assert decide(row, NOW, REF) == []
    # The recorded moment, the one computed here and the watcher's kept ones give the same
    # answer, on a first and a later pass.
    unrecorded = {**row, "warning_at": None}
    times = WarningTimes(REF.calendar)
    first = decide(unrecorded, NOW, REF, times)
    times.end_pass()
    assert first == decide(row, NOW, REF) == decide(unrecorded, NOW, REF, times)


def test_only_what_is_due_or_unknown_is_taken() -> None:
    def row(step: str | None, warning: bool, overdue: bool, escalate: bool,
            due_h: float = -1, yellow_h: float | None = None) -> dict[str, object]:
        return {"due_step": step, "warning": warning, "overdue": overdue,
                "due_at": NOW + timedelta(hours=due_h),
                "warning_at": None if yellow_h is None else NOW + timedelta(hours=yellow_h),
                "offers": {"system": ["escalate"]} if escalate else {}}

    # Due (its deadline has passed): as before — all but a given reminder and a warned,
    # overdue case without escalation.
    assert not may_need_decision(row("review", False, True, True), NOW)
    assert may_need_decision(row("review", True, False, False), NOW)
    assert not may_need_decision(row("handle", True, True, False, yellow_h=-5), NOW)
    assert not may_need_decision(row(None, True, True, False), NOW)
    assert may_need_decision(row("handle", True, True, True), NOW)
    assert may_need_decision(row("handle", False, True, False, yellow_h=-5), NOW)
    assert may_need_decision(row("dispatch", True, False, False, yellow_h=-5), NOW)
    # Not due yet: only a yellow moment that has come, or one that was never recorded.
    assert not may_need_decision(row("review", False, False, False, due_h=5), NOW)
    assert not may_need_decision(row("handle", False, False, True, due_h=5, yellow_h=2), NOW)
    assert may_need_decision(row("handle", False, False, False, due_h=5, yellow_h=-1), NOW)
    assert may_need_decision(row("handle", False, False, False, due_h=5), NOW)
    assert not may_need_decision(row("handle", True, False, True, due_h=5), NOW)


def test_warning_times_keep_only_the_last_pass() -> None:
    times = WarningTimes(REF.calendar)
    start = NOW - timedelta(hours=30)
    one, two = NOW + timedelta(hours=5), NOW + timedelta(hours=9)
    times(start, one, "working")
    times.end_pass()
    times(start, two, "working")
    times.end_pass()  # the deadline ``one`` was not met by this pass: forgotten
    assert set(times._last) == {(start, two, "working")}
