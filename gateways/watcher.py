"""The SLA watcher: turns due deadlines into ordinary, idempotent commands.

Every tick it reads the open deadlines from the case queue and, by the rules of
aggregates/deadlines.py and the category catalogue, issues:
- ``mark_warning`` at 80 % of a step's limit (黃燈) and ``mark_overdue`` at 100 % (紅燈);
- ``escalate`` (automatic, 上提一級) once a case is overdue by its category's margin and a
  command level exists above it — never above the top level;
- ``mark_overdue`` with step ``review`` when a suspended case (掛賬) reaches its review date, a
  reminder that lands on the case's timeline.
Command ids are derived from (case, rule, step, deadline), so a repeated tick, a second
watcher or a restart publishes nothing new (NATS dedupe) and changes nothing (the aggregate
ignores a command id it has applied). Time comes from an injected clock: tests move it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from aggregates import deadlines
from aggregates.commands import Command
from aggregates.states import TERMINAL as TERMINAL_STATUSES
from aggregates.states import Action, Status, allowed_actions
from core import codec
from core.clock import Clock
from core.logging import get_logger
from core.messaging import Topology
from core.refdata import Reference
from core.retry import backoff_delays, sleep_or_stop

log = get_logger("watcher")

ACTOR = "sla-watcher"
OPEN_DEADLINES_SQL = """
SELECT case_id, case_no, partition, status, category, level, due_at, due_step,
       due_started_at, warning, overdue
FROM case_queue
WHERE due_at IS NOT NULL AND status <> ALL($1::text[]) AND due_at <= $2
ORDER BY due_at
LIMIT $3
"""


@dataclass(frozen=True)
class Decision:
    """One command the rules call for, before it is wrapped and published."""

    verb: str
    case_no: str
    args: dict[str, Any]
    key: str


def decide(row: dict[str, Any], now: datetime, ref: Reference) -> list[Decision]:
    """Pure: which commands a case row calls for at ``now`` (tested without any I/O)."""
    due: datetime = row["due_at"]
    step: str = row["due_step"] or "handle"
    start: datetime = row["due_started_at"] or due
    category = ref.catalogue.get(row["category"])
    clock = "natural" if step == "review" else category.clock
    stamp = due.isoformat()
    out: list[Decision] = []
    status = Status(row["status"])
    if step == "review":
        if now >= due and not row["overdue"]:
            out.append(Decision("mark_overdue", row["case_no"], {"step": step, "due": stamp},
                                f"sla:review:{row['case_no']}:{stamp}"))
        return out
    if not row["warning"] and now >= deadlines.warning_at(start, due, clock, ref.calendar):
        out.append(Decision("mark_warning", row["case_no"], {"step": step, "due": stamp},
                            f"sla:warn:{row['case_no']}:{step}:{stamp}"))
    if now >= due:
        if not row["overdue"]:
            out.append(Decision("mark_overdue", row["case_no"], {"step": step, "due": stamp},
                                f"sla:overdue:{row['case_no']}:{step}:{stamp}"))
        late = deadlines.overdue_hours(due, now, clock, ref.calendar)
        can_escalate = Action.escalate in allowed_actions(status, "system")
        higher = ref.jurisdiction.level_above(row["level"]) if row["level"] else None
        if can_escalate and higher and late >= category.escalate_after_overdue_hours:
            reason = (f"超期 {late:.1f} 小時自動上提 (overdue {late:.1f} h ≥ "
                      f"{category.escalate_after_overdue_hours:g} h margin, step {step})")
            out.append(Decision("escalate", row["case_no"], {"reason": reason, "automatic": True},
                                f"sla:escalate:{row['case_no']}:{step}:{stamp}"))
    return out


class SlaWatcher:
    """Periodic scan of open deadlines; publishes the commands ``decide`` returns."""

    TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)  # aggregates/states.py

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        topo: Topology,
        ref: Reference,
        clock: Clock,
        interval_s: float = 5.0,
        batch: int = 5000,
    ) -> None:
        self.pool = pool
        self.js = js
        self.topo = topo
        self.ref = ref
        self.clock = clock
        self.interval_s = interval_s
        self.batch = batch
        self.published = 0

    async def tick(self) -> list[Command]:
        """One scan: returns the commands published."""
        now = self.clock.now()
        # Warnings come before the deadline: look ahead by the longest limit in the catalogue.
        horizon = now + _longest_limit(self.ref)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(OPEN_DEADLINES_SQL, list(self.TERMINAL), horizon, self.batch)
        commands: list[Command] = []
        for record in rows:
            row = dict(record)
            for decision in decide(row, now, self.ref):
                commands.append(Command(
                    command_id=decision.key, verb=decision.verb,  # type: ignore[arg-type]
                    case_id=str(row["case_id"]), case_no=row["case_no"],
                    partition=row["partition"], actor=ACTOR, role="system", channel="system",
                    at=now, args=decision.args,
                ))
        for cmd in commands:
            await self.js.publish(
                self.topo.command_subject(cmd.partition, cmd.verb),
                codec.dumps(cmd.model_dump(mode="json")),
                headers={"Nats-Msg-Id": f"{cmd.verb}:{cmd.command_id}"},
            )
        self.published += len(commands)
        if commands:
            log.info("watcher.tick", commands=len(commands))
        return commands

    async def run(self, stop: asyncio.Event) -> None:
        delays = backoff_delays()
        while not stop.is_set():
            try:
                await self.tick()
                delays = backoff_delays()
                await sleep_or_stop(stop, self.interval_s)
            except Exception as exc:
                delay = next(delays)
                log.warning("watcher.retry", error=repr(exc), delay_s=round(delay, 2))
                await sleep_or_stop(stop, delay)


def _longest_limit(ref: Reference) -> Any:
    from datetime import timedelta

    hours = max(
        max(lim.file, lim.dispatch, lim.handle, lim.verify)
        for cat in ref.catalogue.all()
        for lim in cat.limits.values()
    )
    # Working hours stretch over nights, weekends and holidays: allow a generous calendar span.
    return timedelta(days=max(30.0, hours / 7 * 3))
