"""Verification, closing and the return visit (核查 → 结案 → 回访 → 重办).

Each action: its argument schema, its event (facts + state change) and its entry, side by side.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from aggregates.actions.fields import TEXT, NoteArgs, Photo, ReasonArgs
from aggregates.events import CaseEvent
from aggregates.integrity import iso_utc
from aggregates.registry import KEEP, STOP, ActionSpec, Strict, register, start
from aggregates.state import CaseState
from core.vocabulary import Satisfaction, Status

# --------------------------------------------------------------------------- 核查 verify


class VerifyArgs(Strict):
    note: str | None = Field(default=None, max_length=TEXT)
    photos: list[Photo] = Field(default_factory=list, max_length=9)


class VerificationPassed(CaseEvent):
    """核查通过: the inspector confirmed the fix on site; ready to close."""

    note: str | None
    photos: list[dict[str, Any]]

    def evolve(self, case: CaseState) -> None:
        case.verification = _check(self, passed=True)


def _check(event: VerificationPassed | VerificationFailed, *, passed: bool) -> dict[str, Any]:
    return {
        "passed": passed,
        "note": event.note,
        "photos": event.photos,
        "by": event.actor,
        "at": iso_utc(event.timestamp),
    }


VERIFY_PASS = register(ActionSpec(
    "verify_pass", "核查通过", VerificationPassed, VerifyArgs,
    roles=frozenset({"inspector"}),
    moves={Status.awaiting_verification: Status.verified}, deadline=STOP,
))


class VerifyFailArgs(Strict):
    note: str = Field(min_length=1, max_length=TEXT, description="what is still wrong")
    photos: list[Photo] = Field(default_factory=list, max_length=9)


class VerificationFailed(CaseEvent):
    """核查不通过 → 返工: back to the same department, the clock restarts, rework counted.
    Not a wrong dispatch."""

    note: str
    photos: list[dict[str, Any]]
    department: str | None
    rework_number: int

    def evolve(self, case: CaseState) -> None:
        case.verification = _check(self, passed=False)
        case.rework_count = self.rework_number
        case.dispatched_at = self.timestamp


VERIFY_FAIL = register(ActionSpec(
    "verify_fail", "核查不通过(返工)", VerificationFailed, VerifyFailArgs,
    roles=frozenset({"inspector"}),
    moves={Status.awaiting_verification: Status.dispatched}, deadline=start("handle"),
    decide=lambda case, args, _c: {
        "reason": args.note,
        "department": case.department,
        "rework_number": case.rework_count + 1,
    },
))

# --------------------------------------------------------------------------- 结案 close


class Closed(CaseEvent):
    """结案 after a passed verification."""

    note: str | None

    def evolve(self, case: CaseState) -> None:
        case.closed_at = self.timestamp
        case.finished_at = self.timestamp
        case.close_note = self.note


CLOSE = register(ActionSpec(
    "close", "结案", Closed, NoteArgs,
    roles=frozenset({"dispatcher", "shift_leader"}),
    moves={Status.verified: Status.closed}, deadline=STOP,
))

# --------------------------------------------------------------------------- 回访 return visit


class ReturnVisitArgs(Strict):
    satisfaction: Satisfaction
    comment: str | None = Field(default=None, max_length=TEXT)


class ReturnVisited(CaseEvent):
    """回访: the reporter's satisfaction (满意 / 基本满意 / 不满意), once per closing."""

    satisfaction: str
    comment: str | None

    def evolve(self, case: CaseState) -> None:
        case.satisfaction = self.satisfaction
        case.return_visit_comment = self.comment
        case.return_visited_at = self.timestamp


RETURN_VISIT = register(ActionSpec(
    "return_visit", "回访", ReturnVisited, ReturnVisitArgs,
    roles=frozenset({"call_taker"}),
    moves={Status.closed: Status.closed}, deadline=KEEP,
    guard=lambda case, _r, _ref: "already visited" if case.return_visited_at else None,
))

# --------------------------------------------------------------------------- 重办 reopen


class Reopened(CaseEvent):
    """回访不满意 → 重办: the shift leader sends a case the reporter was dissatisfied with back
    to dispatch (reason required). Counted as a reopen; the next closing gets a new visit."""

    satisfaction: str | None  # the rating that led to it

    def evolve(self, case: CaseState) -> None:
        case.department = None
        case.closed_at = None
        case.finished_at = None
        case.satisfaction = None
        case.return_visit_comment = None
        case.return_visited_at = None
        case.reopen_declined = None


def _undecided_dissatisfied(case: CaseState, _r: str, _ref: object) -> str | None:
    """The shift leader decides once after a dissatisfied visit: reopen or decline."""
    if case.satisfaction != "dissatisfied":
        return "only after a dissatisfied return visit"
    if case.reopen_declined:
        return "already decided not to reopen"
    return None


REOPEN = register(ActionSpec(
    "reopen", "重办", Reopened, ReasonArgs,
    roles=frozenset({"shift_leader"}),
    moves={Status.closed: Status.filed}, deadline=start("dispatch"),
    guard=_undecided_dissatisfied,
    decide=lambda case, _a, _c: {"satisfaction": case.satisfaction},
))

# --------------------------------------------------------------------------- 不予重办


class ReopenDeclined(CaseEvent):
    """回访不满意, 不予重办: the shift leader's recorded decision not to reopen a case the
    reporter was dissatisfied with (reason required, e.g. outside the city's remit or already
    explained to the caller). The case stays closed; nothing more is offered on it."""

    satisfaction: str | None  # the rating the decision answers

    def evolve(self, case: CaseState) -> None:
        case.reopen_declined = {
            "reason": self.reason, "by": self.actor, "at": iso_utc(self.timestamp),
        }


DECLINE_REOPEN = register(ActionSpec(
    "decline_reopen", "不予重办", ReopenDeclined, ReasonArgs,
    roles=frozenset({"shift_leader"}),
    moves={Status.closed: Status.closed}, deadline=KEEP,
    guard=_undecided_dissatisfied,
    decide=lambda case, _a, _c: {"satisfaction": case.satisfaction},
))
