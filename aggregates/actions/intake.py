"""Intake and filing (信息收集 → 立案): report, file, reject, mark a duplicate, link its reporter.

Each action: its argument schema, its event (facts + state change) and its entry, side by side.
"""

from __future__ import annotations

import functools
import inspect
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.utils import resolve_topic
from pydantic import Field, model_validator

from aggregates import triage
from aggregates.actions.fields import SHORT, TEXT, NoteArgs, Photo, ReasonArgs, Reporter
from aggregates.errors import InvalidCommand
from aggregates.events import CaseEvent
from aggregates.registry import (
    KEEP,
    STOP,
    ActionSpec,
    Context,
    Strict,
    anytime,
    register,
    start,
)
from aggregates.state import CaseState
from core.catalogue import AnswerError
from core.jurisdiction import UnknownCode
from core.vocabulary import Source, Status

# --------------------------------------------------------------------------- 上报 report


class ReportArgs(Strict):
    category: str = Field(min_length=1, max_length=40)
    grid: str = Field(min_length=1, max_length=40)
    community: str = Field(min_length=1, max_length=40)
    district: str = Field(min_length=1, max_length=40)
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    address: str | None = Field(default=None, max_length=SHORT)
    description: str = Field(min_length=1, max_length=TEXT)
    reporter: Reporter
    source: Source = "api"
    client_time: datetime | None = None
    photos: list[Photo] = Field(default_factory=list, max_length=9)
    answers: dict[str, Any] = Field(
        default_factory=dict, max_length=30,
        description="answers to the category's extra questions, by question code",
    )
    media_url: str | None = Field(
        default=None, max_length=SHORT, pattern=r"^https?://\S+$",
        description="a photo or video the reporter links to (Open311 media_url)",
    )
    place_id: str | None = Field(
        default=None, max_length=60, description="the standard address (标准地址) picked"
    )
    located_grid: str | None = Field(
        default=None, max_length=40,
        description="the grid the GPS fix lies in, when the reporter filed it in another",
    )
    component: str | None = Field(
        default=None, pattern=r"^\d{16}$",
        description="the 部件 (16-digit component code) the report concerns",
    )

    @model_validator(mode="after")
    def _both_coordinates(self) -> ReportArgs:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        return self


class Reported(CaseEvent, Aggregate.Created):
    """上报 / 受理登记: the case exists, waiting to be filed (待立案)."""

    case_no: str
    category: str
    kind: str
    grid: str
    community: str
    district: str
    level: str
    node: str | None
    lat: float | None
    lon: float | None
    address: str | None
    description: str
    reporter: dict[str, Any]
    source: str
    client_time: datetime | None
    photos: list[dict[str, Any]]
    priority: str
    proposal: dict[str, Any]
    # Added later: a default, so events recorded before them read as "none".
    answers: dict[str, Any] | None = None
    media_url: str | None = None
    place_id: str | None = None
    located_grid: str | None = None
    component: str | None = None

    def mutate(self, aggregate: Any) -> Any:
        """eventsourcing's ``CanInitAggregate.mutate`` (new shell, base init, ``__init__``,
        ``apply``) without its two signature-filtered copies of every event field: the
        case's ``__init__`` takes none. Runs for every new case and every replay."""
        cls = resolve_topic(self.originator_topic)
        if aggregate is not None or not _plain_init(cls):
            return super().mutate(aggregate)
        case = cls.__new__(cls)
        case.__base_init__(self.originator_id, self.originator_version, self.timestamp)
        case.__init__()  # type: ignore[misc]
        self.apply(case)
        return case

    def evolve(self, case: CaseState) -> None:
        case.case_no = self.case_no
        case.category = self.category
        case.kind = self.kind
        case.grid = self.grid
        case.community = self.community
        case.district = self.district
        case.level = self.level
        case.node = self.node
        case.lat = self.lat
        case.lon = self.lon
        case.address = self.address
        case.description = self.description
        case.reporter = self.reporter
        case.reporters = [self.reporter]
        case.source = self.source
        case.client_time = self.client_time
        case.photos = self.photos
        case.answers = self.answers or {}
        case.media_url = self.media_url
        case.place_id = self.place_id
        case.located_grid = self.located_grid
        case.component = self.component
        case.priority = self.priority
        case.proposal = self.proposal
        case.reported_at = self.timestamp


@functools.cache
def _plain_init(cls: type) -> bool:
    """Whether ``cls.__init__`` takes no arguments (what ``Reported.mutate`` relies on)."""
    return len(inspect.signature(cls.__init__).parameters) == 1  # type: ignore[misc]


def _triage(_case: CaseState, args: ReportArgs, ctx: Context) -> dict[str, Any]:
    """Category and grid must exist; the answers must fit the category's questions (recorded
    in their checked form; a required one may be missing here — intake asks for it, but a
    report queued before a question became required is still taken); triage proposes
    department, level and priority."""
    category = ctx.category(args.category)
    try:
        ctx.ref.jurisdiction.grid(args.grid)
    except UnknownCode as exc:
        raise InvalidCommand(f"unknown grid {args.grid}", "grid") from exc
    if args.located_grid is not None and (
        args.located_grid not in ctx.ref.jurisdiction.grids or args.lat is None
    ):
        raise InvalidCommand("located_grid names the known grid of a GPS fix", "located_grid")
    try:
        answers = category.check_answers(args.answers, complete=False)
    except AnswerError as exc:
        raise InvalidCommand(str(exc), f"answers.{exc.question}") from exc
    proposal = triage.propose(category, args.grid, args.description, ctx.ref.jurisdiction)
    return {
        "category": category.code,
        "kind": category.kind,
        "answers": answers,
        "level": proposal.level,
        "node": proposal.node,
        "priority": proposal.priority,
        "proposal": proposal.model_dump(),
    }


REPORT = register(ActionSpec(
    "report", "上报", Reported, ReportArgs,
    roles=frozenset({"inspector", "call_taker", "system"}),
    moves={}, creates=True, deadline=start("file"), decide=_triage,
))

# --------------------------------------------------------------------------- 立案 file


class Filed(CaseEvent):
    """立案: filing conditions met, waiting for dispatch (待派遣)."""

    note: str | None

    def evolve(self, case: CaseState) -> None:
        case.filed_at = self.timestamp


FILE = register(ActionSpec(
    "file", "立案", Filed, NoteArgs,
    roles=frozenset({"dispatcher", "shift_leader"}),
    moves={Status.reported: Status.filed}, deadline=start("dispatch"),
))

# --------------------------------------------------------------------------- 不予立案 reject


class Rejected(CaseEvent):
    """不予立案 / 不予受理, with the reason the reporter is told. Terminal."""

    def evolve(self, case: CaseState) -> None:
        case.rejection_reason = self.reason
        case.finished_at = self.timestamp


REJECT = register(ActionSpec(
    "reject", "不予立案", Rejected, ReasonArgs,
    roles=frozenset({"dispatcher", "shift_leader", "call_taker"}),
    moves={s: Status.rejected for s in (Status.reported, Status.filed, Status.returned)},
    deadline=STOP,
))

# --------------------------------------------------------------------------- 标记重复 duplicate


class MarkDuplicateArgs(Strict):
    of_case_no: str = Field(min_length=1, max_length=40)
    of_case_id: str | None = Field(
        default=None, max_length=36, description="filled in by the gateway from the read model"
    )
    reason: str | None = Field(default=None, max_length=TEXT)


class MarkedDuplicate(CaseEvent):
    """标记重复: merged into an open case; its reporter is linked there. Terminal."""

    of_case_no: str
    of_case_id: str

    def evolve(self, case: CaseState) -> None:
        case.duplicate_of = self.of_case_no
        case.duplicate_of_id = self.of_case_id
        case.finished_at = self.timestamp


def _link_original(case: CaseState, args: MarkDuplicateArgs, ctx: Context) -> dict[str, Any]:
    """The original must be another case of this partition that can still take a reporter;
    it is changed first, so that neither case changes if either step is refused."""
    original = ctx.load(args.of_case_id) if ctx.load and args.of_case_id else None
    if original is None:
        raise InvalidCommand(
            f"original case {args.of_case_no} not found in district {case.district}",
            "of_case_no",
        )
    if original.state.case_no == case.case_no:
        raise InvalidCommand("a case cannot duplicate itself", "of_case_no")
    closed = LINK_REPORTER.why_not(original.state, ctx.role, ctx.ref)
    if closed is not None:
        raise InvalidCommand(
            f"original case {original.state.case_no} cannot take a duplicate: {closed}",
            "of_case_no",
        )
    link = LinkArgs(reporter=case.reporter, from_case_no=case.case_no, reason=args.reason)
    sub = Context(ctx.actor, ctx.role, ctx.channel, ctx.at, f"{ctx.command_id}:link", ctx.ref)
    original.execute("link_reporter", link, sub)
    return {"of_case_no": original.state.case_no, "of_case_id": args.of_case_id}


MARK_DUPLICATE = register(ActionSpec(
    "mark_duplicate", "标记重复", MarkedDuplicate, MarkDuplicateArgs,
    roles=frozenset({"dispatcher", "shift_leader"}),
    moves={s: Status.merged for s in (Status.reported, Status.filed)},
    deadline=STOP, decide=_link_original,
))

# --------------------------------------------------------------------------- 关联上报人 link


class LinkArgs(Strict):
    reporter: dict[str, Any]
    from_case_no: str = Field(min_length=1, max_length=40)
    reason: str | None = Field(default=None, max_length=TEXT)


class ReporterLinked(CaseEvent):
    """关联上报人: the reporter of a merged duplicate hears about this case's progress."""

    reporter: dict[str, Any]
    from_case_no: str

    def evolve(self, case: CaseState) -> None:
        case.reporters = [*case.reporters, {**self.reporter, "from_case_no": self.from_case_no}]


LINK_REPORTER = register(ActionSpec(
    "link_reporter", "关联上报人", ReporterLinked, LinkArgs,
    # Run on the original by whoever marks a duplicate, never asked for on its own.
    roles=frozenset({"dispatcher", "shift_leader", "system"}),
    moves=anytime(), deadline=KEEP,
    public=False,
))
