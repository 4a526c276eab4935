"""Verification, closing and the return visit (核查 → 结案 → 回访 → 重办).

Each action: its argument schema, its event (facts + state change) and its entry, side by side.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from aggregates.actions.fields import TEXT, NoteArgs, Photo, ReasonArgs
from aggregates.errors import InvalidCommand
from aggregates.events import CaseEvent
from aggregates.integrity import iso_utc
from aggregates.registry import KEEP, STOP, ActionSpec, Context, Strict, register, start
from aggregates.state import CaseState
from core.geo import distance_m
from core.vocabulary import Satisfaction, Status

# --------------------------------------------------------------------------- 核查 verify


class Evidence(Strict):
    """What 核查 must bring from the site (pass or fail): at least one photo and the
    inspector's GPS fix, within the category's ``verify_radius_m`` (default 200 m) of the
    case — or, for a case reported without coordinates, inside its grid."""

    photos: list[Photo] = Field(min_length=1, max_length=9, description="on-site photos")
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="the inspector's fix")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    photo_taken_at: datetime | None = Field(
        default=None, description="when the photo was taken (EXIF / the phone); default: now"
    )


class VerifyArgs(Evidence):
    note: str | None = Field(default=None, max_length=TEXT)


class VerificationPassed(CaseEvent):
    """核查通过: the inspector confirmed the fix on site; ready to close. The on-site facts
    have defaults: events recorded before the rule read as "not recorded"."""

    note: str | None
    photos: list[dict[str, Any]]
    lat: float | None = None
    lon: float | None = None
    photo_taken_at: datetime | None = None
    distance_m: float | None = None  # from the case's point; None: checked against its grid
    radius_m: float | None = None

    def evolve(self, case: CaseState) -> None:
        case.verification = _check(self, passed=True)


def _check(event: VerificationPassed | VerificationFailed, *, passed: bool) -> dict[str, Any]:
    return {
        "passed": passed,
        "note": event.note,
        "photos": event.photos,
        "by": event.actor,
        "at": iso_utc(event.timestamp),
        "lat": event.lat,
        "lon": event.lon,
        "distance_m": event.distance_m,
        "radius_m": event.radius_m,
        "photo_taken_at": iso_utc(event.photo_taken_at) if event.photo_taken_at else None,
    }


#: A photo "taken" this far in the future of the command is a wrong clock, not evidence.
CLOCK_SKEW = timedelta(minutes=10)


def on_site(case: CaseState, args: Evidence, ctx: Context) -> dict[str, Any]:
    """The on-site rule of 核查: the fix within the category's radius of the case (or in the
    case's grid when it has no point), a photo not taken before the case was reported nor
    after now. Returns the facts recorded: distance, radius, photo time."""
    radius = ctx.category(case.category).verify_radius_m
    taken = args.photo_taken_at or ctx.at
    if taken > ctx.at + CLOCK_SKEW:
        raise InvalidCommand("the photo's time is in the future", "photo_taken_at")
    if case.reported_at is not None and taken < case.reported_at - CLOCK_SKEW:
        raise InvalidCommand(
            "the photo was taken before the case was reported: not evidence of this check",
            "photo_taken_at",
        )
    distance: float | None = None
    if case.lat is not None and case.lon is not None:
        distance = round(distance_m(case.lat, case.lon, args.lat, args.lon), 1)
        if distance > radius:
            raise InvalidCommand(
                f"核查 is done on site: your location is {distance:.0f} m from the case, "
                f"more than the {radius:.0f} m allowed for this category",
                "lat",
            )
    else:
        if not ctx.ref.jurisdiction.in_grid(case.grid, args.lat, args.lon):
            raise InvalidCommand(
                f"核查 is done on site: your location is outside the case's grid {case.grid}",
                "lat",
            )
    return {"photo_taken_at": taken, "distance_m": distance, "radius_m": radius}


VERIFY_PASS = register(ActionSpec(
    "verify_pass", "核查通过", VerificationPassed, VerifyArgs,
    roles=frozenset({"inspector"}),
    moves={Status.awaiting_verification: Status.verified}, deadline=STOP,
    decide=on_site,
))


class VerifyFailArgs(Evidence):
    note: str = Field(min_length=1, max_length=TEXT, description="what is still wrong")


class VerificationFailed(CaseEvent):
    """核查不通过 → 返工: back to the same department, the clock restarts, rework counted.
    Not a wrong dispatch. On-site facts as for :class:`VerificationPassed`."""

    note: str
    photos: list[dict[str, Any]]
    department: str | None
    rework_number: int
    lat: float | None = None
    lon: float | None = None
    photo_taken_at: datetime | None = None
    distance_m: float | None = None
    radius_m: float | None = None

    def evolve(self, case: CaseState) -> None:
        case.verification = _check(self, passed=False)
        case.rework_count = self.rework_number
        case.dispatched_at = self.timestamp


VERIFY_FAIL = register(ActionSpec(
    "verify_fail", "核查不通过(返工)", VerificationFailed, VerifyFailArgs,
    roles=frozenset({"inspector"}),
    moves={Status.awaiting_verification: Status.dispatched}, deadline=start("handle"),
    decide=lambda case, args, ctx: {
        **on_site(case, args, ctx),
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
