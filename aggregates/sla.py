"""The SLA policy (时限监控): which commands a case's running deadline calls for, and when.

- ``mark_warning`` at 80 % of a step's limit (黄灯) and ``mark_overdue`` at 100 % (红灯);
- ``escalate`` (automatic, 上提一级) once a case is overdue by its category's margin, if the
  system is offered escalation (the registry's guard: never above the top level);
- ``mark_overdue`` with step ``review`` when a suspended case (挂账) reaches its review date, a
  reminder that lands on the case's timeline.

Pure: a case's queue row (recorded facts: deadline, step, lights, offers), ``now`` and the
reference data in; decisions out. The watcher (``gateways/watcher.py``) publishes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregates import deadlines
from core.calendar import WorkCalendar
from core.catalogue import Clock
from core.refdata import Reference


@dataclass(frozen=True)
class Decision:
    """One command the policy calls for, before it is wrapped and published."""

    verb: str
    case_no: str
    args: dict[str, Any]
    key: str  # the command id: the same decision always has the same key


def may_need_decision(row: Mapping[str, Any]) -> bool:
    """False for a row :func:`decide` leaves alone at any time: its review reminder is given,
    or it is warned and overdue and the system is not offered escalation (at the top level,
    or at a step without one). The watcher's query takes only the other rows
    (``gateways/watcher.OPEN_DEADLINES_SQL`` says this in SQL; a test holds the two to each
    other and to :func:`decide`): otherwise a backlog of such cases, oldest deadlines
    first, filled its batch every pass, and the cases behind it were never looked at."""
    if (row["due_step"] or "handle") == "review":
        return not row["overdue"]
    offered = (row.get("offers") or {}).get("system") or []
    return not (row["warning"] and row["overdue"]) or "escalate" in offered


#: ``deadlines.warning_at`` with the calendar bound: (start, due, clock) → the yellow moment.
WarningAt = Callable[[datetime, datetime, Clock], datetime]


def decide(
    row: Mapping[str, Any], now: datetime, ref: Reference, warning_at: WarningAt | None = None
) -> list[Decision]:
    """Which commands a case row calls for at ``now``. ``warning_at`` may be given to reuse
    the yellow moments of an earlier pass (the watcher's :class:`WarningTimes`); the same
    answer either way."""
    due: datetime = row["due_at"]
    step: str = row["due_step"] or "handle"
    start: datetime = row["due_started_at"] or due
    category = ref.catalogue.get(row["category"])
    clock = "natural" if step == "review" else category.clock
    if step != "review":
        warn = warning_at or (lambda a, b, c: deadlines.warning_at(a, b, c, ref.calendar))
        yellow = not row["warning"] and now >= warn(start, due, clock)
        if not yellow and now < due:
            return []  # most open cases on most passes: nothing to build
    stamp = due.isoformat()
    no = row["case_no"]
    marks = {"step": step, "due": stamp}
    if step == "review":
        if now >= due and not row["overdue"]:
            return [Decision("mark_overdue", no, marks, f"sla:review:{no}:{stamp}")]
        return []
    out: list[Decision] = []
    if yellow:
        out.append(Decision("mark_warning", no, marks, f"sla:warn:{no}:{step}:{stamp}"))
    if now >= due:
        if not row["overdue"]:
            out.append(Decision("mark_overdue", no, marks, f"sla:overdue:{no}:{step}:{stamp}"))
        late = deadlines.overdue_hours(due, now, clock, ref.calendar)
        offered = (row.get("offers") or {}).get("system") or []
        if "escalate" in offered and late >= category.escalate_after_overdue_hours:
            reason = (f"超期 {late:.1f} 小时自动上提 (overdue {late:.1f} h ≥ "
                      f"{category.escalate_after_overdue_hours:g} h margin, step {step})")
            out.append(Decision("escalate", no, {"reason": reason, "automatic": True},
                                f"sla:escalate:{no}:{step}:{stamp}"))
    return out


class WarningTimes:
    """The yellow moments of one pass over the open deadlines, kept for the next.

    Why: working-time arithmetic for every open deadline on every pass was most of the
    watcher's CPU (``python -m benchmarks.watcher`` against ``--no-keep``: 20,000 open cases
    cost ≈ 1 s of CPU per 5 s pass, ≈ 0.25 s with the moments kept). A deadline's yellow
    moment depends only on its start, its due moment and its clock, so a pass computes it
    for the deadlines new since the last one. Only the last
    pass's deadlines are kept: memory follows the open cases. Pure: the same answers as
    ``deadlines.warning_at``."""

    def __init__(self, calendar: WorkCalendar) -> None:
        self._calendar = calendar
        self._last: dict[tuple[datetime, datetime, Clock], datetime] = {}
        self._this: dict[tuple[datetime, datetime, Clock], datetime] = {}

    def __call__(self, start: datetime, due: datetime, clock: Clock) -> datetime:
        key = (start, due, clock)
        moment = self._this.get(key) or self._last.get(key)
        if moment is None:
            moment = deadlines.warning_at(start, due, clock, self._calendar)
        self._this[key] = moment
        return moment

    def end_pass(self) -> None:
        """Forget the deadlines this pass did not meet (closed, moved, out of the query)."""
        self._last, self._this = self._this, {}
