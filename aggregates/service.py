"""The command handler: turns a validated Command into calls on Case aggregates.

This is where reference data meets the aggregate: the category catalogue, the jurisdiction
tree, triage and the working-time calendar compute *values* (deadlines, routing proposals,
the level above) that the aggregate then records. The aggregate itself stays ignorant of
files and calendars, which keeps it pure and its replays deterministic. No I/O here either:
loading other aggregates goes through the ``load`` callable the worker passes in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from uuid import UUID

from aggregates import deadlines, triage
from aggregates.case import Case
from aggregates.commands import (
    ApproveArgs,
    Command,
    DispatchArgs,
    EscalateArgs,
    ExtensionArgs,
    FileArgs,
    MarkDuplicateArgs,
    NoteArgs,
    ReasonArgs,
    ReportArgs,
    ResultArgs,
    ReturnVisitArgs,
    StepArgs,
    SuspendArgs,
    VerifyArgs,
    VerifyFailArgs,
)
from aggregates.errors import InvalidCommand
from core.calendar import WorkCalendar
from core.catalogue import Catalogue, Category, Priority, UnknownCategory
from core.jurisdiction import Jurisdiction, UnknownCode

Loader = Callable[[UUID], Case | None]


class CaseNotFound(InvalidCommand):
    """The command names a case this partition does not hold."""

    def __init__(self, case_no: str) -> None:
        super().__init__(f"case {case_no} not found", "case_no")
        self.code = "not_found"


class CaseService:
    """Executes commands against aggregates; returns every aggregate it changed."""

    def __init__(
        self, catalogue: Catalogue, jurisdiction: Jurisdiction, calendar: WorkCalendar
    ) -> None:
        self.catalogue = catalogue
        self.jurisdiction = jurisdiction
        self.calendar = calendar

    def execute(self, cmd: Command, case: Case | None, load: Loader) -> list[Case]:
        """Apply ``cmd``; ``case`` is the current aggregate (None for a report)."""
        args = cmd.parsed_args()
        ctx: dict[str, Any] = {
            "actor": cmd.actor,
            "role": cmd.role,
            "channel": cmd.channel,
            "at": cmd.at,
            "command_id": cmd.command_id,
        }
        if cmd.verb == "report":
            assert isinstance(args, ReportArgs)
            return [self._report(cmd, args, ctx)]
        if case is None:
            raise CaseNotFound(cmd.case_no)
        category = self._category(case.category)
        handler = getattr(self, f"_{cmd.verb}")
        touched: list[Case] | None = handler(case, category, args, ctx, load)
        return touched or [case]

    # -- intake -------------------------------------------------------------------------
    def _report(self, cmd: Command, args: ReportArgs, ctx: dict[str, Any]) -> Case:
        category = self._category(args.category)
        try:
            self.jurisdiction.grid(args.grid)
        except UnknownCode as exc:
            raise InvalidCommand(f"unknown grid {args.grid}", "grid") from exc
        proposal = triage.propose(category, args.grid, args.description, self.jurisdiction)
        file_due = deadlines.due_at(category, proposal.priority, "file", cmd.at, self.calendar)
        return Case.report(
            case_id=UUID(cmd.case_id),
            case_no=cmd.case_no,
            category=category.code,
            kind=category.kind,
            grid=args.grid,
            community=args.community,
            district=args.district,
            lat=args.lat,
            lon=args.lon,
            address=args.address,
            description=args.description,
            reporter=args.reporter.model_dump(),
            source=args.source,
            client_time=args.client_time,
            photos=[p.model_dump() for p in args.photos],
            priority=proposal.priority,
            level=proposal.level,
            proposal=proposal.model_dump(),
            file_due=file_due,
            **ctx,
        )

    # -- filing ---------------------------------------------------------------------------
    def _file(
        self, case: Case, cat: Category, args: FileArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        due = deadlines.due_at(cat, _priority(case), "dispatch", ctx["at"], self.calendar)
        case.file(note=args.note, dispatch_due=due, **ctx)

    def _reject(
        self, case: Case, _c: Category, args: ReasonArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.reject(reason=args.reason, **ctx)

    def _mark_duplicate(
        self, case: Case, _c: Category, args: MarkDuplicateArgs, ctx: dict[str, Any], load: Loader
    ) -> list[Case]:
        original = load(UUID(args.of_case_id)) if args.of_case_id else None
        if original is None:
            raise InvalidCommand(
                f"original case {args.of_case_no} not found in district {case.district}",
                "of_case_no",
            )
        if original.id == case.id:
            raise InvalidCommand("a case cannot duplicate itself", "of_case_no")
        # Check the original first so that neither aggregate changes if either step is refused.
        original_ctx = dict(ctx, command_id=f"{ctx['command_id']}:link")
        original.link_reporter(
            reporter=case.reporter,
            from_case_no=case.case_no,
            reason=args.reason,
            **original_ctx,
        )
        case.mark_duplicate(
            of_case_no=original.case_no, of_case_id=str(original.id), reason=args.reason, **ctx
        )
        return [case, original]

    # -- dispatch and handling ----------------------------------------------------------
    def _dispatch(
        self, case: Case, cat: Category, args: DispatchArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        proposal = case.proposal or {}
        department_code = args.department or proposal.get("department")
        if not department_code:
            raise InvalidCommand("no department given and triage proposed none", "department")
        try:
            department = self.jurisdiction.department(department_code)
        except (UnknownCode, KeyError) as exc:
            raise InvalidCommand(f"unknown department {department_code}", "department") from exc
        if not self.jurisdiction.contains(department.node, case.grid):
            raise InvalidCommand(
                f"department {department_code} has no jurisdiction over grid {case.grid}",
                "department",
            )
        node = self.jurisdiction.node(department.node)
        # The case stays owned by the highest command level it has reached: a city centre that
        # dispatches to a district bureau keeps the case; a community case dispatched to a
        # district bureau (nothing suitable below) moves up to the district.
        level = self._higher_level(case.level, node.level)
        priority = args.priority or _priority(case)
        due = deadlines.due_at(cat, priority, "handle", ctx["at"], self.calendar)
        case.dispatch(
            department=department.code,
            level=level,
            node=node.code,
            priority=priority,
            handle_due=due,
            override_reason=args.override_reason,
            **ctx,
        )

    def _accept(
        self, case: Case, _c: Category, _a: NoteArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.accept(**ctx)

    def _return_case(
        self, case: Case, cat: Category, args: ReasonArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        # Back to the dispatcher, who must re-dispatch within the dispatch limit.
        due = deadlines.due_at(cat, _priority(case), "dispatch", ctx["at"], self.calendar)
        case.return_case(reason=args.reason, dispatch_due=due, **ctx)

    def _request_extension(
        self, case: Case, _c: Category, args: ExtensionArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.request_extension(hours=args.hours, reason=args.reason, **ctx)

    def _approve_extension(
        self, case: Case, cat: Category, args: ApproveArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        pending = case.pending_extension or {}
        hours = float(pending.get("hours", 0.0))
        if case.due is None or hours <= 0:
            raise InvalidCommand("no pending extension request", "extension")
        new_due = deadlines.extend(case.due, hours, cat.clock, self.calendar)
        case.approve_extension(
            new_due=new_due, reason=args.reason, max_extensions=cat.max_extensions, **ctx
        )

    def _refuse_extension(
        self, case: Case, _c: Category, args: ReasonArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.refuse_extension(reason=args.reason, **ctx)

    def _suspend(
        self, case: Case, _c: Category, args: SuspendArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        if args.review_at <= ctx["at"]:
            raise InvalidCommand("review date must be in the future", "review_at")
        case.suspend(reason=args.reason, review_at=args.review_at, **ctx)

    def _resume(
        self, case: Case, cat: Category, _a: NoteArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        paused_at, paused_due = case.suspended_at, case.paused_due
        if paused_due is not None and paused_at is not None:
            new_due = deadlines.resume(paused_due, paused_at, ctx["at"], cat.clock, self.calendar)
        else:
            new_due = deadlines.due_at(cat, _priority(case), "handle", ctx["at"], self.calendar)
        case.resume(new_due=new_due, **ctx)

    def _report_result(
        self, case: Case, cat: Category, args: ResultArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        due = deadlines.due_at(cat, _priority(case), "verify", ctx["at"], self.calendar)
        case.report_result(
            note=args.note, photos=[p.model_dump() for p in args.photos], verify_due=due, **ctx
        )

    def _verify_pass(
        self, case: Case, _c: Category, args: VerifyArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.verify_pass(note=args.note, photos=[p.model_dump() for p in args.photos], **ctx)

    def _verify_fail(
        self, case: Case, cat: Category, args: VerifyFailArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        due = deadlines.due_at(cat, _priority(case), "handle", ctx["at"], self.calendar)
        case.verify_fail(
            note=args.note, photos=[p.model_dump() for p in args.photos], new_due=due, **ctx
        )

    def _escalate(
        self, case: Case, cat: Category, args: EscalateArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        to_level = self.jurisdiction.level_above(case.level)
        to_node = proposal = None
        if to_level is not None:
            to_node = self.jurisdiction.command_node(case.grid, to_level).code
            proposal = triage.route_for_level(
                cat, case.grid, to_level, self.jurisdiction, priority=_priority(case)
            ).model_dump()
        due = deadlines.due_at(cat, _priority(case), "dispatch", ctx["at"], self.calendar)
        case.escalate(
            to_level=to_level,
            to_node=to_node,
            reason=args.reason,
            automatic=args.automatic,
            proposal=proposal,
            dispatch_due=due,
            **ctx,
        )

    def _supervise(
        self, case: Case, _c: Category, args: ReasonArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.supervise(reason=args.reason, **ctx)

    def _close(
        self, case: Case, _c: Category, args: NoteArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.close(note=args.note, **ctx)

    def _return_visit(
        self, case: Case, _c: Category, args: ReturnVisitArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.return_visit(satisfaction=args.satisfaction, comment=args.comment, **ctx)

    def _mark_warning(
        self, case: Case, _c: Category, args: StepArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.mark_warning(step=args.step, due=args.due, **ctx)

    def _mark_overdue(
        self, case: Case, _c: Category, args: StepArgs, ctx: dict[str, Any], _l: Loader
    ) -> None:
        case.mark_overdue(step=args.step, due=args.due, **ctx)

    # -- helpers --------------------------------------------------------------------------
    def _higher_level(self, a: str, b: str) -> str:
        order = self.jurisdiction.command_levels()  # bottom-up
        rank = {lvl: i for i, lvl in enumerate(order)}
        return a if rank.get(a, -1) >= rank.get(b, -1) else b

    def _category(self, code: str) -> Category:
        try:
            return self.catalogue.get(code)
        except (UnknownCategory, KeyError) as exc:
            raise InvalidCommand(f"unknown category {code}", "category") from exc


def _priority(case: Case) -> Priority:
    """The case's priority as the typed literal the deadline policy expects."""
    value = str(case.priority)
    if value not in ("urgent", "important", "ordinary"):
        raise InvalidCommand(f"case has unknown priority {value!r}", "priority")
    return cast(Priority, value)
