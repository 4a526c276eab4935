"""The rule of household visit reminders (aggregates.notices.visit_reminder, pure): nothing
while green, ``visit_due`` from the yellow light, ``visit_overdue`` from due; to the
responsible inspector, else the grid's team; the text never names flags or members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aggregates.notices import VISIT_REMINDER_KINDS, visit_reminder
from projections.notifications import KINDS
from tests.unit.test_state_labels import catalogue

DUE = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 Beijing
ROW: dict[str, Any] = {
    "household_no": "HH-AB12-CD34", "grid": "520102001001", "address": "新华路 8 号",
    "inspector": "insp-520102001001", "due_at": DUE, "warning_at": DUE - timedelta(days=1),
    "archived": False,
}


def test_lights_decide_the_kind() -> None:
    assert visit_reminder(ROW, DUE - timedelta(days=2)) is None
    due = visit_reminder(ROW, DUE - timedelta(hours=3))
    assert due is not None and due.kind == "visit_due"
    assert "2026-11-30 10:00" in due.body and "新华路 8 号" in due.body
    late = visit_reminder(ROW, DUE)
    assert late is not None and late.kind == "visit_overdue"
    assert late.data == {"household_no": "HH-AB12-CD34", "due": DUE.isoformat(),
                         "grid": "520102001001"}


def test_audience_and_no_reminder_without_a_deadline() -> None:
    now = DUE + timedelta(days=3)
    notice = visit_reminder(ROW, now)
    assert notice is not None and notice.audience == ["user.insp-520102001001"]
    team = visit_reminder({**ROW, "inspector": None}, now)
    assert team is not None and team.audience == ["grid.520102001001"]
    assert visit_reminder({**ROW, "due_at": None}, now) is None
    assert visit_reminder({**ROW, "archived": True}, now) is None


def test_kinds_have_titles_on_the_pages() -> None:
    words = catalogue()
    for kind, title in VISIT_REMINDER_KINDS.items():
        assert KINDS[kind] == title
    for kind in KINDS:  # every notification's title in three languages (GD.noticeTitle)
        assert len(words[f"notice.{kind}"]) == 3, kind
