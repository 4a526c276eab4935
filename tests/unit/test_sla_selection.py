"""The watcher looks only at rows the SLA policy may still act on: ``may_need_decision`` is
False only where ``decide`` calls for nothing, whatever the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

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
)
def test_a_row_left_out_is_one_decide_leaves_alone(
    warning: bool, overdue: bool, step: str | None, escalate: bool, category: str,
    started_h: float, due_h: float,
) -> None:
    row = {
        "case_no": "GD-TEST", "category": category, "warning": warning, "overdue": overdue,
        "due_step": step, "due_at": NOW + timedelta(hours=due_h),
        "due_started_at": NOW + timedelta(hours=min(started_h, due_h)),
        "offers": {"system": ["escalate"]} if escalate else {"dispatcher": ["dispatch"]},
    }
    if not may_need_decision(row):
        assert decide(row, NOW, REF) == []
    # The watcher's kept yellow moments give the same answer, on a first and a later pass.
    times = WarningTimes(REF.calendar)
    first = decide(row, NOW, REF, times)
    times.end_pass()
    assert first == decide(row, NOW, REF) == decide(row, NOW, REF, times)


def test_only_a_given_reminder_or_a_warned_overdue_case_without_escalation_is_left_out() -> None:
    def row(step: str | None, warning: bool, overdue: bool, escalate: bool) -> dict[str, object]:
        return {"due_step": step, "warning": warning, "overdue": overdue,
                "offers": {"system": ["escalate"]} if escalate else {}}

    assert not may_need_decision(row("review", False, True, True))
    assert may_need_decision(row("review", True, False, False))
    assert not may_need_decision(row("handle", True, True, False))
    assert not may_need_decision(row(None, True, True, False))
    assert may_need_decision(row("handle", True, True, True))
    assert may_need_decision(row("handle", False, True, False))
    assert may_need_decision(row("dispatch", True, False, False))


def test_warning_times_keep_only_the_last_pass() -> None:
    times = WarningTimes(REF.calendar)
    start = NOW - timedelta(hours=30)
    one, two = NOW + timedelta(hours=5), NOW + timedelta(hours=9)
    times(start, one, "working")
    times.end_pass()
    times(start, two, "working")
    times.end_pass()  # the deadline ``one`` was not met by this pass: forgotten
    assert set(times._last) == {(start, two, "working")}
