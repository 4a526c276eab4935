"""The SLA watcher: turns due deadlines into ordinary, idempotent commands.

Every tick it reads from the case queue the open deadlines that may need a decision now
(``aggregates.sla.may_need_decision``: the yellow moment each case recorded with its
deadline has come, or the deadline itself) and publishes the commands the SLA policy
(``aggregates.sla.decide``: warnings, overdue marks, automatic escalation, review
reminders) calls for. Command ids are derived from (case, rule, step, deadline), so a
repeated tick, a second watcher or a restart publishes nothing new (NATS dedupe) and changes
nothing (the aggregate ignores a command id it has applied). Time comes from an injected
clock: tests move it.

The same pass reminds inspectors of household visits due (六必访): a household whose running
visit deadline turned yellow or red gets one ``visit_due`` / ``visit_overdue`` notification
(``aggregates.notices.visit_reminder``; stored once per deadline and kind by
``projections.notifications.remind_visits``), pushed on NATS like the notifier's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from nats.js import JetStreamContext

from aggregates.commands import Command
from aggregates.sla import WarningTimes, decide
from core import codec
from core.clock import Clock
from core.logging import get_logger
from core.messaging import Topology
from core.refdata import Reference
from core.retry import backoff_delays, sleep_or_stop
from core.vocabulary import TERMINAL as TERMINAL_STATUSES
from projections.notifications import remind_visits

log = get_logger("watcher")

ACTOR = "sla-watcher"
#: One page of the open deadlines the policy may act on at $2 (``aggregates.sla.
#: may_need_decision``, in SQL), in (deadline, case id) order after ``($4, $5)``. Three
#: branches, each on an index of its own (``projections/queue.py``), so a pass reads the
#: deadlines that need a decision, not every open case: due ones (the review reminder, the
#: red light, an escalation), those whose recorded yellow moment has come, and those
#: recorded without one (events older than ``due_warn``; ``decide`` computes theirs).
OPEN_DEADLINES_SQL = """
SELECT case_id, case_no, partition, status, category, level, due_at, due_step,
       due_started_at, warning_at, warning, overdue, offers
FROM case_queue
WHERE due_at IS NOT NULL AND status <> ALL($1::text[])
  AND ((due_at <= $2 AND CASE WHEN coalesce(due_step, 'handle') = 'review' THEN NOT overdue
                              ELSE NOT overdue OR (offers -> 'system') ? 'escalate' END)
       OR (NOT warning AND warning_at IS NOT NULL AND warning_at <= $2
           AND coalesce(due_step, 'handle') <> 'review')
       OR (NOT warning AND warning_at IS NULL AND due_at IS NOT NULL
           AND coalesce(due_step, 'handle') <> 'review'))
  AND (due_at, case_id) > ($4::timestamptz, $5::uuid)
ORDER BY due_at, case_id
LIMIT $3
"""
_FIRST = (datetime(1, 1, 1, tzinfo=UTC), UUID(int=0))
#: Statuses whose deadlines are over (``core/vocabulary.py``).
TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


async def open_deadlines(
    conn: asyncpg.Connection, now: datetime, page: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """Every open deadline the policy may act on at ``now``, ``page`` rows at a time. All of
    them, not the first page only: when the earliest deadlines alone filled a batch, a case
    whose warning time had come but whose deadline was later (a long limit) waited behind
    them for as long as they stayed open."""
    after = _FIRST
    while True:
        rows = await conn.fetch(OPEN_DEADLINES_SQL, TERMINAL, now, page, *after)
        if rows:
            yield rows
        if len(rows) < page:
            return
        after = (rows[-1]["due_at"], rows[-1]["case_id"])


class SlaWatcher:
    """Periodic scan of open deadlines; publishes the commands ``decide`` returns."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        topo: Topology,
        ref: Reference,
        clock: Clock,
        interval_s: float = 5.0,
        batch: int = 5000,
        push: Callable[[str, bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.pool = pool
        self.js = js
        self.topo = topo
        self.ref = ref
        self.clock = clock
        self.interval_s = interval_s
        self.batch = batch
        self.published = 0
        # (audience, payload) → published where that audience's listeners hear it (bootstrap
        # wires gateways.notify's subjects): how reminders reach the pages live.
        self.push = push
        self.reminded = 0
        self.warning_times = WarningTimes(ref.calendar)

    async def tick(self) -> list[Command]:
        """One scan: returns the commands published."""
        now = self.clock.now()
        commands: list[Command] = []
        async with self.pool.acquire() as conn:
            async for rows in open_deadlines(conn, now, self.batch):
                for record in rows:
                    row = dict(record)
                    for decision in decide(row, now, self.ref, self.warning_times):
                        commands.append(Command(
                            command_id=decision.key, verb=decision.verb,  # type: ignore[arg-type]
                            case_id=str(row["case_id"]), case_no=row["case_no"],
                            partition=row["partition"], actor=ACTOR, role="system",
                            channel="system", at=now, args=decision.args,
                        ))
        self.warning_times.end_pass()
        for cmd in commands:
            await self.js.publish(
                self.topo.command_subject(cmd.partition, cmd.verb),
                codec.dumps(cmd.model_dump(mode="json")),
                headers={"Nats-Msg-Id": f"{cmd.verb}:{cmd.command_id}"},
            )
        self.published += len(commands)
        if commands:
            log.info("watcher.tick", commands=len(commands))
        await self.remind(now)
        return commands

    async def remind(self, now: Any) -> list[dict[str, Any]]:
        """Household visits due: store and push the reminders not sent yet (never fails the
        SLA pass: a problem is logged and the next pass tries again)."""
        try:
            items = await remind_visits(self.pool, now)
        except Exception as exc:
            log.warning("watcher.visit_reminders_failed", error=repr(exc))
            return []
        if self.push is not None:
            for item in items:
                payload = codec.dumps(item)
                for audience in item["audience"]:
                    try:
                        await self.push(audience, payload)
                    except Exception as exc:  # the list still has it
                        log.warning("watcher.reminder_push_failed", error=repr(exc))
        if items:
            self.reminded += len(items)
            log.info("watcher.visit_reminders", notifications=len(items))
        return items

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
