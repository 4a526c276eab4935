"""The household actions (户情登记 · 六必访), each declared once: schema, checks, state change.

Who may: the grid team (``inspector``) and community leaders (``supervisor``; the gateway
checks that the node contains the household's grid), and ``system`` for imports. Visits are
recorded by the inspector (or a supervisor visiting with a party member).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from aggregates.actions.fields import SHORT, TEXT, Photo
from aggregates.errors import InvalidCommand
from aggregates.households.registry import (
    HouseholdAction,
    HouseholdContext,
    register,
)
from aggregates.households.state import HouseholdState
from aggregates.registry import Strict
from core.ids import case_id_for_key, case_no_for_id
from core.jurisdiction import UnknownCode
from core.vocabulary import CareFlag

EDITORS = frozenset({"inspector", "supervisor", "system"})
VISITORS = frozenset({"inspector", "supervisor"})


class Member(Strict):
    """A household member, as much as the work needs (成员)."""

    name: str = Field(min_length=1, max_length=50)
    relation: str | None = Field(default=None, max_length=20)  # 户主 / 配偶 / 子女 ...
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    phone: str | None = Field(default=None, max_length=30, pattern=r"^[0-9+\- ()]{3,30}$")
    note: str | None = Field(default=None, max_length=SHORT)


class FlagIn(Strict):
    flag: CareFlag
    reason: str = Field(min_length=1, max_length=TEXT)


# --------------------------------------------------------------------------- 登记 register


class RegisterArgs(Strict):
    household_no: str = Field(min_length=1, max_length=40)
    grid: str = Field(min_length=1, max_length=40)
    address: str = Field(min_length=1, max_length=SHORT)
    address_code: str | None = Field(default=None, max_length=60)
    members: list[Member] = Field(default_factory=list, max_length=30)
    flags: list[FlagIn] = Field(default_factory=list, max_length=6)
    inspector: str | None = Field(default=None, max_length=100)
    party_member: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _flags_once(self) -> RegisterArgs:
        names = [f.flag for f in self.flags]
        if len(names) != len(set(names)):
            raise ValueError("a flag is listed twice")
        return self


def _locate(_state: HouseholdState, args: RegisterArgs, ctx: HouseholdContext) -> dict[str, Any]:
    if ctx.jurisdiction is None:
        raise InvalidCommand("no jurisdiction to place the household in", "grid")
    try:
        grid = ctx.jurisdiction.grid(args.grid)
    except UnknownCode as exc:
        raise InvalidCommand(f"unknown grid {args.grid}", "grid") from exc
    return {
        "community": grid.parent,
        "district": ctx.jurisdiction.partition_of(grid.code),
        "inspector": args.inspector or grid.team.inspector,
    }


def _registered(state: HouseholdState, f: dict[str, Any], at: datetime) -> None:
    state.household_no = f["household_no"]
    state.grid = f["grid"]
    state.community = f["community"]
    state.district = f["district"]
    state.address = f["address"]
    state.address_code = f.get("address_code")
    state.members = list(f.get("members") or [])
    state.inspector = f.get("inspector")
    state.party_member = f.get("party_member")
    state.registered_at = at
    for item in f.get("flags") or []:
        _set(state, item["flag"], item["reason"], at, f["actor"])


REGISTER = register(HouseholdAction(
    "register", "登记户情", "HouseholdRegistered", RegisterArgs, EDITORS, _registered,
    decide=_locate, creates=True,
))

# --------------------------------------------------------------------------- 修改 details


class DetailsArgs(Strict):
    """Change the address or the members (fields left out stay as they are)."""

    address: str | None = Field(default=None, min_length=1, max_length=SHORT)
    address_code: str | None = Field(default=None, max_length=60)
    members: list[Member] | None = Field(default=None, max_length=30)
    reason: str | None = Field(default=None, max_length=TEXT)


def _details_changed(state: HouseholdState, f: dict[str, Any], _at: datetime) -> None:
    if f.get("address") is not None:
        state.address = f["address"]
    if f.get("address_code") is not None:
        state.address_code = f["address_code"]
    if f.get("members") is not None:
        state.members = list(f["members"])


register(HouseholdAction(
    "update_details", "修改户情", "HouseholdDetailsChanged", DetailsArgs, EDITORS,
    _details_changed,
))

# --------------------------------------------------------------------------- 责任人 assign


class AssignArgs(Strict):
    inspector: str | None = Field(default=None, min_length=1, max_length=100)
    party_member: str | None = Field(default=None, min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=TEXT)

    @model_validator(mode="after")
    def _something(self) -> AssignArgs:
        if self.inspector is None and self.party_member is None:
            raise ValueError("name the inspector, the party member or both")
        return self


def _assigned(state: HouseholdState, f: dict[str, Any], _at: datetime) -> None:
    if f.get("inspector") is not None:
        state.inspector = f["inspector"]
    if f.get("party_member") is not None:
        state.party_member = f["party_member"]


register(HouseholdAction(
    "assign", "指定责任人", "HouseholdAssigned", AssignArgs, EDITORS, _assigned,
))

# --------------------------------------------------------------------------- 标记 / 解除 flags


class SetFlagArgs(Strict):
    flag: CareFlag
    reason: str = Field(min_length=1, max_length=TEXT)


def _check_new_flag(state: HouseholdState, args: SetFlagArgs, _ctx: HouseholdContext
                    ) -> dict[str, Any]:
    if args.flag in state.flags:
        raise InvalidCommand(f"flag {args.flag} is already set", "flag")
    return {}


def _set(state: HouseholdState, flag: str, reason: str, at: datetime, by: str) -> None:
    if not state.flags:
        state.flagged_since = at
    state.flags = {**state.flags, flag: {"reason": reason, "since": at, "by": by}}
    state.flag_history = [
        *state.flag_history, {"flag": flag, "change": "set", "reason": reason, "at": at, "by": by}
    ]


def _flag_set(state: HouseholdState, f: dict[str, Any], at: datetime) -> None:
    _set(state, f["flag"], f["reason"], at, f["actor"])


register(HouseholdAction(
    "set_flag", "标记必访", "CareFlagSet", SetFlagArgs, EDITORS, _flag_set,
    decide=_check_new_flag,
))


class LiftFlagArgs(Strict):
    flag: CareFlag
    reason: str = Field(min_length=1, max_length=TEXT)


def _check_lift(state: HouseholdState, args: LiftFlagArgs, _ctx: HouseholdContext
                ) -> dict[str, Any]:
    if args.flag not in state.flags:
        raise InvalidCommand(f"flag {args.flag} is not set", "flag")
    return {}


def _flag_lifted(state: HouseholdState, f: dict[str, Any], at: datetime) -> None:
    flag = f["flag"]
    state.flags = {k: v for k, v in state.flags.items() if k != flag}
    if not state.flags:
        state.flagged_since = None
    state.flag_history = [
        *state.flag_history,
        {"flag": flag, "change": "lifted", "reason": f["reason"], "at": at, "by": f["actor"]},
    ]


register(HouseholdAction(
    "lift_flag", "解除必访", "CareFlagLifted", LiftFlagArgs, EDITORS, _flag_lifted,
    decide=_check_lift,
))

# --------------------------------------------------------------------------- 走访 visit


class NeedIn(Strict):
    """A need found on a visit (诉求); it becomes a case of ``category`` in the same step."""

    category: str = Field(min_length=1, max_length=40)
    description: str = Field(min_length=1, max_length=TEXT)


class VisitArgs(Strict):
    visited_at: datetime | None = None  # when the visit happened (the phone's time), else now
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    location: str | None = Field(default=None, max_length=SHORT)
    photo: Photo | None = None
    photo_consent: bool = False  # the household agreed to the photo (拍照已征得同意)
    findings: str = Field(min_length=1, max_length=TEXT)
    needs: list[NeedIn] = Field(default_factory=list, max_length=5)
    party_member_present: bool = False

    @model_validator(mode="after")
    def _consent(self) -> VisitArgs:
        if self.photo is not None and not self.photo_consent:
            raise ValueError("a photo needs the household's consent (photo_consent: true)")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        return self


def need_key(command_id: str, index: int) -> str:
    """The idempotency key of the report a visit's need becomes (its case number follows)."""
    return f"{command_id}:need:{index}"


def _visit(state: HouseholdState, args: VisitArgs, ctx: HouseholdContext) -> dict[str, Any]:
    if state.archived:
        raise InvalidCommand("the household is archived", "household")
    visited = args.visited_at or ctx.at
    if visited.tzinfo is None:
        raise InvalidCommand("visited_at must carry a time zone", "visited_at")
    if visited > ctx.at:
        visited = ctx.at  # a phone whose clock runs ahead: the visit is now, not later
    if state.last_visit_at is not None and visited < state.last_visit_at:
        raise InvalidCommand("visited_at is before the last recorded visit", "visited_at")
    for need in args.needs:
        if ctx.catalogue is not None and need.category not in ctx.catalogue:
            raise InvalidCommand(f"unknown category {need.category}", "needs")
    cases = [case_no_for_id(case_id_for_key(need_key(ctx.command_id, i)))
             for i in range(len(args.needs))]
    return {"visited_at": visited, "visit_id": ctx.command_id, "case_nos": cases}


def _visited(state: HouseholdState, f: dict[str, Any], at: datetime) -> None:
    visited = f["visited_at"]
    state.last_visit_at = visited
    state.visits = [*state.visits, {
        "visit_id": f["visit_id"], "at": visited, "by": f["actor"], "findings": f["findings"],
        "location": f.get("location"), "lat": f.get("lat"), "lon": f.get("lon"),
        "photo": f.get("photo"), "photo_consent": f.get("photo_consent"),
        "party_member_present": f.get("party_member_present"),
        "case_nos": list(f.get("case_nos") or []),
    }]
    needs = f.get("needs") or []
    state.cases = [*state.cases, *(
        {"case_no": no, "category": n["category"], "description": n["description"],
         "raised_at": at, "visit_id": f["visit_id"]}
        for no, n in zip(f.get("case_nos") or [], needs, strict=True)
    )]


register(HouseholdAction(
    "record_visit", "记录走访", "HouseholdVisited", VisitArgs, VISITORS, _visited,
    decide=_visit,
))

# --------------------------------------------------------------------------- 诉求转案件 need


class NeedArgs(NeedIn):
    """A need raised outside a visit (a phone call, a neighbour): becomes a case at once."""


def _need(state: HouseholdState, args: NeedArgs, ctx: HouseholdContext) -> dict[str, Any]:
    if ctx.catalogue is not None and args.category not in ctx.catalogue:
        raise InvalidCommand(f"unknown category {args.category}", "category")
    return {"case_no": case_no_for_id(case_id_for_key(need_key(ctx.command_id, 0)))}


def _need_raised(state: HouseholdState, f: dict[str, Any], at: datetime) -> None:
    state.cases = [*state.cases, {"case_no": f["case_no"], "category": f["category"],
                                  "description": f["description"], "raised_at": at,
                                  "visit_id": None}]


register(HouseholdAction(
    "raise_need", "诉求转案件", "HouseholdNeedRaised", NeedArgs, VISITORS, _need_raised,
    decide=_need,
))

# --------------------------------------------------------------------------- 注销 archive


class ArchiveArgs(Strict):
    reason: str = Field(min_length=1, max_length=TEXT)  # 迁出 / 户销 ...


def _check_archive(state: HouseholdState, _a: ArchiveArgs, _c: HouseholdContext
                   ) -> dict[str, Any]:
    if state.archived:
        raise InvalidCommand("the household is already archived", "household")
    return {}


def _archived(state: HouseholdState, _f: dict[str, Any], _at: datetime) -> None:
    state.archived = True


register(HouseholdAction(
    "archive", "注销户情", "HouseholdArchived", ArchiveArgs, EDITORS, _archived,
    decide=_check_archive,
))
