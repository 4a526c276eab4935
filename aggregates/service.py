"""The command handler: one validated :class:`Command` → the aggregates it changes.

Reference data (catalogue, jurisdiction tree, working-time calendar) reaches the aggregate in
the :class:`~aggregates.registry.Context`; the registry entry computes deadlines and routing
from it, so the aggregate stays pure and its replays deterministic. No I/O here either:
another case is loaded through the ``load`` callable the unit of work passes in.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from aggregates.case import Case
from aggregates.commands import Command
from aggregates.errors import InvalidCommand
from aggregates.registry import Context
from core.calendar import WorkCalendar
from core.catalogue import Catalogue
from core.jurisdiction import Jurisdiction
from core.refdata import Reference

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
        self.ref = Reference(jurisdiction=jurisdiction, catalogue=catalogue, calendar=calendar)

    def execute(self, cmd: Command, case: Case | None, load: Loader) -> list[Case]:
        """Apply ``cmd``; ``case`` is the current aggregate (None for a report)."""
        args = cmd.parsed_args()
        touched: list[Case] = []

        def load_other(case_id: str) -> Case | None:
            try:
                other = load(UUID(case_id))
            except ValueError:
                return None
            if other is not None:
                touched.append(other)
            return other

        ctx = Context(cmd.actor, cmd.role, cmd.channel, cmd.at, cmd.command_id, self.ref,
                      load_other)
        if cmd.verb == "report":
            return [Case.create(UUID(cmd.case_id), cmd.case_no, args, ctx)]
        if case is None:
            raise CaseNotFound(cmd.case_no)
        case.execute(cmd.verb, args, ctx)
        return [case, *touched]
