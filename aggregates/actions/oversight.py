"""Oversight (监督): escalation, supervision orders and the SLA watcher's traffic lights.

Each action: its argument schema, its event (facts + state change) and its entry, side by side.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from aggregates import triage
from aggregates.actions.fields import TEXT, ReasonArgs
from aggregates.errors import InvalidCommand
from aggregates.events import CaseEvent
from aggregates.integrity import iso_utc
from aggregates.registry import (
    KEEP,
    ActionSpec,
    Context,
    Strict,
    anytime,
    as_priority,
    register,
    start,
)
from aggregates.state import CaseState, due_key
from core.refdata import Reference
from core.vocabulary import Status, Step

# --------------------------------------------------------------------------- 上提一级 escalate


class EscalateArgs(Strict):
    reason: str = Field(min_length=1, max_length=TEXT)
    automatic: bool = False  # by the SLA watcher on overdue (自动上提)


class Escalated(CaseEvent):
    """上提一级: the next level's command centre now owns dispatch (status filed)."""

    from_level: str
    from_node: str | None
    to_level: str
    to_node: str | None
    automatic: bool
    proposal: dict[str, Any]  # routing proposal at the new level (may be empty)
    previous_department: str | None

    def evolve(self, case: CaseState) -> None:
        case.level = self.to_level
        case.node = self.to_node
        case.proposal = self.proposal
        case.department = None
        case.returned_from = None
        case.suspended_at = None
        case.paused_due = None
        case.escalations += 1


def _below_top(case: CaseState, _role: str, ref: Reference) -> str | None:
    if ref.jurisdiction.level_above(case.level) is None:
        return f"already at the top level ({case.level})"
    return None


def _raise(case: CaseState, args: EscalateArgs, ctx: Context) -> dict[str, Any]:
    """The level above, its command centre for the case's grid, and the routing proposal
    there (later dispatch overrides are judged against it)."""
    if args.automatic and ctx.role != "system":
        raise InvalidCommand("only the SLA watcher escalates automatically", "automatic")
    j = ctx.ref.jurisdiction
    to_level = j.level_above(case.level)
    assert to_level is not None  # guarded by _below_top
    proposal = triage.route_for_level(
        ctx.category(case.category), case.grid, to_level, j, priority=as_priority(case.priority)
    )
    return {
        "from_level": case.level,
        "from_node": case.node,
        "to_level": to_level,
        "to_node": j.command_node(case.grid, to_level).code,
        "proposal": proposal.model_dump(),
        "previous_department": case.department or case.returned_from,
    }


#: Where a case can still be taken up a level: not before filing, not once the fix waits
#: for (or passed) the on-site check.
_ESCALABLE = (Status.filed, Status.dispatched, Status.in_progress, Status.suspended,
              Status.returned)

ESCALATE = register(ActionSpec(
    "escalate", "上提一级", Escalated, EscalateArgs,
    roles=frozenset({"dispatcher", "shift_leader", "supervisor", "system"}),
    moves={s: Status.filed for s in _ESCALABLE}, deadline=start("dispatch"),
    guard=_below_top, decide=_raise,
))

# --------------------------------------------------------------------------- 督办 supervise


class Supervised(CaseEvent):
    """督办: a leader flags a slow case; highlighted and counted."""

    def evolve(self, case: CaseState) -> None:
        case.supervision_orders += 1
        case.supervised = True


SUPERVISE = register(ActionSpec(
    "supervise", "督办", Supervised, ReasonArgs,
    roles=frozenset({"supervisor"}),
    moves=anytime(), deadline=KEEP,
))

# --------------------------------------------------------------------------- 黄灯 / 红灯


class StepArgs(Strict):
    step: Step
    due: datetime  # the deadline the watcher saw; a stale one changes nothing


def _seen(case: CaseState, args: StepArgs) -> datetime | None:
    """The running deadline if the watcher's ``step`` and ``due`` still match it."""
    if args.due.tzinfo is None:
        raise InvalidCommand("due must carry a timezone", "due")
    if case.due is None or case.due_step != args.step or args.due != case.due:
        return None
    return case.due


class WarningMarked(CaseEvent):
    """黄灯: 80 % of the running step's limit used (once per deadline)."""

    step: str

    def evolve(self, case: CaseState) -> None:
        assert self.due is not None
        case.warning_for = due_key(self.step, self.due)


def _warn(case: CaseState, args: StepArgs, _ctx: Context) -> dict[str, Any] | None:
    due = _seen(case, args)
    if due is None or case.warning_for == due_key(args.step, due):
        return None  # stale or already marked: nothing to record
    return {}


MARK_WARNING = register(ActionSpec(
    "mark_warning", "黄灯预警", WarningMarked, StepArgs,
    roles=frozenset({"system"}), moves=anytime(), deadline=KEEP, decide=_warn, public=False,
))


class OverdueMarked(CaseEvent):
    """红灯 超期: the running step's deadline passed (once per deadline)."""

    step: str

    def evolve(self, case: CaseState) -> None:
        assert self.due is not None
        case.overdue_for = due_key(self.step, self.due)
        case.overdue_count += 1


def _overdue(case: CaseState, args: StepArgs, ctx: Context) -> dict[str, Any] | None:
    due = _seen(case, args)
    if due is None or case.overdue_for == due_key(args.step, due):
        return None
    if ctx.at < due:
        raise InvalidCommand(f"not overdue: deadline {iso_utc(due)} is after {iso_utc(ctx.at)}",
                             "at")
    return {}


MARK_OVERDUE = register(ActionSpec(
    "mark_overdue", "红灯超期", OverdueMarked, StepArgs,
    roles=frozenset({"system"}), moves=anytime(), deadline=KEEP, decide=_overdue, public=False,
))
