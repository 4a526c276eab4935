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


def may_need_decision(row: Mapping[str, Any], now: datetime) -> bool:
    """False for a row :func:`decide` leaves alone at ``now``: nothing is due yet (neither
    its recorded yellow moment, ``warning_at``, nor its deadline has come), its review
    reminder is given, or it is warned and overdue and the system is not offered escalation
    (at the top level, or at a step without one). A row without a recorded yellow moment
    (its deadline started before events recorded one) may need a warning at any time.

    The watcher's query takes only the other rows (``gateways/watcher.OPEN_DEADLINES_SQL``
    says this in SQL; a test holds the two to each other and to :func:`decide`). Why:
    a pass then reads the few deadlines that need a decision, not every open case —
    reading them all cost the watcher, at 20,000 open cases, a quarter of a second of CPU
    every five seconds whatever happened; and earlier, a backlog of warned, overdue cases
    that need nothing filled its batch and hid the cases behind it."""
    due: datetime = row["due_at"]
    if (row["due_step"] or "handle") == "review":
        return not row["overdue"] and now >= due
    if not row["warning"]:
        yellow = row.get("warning_at")
        if yellow is None or now >= yellow:
            return True
    offered = (row.get("offers") or {}).get("system") or []
    return now >= due and (not row["overdue"] or "escalate" in offered)


#: ``deadlines.warning_at`` with the calendar bound: (start, due, clock) → the yellow moment.
WarningAt = Callable[[datetime, datetime, Clock], datetime]


def decide(
    row: Mapping[str, Any], now: datetime, ref: Reference, warning_at: WarningAt | None = None
) -> list[Decision]:
    """Which commands a case row calls for at ``now``. The yellow moment is the one the
    case recorded with its deadline (``warning_at``; ``aggregates.case._yellow_moment``);
    for a deadline recorded without one it is computed here, by ``warning_at`` when given
    (the watcher's :class:`WarningTimes`, which keeps the moments of an earlier pass) — the
    same answer every way."""
    due: datetime = row["due_at"]
    step: str = row["due_step"] or "handle"
    start: datetime = row["due_started_at"] or due
    category = ref.catalogue.get(row["category"])
    clock = "natural" if step == "review" else category.clock
    if step != "review":
        recorded: datetime | None = row.get("warning_at")
        if recorded is None:
            warn = warning_at or (lambda a, b, c: deadlines.warning_at(a, b, c, ref.calendar))
            recorded = warn(start, due, clock)
        yellow = not row["warning"] and now >= recorded
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
    """The yellow moments of one pass over the open deadlines recorded without one, kept
    for the next.

    Why: a store written before events recorded the moment (``due_warn``) has open cases
    whose running deadline lacks it until their next event; the watcher's query takes them
    on every pass, and working-time arithmetic for each of them on every pass was most of
    the watcher's CPU (``python -m benchmarks.watcher --unrecorded`` against
    ``--unrecorded --no-keep``: 20,000 such cases cost ≈ 1 s of CPU per 5 s pass, ≈ 0.25 s
    with the moments kept). A deadline's yellow moment depends only on its start, its due
    moment and its clock, so a pass computes it for the deadlines new since the last one.
    Only the last pass's deadlines are kept: memory follows those cases. Pure: the same
    answers as ``deadlines.warning_at``."""

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
