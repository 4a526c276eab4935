"""The household application service: the synchronous path of household commands.

HTTP (or the CLI, or the sample loader) → :meth:`HouseholdApp.run` → in ONE PostgreSQL
transaction: lock the household, load its events, run the action on the aggregate
(``aggregates.households``), append the new events, update the read models
(``projections.households``). Why not the cases' NATS → worker → relay → projector path:
households change a few times a month each (registers, flags, visits) — there is no storm to
absorb — and a visit recorded on a phone must show in the worklist at once; one transaction
gives that with no second copy of the pipeline to keep alive. The events table is
hash-chained like the cases' (docs/households.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg

from aggregates.households import (
    HOUSEHOLD_ACTIONS,
    Household,
    HouseholdContext,
    household_id_for_key,
    household_no_for_id,
)
from core.refdata import Reference
from core.visits import VisitSchedules
from projections import households as model

#: A check run on the household before the action (jurisdiction, who may edit): raises.
Check = Callable[[Household | None], None]


@cache
def schedules_for(city_dir: Path) -> VisitSchedules:
    return VisitSchedules.load(city_dir)


@dataclass
class Result:
    household: Household
    created: bool
    recorded: bool  # False: the command id was already applied (or the household existed)


@dataclass
class HouseholdApp:
    pool: asyncpg.Pool
    ref: Reference
    schedules: VisitSchedules

    def context(self, actor: str, role: str, channel: str, at: datetime,
                command_id: str) -> HouseholdContext:
        return HouseholdContext(actor, role, channel, at, command_id, self.schedules,
                                self.ref.calendar, self.ref.jurisdiction, self.ref.catalogue)

    async def run(
        self,
        household_id: str,
        action: str,
        args: dict[str, Any],
        *,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        check: Check | None = None,
    ) -> Result:
        """Run one action in one transaction (see the module docstring). Raises the domain's
        errors (``NotPermitted``, ``InvalidCommand``), pydantic's ``ValidationError``, or
        whatever ``check`` raises."""
        spec = HOUSEHOLD_ACTIONS[action]
        parsed = spec.args.model_validate(args)
        ctx = self.context(actor, role, channel, at, command_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('household:' || $1))",
                               household_id)
            history = await model.load_events(conn, household_id)
            household = Household.replay(history)
            if check is not None:
                check(household)
            if spec.creates and household is not None:
                return Result(household, created=False, recorded=False)
            if household is None:
                if not spec.creates:
                    raise LookupError(household_id)
                household = Household(household_id)
            recorded = household.execute(action, parsed, ctx)
            events = household.collect()
            if events:
                await model.append(conn, household, events, history, self.schedules,
                                   self.ref.calendar)
        return Result(household, created=spec.creates, recorded=recorded)

    async def register(self, key: str, args: dict[str, Any], *, actor: str, role: str,
                       channel: str, at: datetime, check: Check | None = None) -> Result:
        """Register a household whose id derives from ``key`` (the same key: the same
        household, never a second one)."""
        hid = household_id_for_key(key)
        body = {"household_no": household_no_for_id(hid), **args}
        return await self.run(str(hid), "register", body, actor=actor, role=role,
                              channel=channel, at=at, command_id=f"register:{key}", check=check)

    async def find(self, conn: asyncpg.Connection, number_or_id: str) -> dict[str, Any] | None:
        row = await conn.fetchrow(
            "SELECT * FROM household_register WHERE household_no = $1 OR household_id = $1",
            number_or_id,
        )
        return dict(row) if row is not None else None


async def import_rows(
    app: HouseholdApp, rows: list[Any], *, actor: str, role: str, channel: str, at: datetime,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Register parsed import rows (``gateways.household_files.ImportRow``), one transaction
    each; (registered, already there, refused rows with reasons). ``check`` may refuse a row
    (e.g. a grid outside the importer's area) by returning why."""
    from pydantic import ValidationError

    from aggregates.errors import DomainError

    made = existing = 0
    refused: list[dict[str, Any]] = []
    for row in rows:
        why = check(row.args) if check is not None else None
        if why is not None:
            refused.append({"line": row.line, "reason": why, "row": {}})
            continue
        try:
            result = await app.register(row.key, row.args, actor=actor, role=role,
                                        channel=channel, at=at)
        except (ValidationError, DomainError) as exc:
            refused.append({"line": row.line, "reason": str(exc), "row": {}})
            continue
        if result.recorded:
            made += 1
        else:
            existing += 1
    return made, existing, refused
