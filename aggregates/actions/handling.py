"""Dispatch and handling (派遣 → 处置 → 反馈): dispatch, accept, return, extensions, suspension,
result.

Each action: its argument schema, its event (facts + state change) and its entry, side by side.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import Field

from aggregates import deadlines
from aggregates.actions.fields import TEXT, NoteArgs, Photo, ReasonArgs
from aggregates.errors import InvalidCommand
from aggregates.events import CaseEvent
from aggregates.integrity import iso_utc
from aggregates.registry import (
    KEEP,
    ActionSpec,
    Context,
    Strict,
    as_priority,
    register,
    start,
)
from aggregates.state import CaseState
from core.jurisdiction import UnknownCode
from core.refdata import Reference
from core.vocabulary import Priority, Status

# --------------------------------------------------------------------------- 派遣 dispatch


class DispatchArgs(Strict):
    department: str | None = Field(default=None, max_length=80)
    priority: Priority | None = None
    override_reason: str | None = Field(default=None, max_length=TEXT)


class Dispatched(CaseEvent):
    """派遣 / 重派 / 返工派遣 to a department, with a handling deadline (处置时限)."""

    department: str
    level: str
    node: str
    priority: str
    overridden: bool  # differs from the triage proposal (改派), reason required
    override_reason: str | None
    redispatch: bool  # after a return (退单后重派)
    wrong_dispatch: bool  # the previous dispatch was to the wrong department (错误派遣)
    previous_department: str | None
    previous_dispatcher: str | None  # who the wrong dispatch counts against

    def evolve(self, case: CaseState) -> None:
        case.department = self.department
        case.level = self.level
        case.node = self.node
        case.priority = self.priority
        case.overridden = self.overridden
        case.dispatch_count += 1
        case.wrong_dispatches += int(self.wrong_dispatch)
        case.returned_from = None
        case.last_dispatcher = self.actor
        if case.first_dispatched_at is None:
            case.first_dispatched_at = self.timestamp
        case.dispatched_at = self.timestamp


def _route(case: CaseState, args: DispatchArgs, ctx: Context) -> dict[str, Any]:
    """The department must exist and cover the case's grid. Differing from the triage
    proposal in department or priority is an override (改派) and needs a reason.
    Re-dispatching a returned case elsewhere records the earlier dispatch as wrong (错误派遣,
    against that dispatcher, not the department). The case stays owned by the highest command
    level it has reached."""
    j = ctx.ref.jurisdiction
    code = args.department or case.proposal.get("department")
    if not code:
        raise InvalidCommand("no department given and triage proposed none", "department")
    try:
        department = j.department(code)
    except (UnknownCode, KeyError) as exc:
        raise InvalidCommand(f"unknown department {code}", "department") from exc
    if not j.contains(department.node, case.grid):
        raise InvalidCommand(
            f"department {code} has no jurisdiction over grid {case.grid}", "department"
        )
    node = j.node(department.node)
    rank = {lvl: i for i, lvl in enumerate(j.command_levels())}  # bottom-up
    level = case.level if rank.get(case.level, -1) >= rank.get(node.level, -1) else node.level
    priority = args.priority or as_priority(case.priority)
    proposed_department = case.proposal.get("department") or None
    proposed_priority = case.proposal.get("priority") or case.priority
    overridden = (
        proposed_department is not None and department.code != proposed_department
    ) or priority != proposed_priority
    if overridden and not (args.override_reason and args.override_reason.strip()):
        raise InvalidCommand(
            "dispatch differs from the proposal "
            f"(department {proposed_department!r}, priority {proposed_priority!r}); "
            "override_reason is required",
            "override_reason",
        )
    redispatch = case.status is Status.returned
    wrong = redispatch and case.returned_from is not None and department.code != case.returned_from
    return {
        "reason": args.override_reason,  # the timeline shows why it was overridden
        "department": department.code,
        "level": level,
        "node": node.code,
        "priority": priority,
        "overridden": overridden,
        "redispatch": redispatch,
        "wrong_dispatch": wrong,
        "previous_department": case.returned_from if redispatch else None,
        "previous_dispatcher": case.last_dispatcher if wrong else None,
    }


DISPATCH = register(ActionSpec(
    "dispatch", "派遣", Dispatched, DispatchArgs,
    roles=frozenset({"dispatcher", "shift_leader"}),
    moves={Status.filed: Status.dispatched, Status.returned: Status.dispatched},
    deadline=start("handle"), decide=_route,
))

# --------------------------------------------------------------------------- 接单 accept


class Accepted(CaseEvent):
    """接单: the department starts handling (处置中); the handling clock runs on."""

    note: str | None

    def evolve(self, case: CaseState) -> None:
        case.accepted_at = self.timestamp


ACCEPT = register(ActionSpec(
    "accept", "接单", Accepted, NoteArgs,
    roles=frozenset({"handler"}),
    moves={Status.dispatched: Status.in_progress}, deadline=KEEP,
))

# --------------------------------------------------------------------------- 退单 return


class Returned(CaseEvent):
    """退单 / 回退: the department says it is not theirs (reason required); the dispatcher
    must re-dispatch within the dispatch limit."""

    department: str | None  # the department that returned it

    def evolve(self, case: CaseState) -> None:
        case.return_count += 1
        case.returned_from = self.department
        case.department = None


RETURN_CASE = register(ActionSpec(
    "return_case", "退单", Returned, ReasonArgs,
    roles=frozenset({"handler"}),
    moves={Status.dispatched: Status.returned, Status.in_progress: Status.returned},
    deadline=start("dispatch"),
    decide=lambda case, _a, _c: {"department": case.department},
))

# --------------------------------------------------------------------------- 延期 extensions


class ExtensionArgs(Strict):
    hours: float = Field(gt=0, le=24 * 30, allow_inf_nan=False)
    reason: str = Field(min_length=1, max_length=TEXT)


class ExtensionRequested(CaseEvent):
    """延期申请: the department asks for more time (reason required)."""

    hours: float

    def evolve(self, case: CaseState) -> None:
        case.pending_extension = {
            "hours": self.hours,
            "reason": self.reason,
            "requested_by": self.actor,
            "requested_at": iso_utc(self.timestamp),
        }


def _none_pending(case: CaseState, _role: str, _ref: Reference) -> str | None:
    return "an extension request is already pending" if case.pending_extension else None


REQUEST_EXTENSION = register(ActionSpec(
    "request_extension", "延期申请", ExtensionRequested, ExtensionArgs,
    roles=frozenset({"handler"}),
    moves={Status.in_progress: Status.in_progress}, deadline=KEEP, guard=_none_pending,
    decide=lambda _c, args, _x: _positive_hours(args.hours),
))


def _positive_hours(hours: float) -> dict[str, Any]:
    if not math.isfinite(hours) or hours <= 0:
        raise InvalidCommand("hours must be a positive number", "hours")
    return {"hours": float(hours)}


class ApproveArgs(Strict):
    reason: str | None = Field(default=None, max_length=TEXT)


class ExtensionApproved(CaseEvent):
    """批准延期: the running deadline moves later by the requested hours."""

    previous_due: datetime | None
    hours: float
    extension_number: int  # 1 for the first approved extension of this case
    beyond_limit: bool  # past the category's limit: approved by a supervisor with a reason

    def evolve(self, case: CaseState) -> None:
        case.extension_count = self.extension_number
        case.pending_extension = None


def _decidable(case: CaseState, role: str, ref: Reference) -> str | None:
    """A decision needs a pending request; past the category's number of extensions (an
    ordinary case gets one) only a supervisor, the higher approver, may approve."""
    if case.pending_extension is None or case.due is None:
        return "no pending extension request"
    limit = ref.catalogue.get(case.category).max_extensions
    if case.extension_count >= limit and role != "supervisor":
        return f"extension limit ({limit}) reached: only a supervisor may approve another"
    return None


def _approve(case: CaseState, args: ApproveArgs, ctx: Context) -> dict[str, Any]:
    limit = ctx.category(case.category).max_extensions
    beyond = case.extension_count >= limit
    if beyond and not (args.reason and args.reason.strip()):
        raise InvalidCommand(
            f"extension limit ({limit}) reached: a written reason is required", "reason"
        )
    return {
        "previous_due": case.due,
        "hours": float((case.pending_extension or {}).get("hours", 0.0)),
        "extension_number": case.extension_count + 1,
        "beyond_limit": beyond,
    }


def _extended(case: CaseState, fields: dict[str, Any], ctx: Context) -> datetime:
    assert case.due is not None  # guarded by _decidable
    category = ctx.category(case.category)
    return deadlines.extend(case.due, fields["hours"], category.clock, ctx.ref.calendar)


APPROVE_EXTENSION = register(ActionSpec(
    "approve_extension", "批准延期", ExtensionApproved, ApproveArgs,
    roles=frozenset({"shift_leader", "supervisor"}),
    moves={Status.in_progress: Status.in_progress},
    deadline=start(None, due=_extended), guard=_decidable, decide=_approve,
))


class ExtensionRefused(CaseEvent):
    """驳回延期: the deadline stays."""

    hours: float

    def evolve(self, case: CaseState) -> None:
        case.pending_extension = None


REFUSE_EXTENSION = register(ActionSpec(
    "refuse_extension", "驳回延期", ExtensionRefused, ReasonArgs,
    roles=frozenset({"shift_leader", "supervisor"}),
    moves={Status.in_progress: Status.in_progress}, deadline=KEEP,
    guard=lambda case, _r, _ref: None if case.pending_extension else "no pending extension request",
    decide=lambda case, _a, _c: {"hours": float((case.pending_extension or {}).get("hours", 0.0))},
))

# --------------------------------------------------------------------------- 挂账 suspension


class SuspendArgs(Strict):
    reason: str = Field(min_length=1, max_length=TEXT)
    review_at: datetime


class Suspended(CaseEvent):
    """挂账: parked (e.g. needs budget) until a review date (复核); the handling clock pauses."""

    review_at: datetime
    paused_due: datetime | None  # handling deadline at the moment of suspension

    def evolve(self, case: CaseState) -> None:
        case.suspended_at = self.timestamp
        case.paused_due = self.paused_due
        case.suspension_count += 1


def _pause(case: CaseState, args: SuspendArgs, ctx: Context) -> dict[str, Any]:
    if args.review_at.tzinfo is None:
        raise InvalidCommand("review_at must carry a timezone", "review_at")
    if args.review_at <= ctx.at:
        raise InvalidCommand("review date must be in the future", "review_at")
    return {"paused_due": case.due}


SUSPEND = register(ActionSpec(
    "suspend", "挂账", Suspended, SuspendArgs,
    roles=frozenset({"shift_leader", "handler"}),
    moves={Status.in_progress: Status.suspended},
    deadline=start("review", due=lambda _case, fields, _ctx: fields["review_at"]),
    decide=_pause,
))


class Resumed(CaseEvent):
    """恢复处置: back to handling; the deadline moved by the time spent suspended."""

    note: str | None
    suspended_since: datetime | None

    def evolve(self, case: CaseState) -> None:
        case.suspended_at = None
        case.paused_due = None


def _resumed_due(case: CaseState, _fields: dict[str, Any], ctx: Context) -> datetime:
    """The paused handling deadline, moved by the suspended time on the category's clock;
    a case suspended without a running deadline gets a fresh handling limit."""
    category = ctx.category(case.category)
    if case.paused_due is not None and case.suspended_at is not None:
        return deadlines.resume(
            case.paused_due, case.suspended_at, ctx.at, category.clock, ctx.ref.calendar
        )
    priority = as_priority(case.priority)
    return deadlines.due_at(category, priority, "handle", ctx.at, ctx.ref.calendar)


RESUME = register(ActionSpec(
    "resume", "恢复处置", Resumed, NoteArgs,
    roles=frozenset({"shift_leader", "handler"}),
    moves={Status.suspended: Status.in_progress},
    deadline=start("handle", due=_resumed_due),
    decide=lambda case, _a, _c: {"suspended_since": case.suspended_at},
))

# --------------------------------------------------------------------------- 处置反馈 result


class ResultArgs(Strict):
    note: str = Field(min_length=1, max_length=TEXT)
    photos: list[Photo] = Field(default_factory=list, max_length=9)


class ResultReported(CaseEvent):
    """处置反馈: the department reports the result with photos; waits for 核查."""

    note: str
    photos: list[dict[str, Any]]

    def evolve(self, case: CaseState) -> None:
        case.result = {
            "note": self.note,
            "photos": self.photos,
            "by": self.actor,
            "at": iso_utc(self.timestamp),
        }
        case.result_at = self.timestamp


REPORT_RESULT = register(ActionSpec(
    "report_result", "处置反馈", ResultReported, ResultArgs,
    roles=frozenset({"handler"}),
    moves={Status.in_progress: Status.awaiting_verification}, deadline=start("verify"),
))
