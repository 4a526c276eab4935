"""The unit of work (工作单元): a batch of one partition's commands, saved in ONE transaction.

Why batches: eventsourcing serialises inserts per events table, so one transaction per case
caps a partition at a few hundred cases/s; one transaction for a whole batch gets thousands.
A batch that conflicts (a report whose key was already stored after the NATS dedupe window,
or a concurrent writer on the same case) is retried command by command, so one bad apple
never blocks the others. A redelivered command is recognised (case id already stored /
command id already applied) and changes nothing.

Blocking (psycopg, through the eventsourcing application ``CaseStore``): the worker
(``gateways/worker.py``) runs it in a thread and acknowledges messages after it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from pydantic import ValidationError

from aggregates.actions import REGISTRY
from aggregates.case import Case
from aggregates.commands import Command, Outcome
from aggregates.errors import DomainError
from aggregates.service import CaseService
from core.eventstore import CaseStore
from core.logging import get_logger

log = get_logger("worker")


@dataclass
class BatchResult:
    """What one partition batch produced, message by message (same order as the input)."""

    outcomes: list[Outcome] = field(default_factory=list)
    saved_events: int = 0


def _ok(cmd: Command, case: Case, service: CaseService, duplicate: bool = False) -> Outcome:
    """Done: the case's status and version, and what the caller is offered next."""
    return Outcome(
        command_id=cmd.command_id,
        ok=True,
        case_no=cmd.case_no,
        verb=cmd.verb,
        status=case.state.status.value,
        version=case.version,
        duplicate=duplicate,
        allowed_actions=[
            a for a in case.offered(cmd.role, service.ref) if REGISTRY[a].public
        ],
    )


def _refused(cmd: Command, error: dict[str, Any]) -> Outcome:
    return Outcome(
        command_id=cmd.command_id, ok=False, case_no=cmd.case_no, verb=cmd.verb, error=error
    )


def _load(store: CaseStore, case_id: UUID) -> Case | None:
    try:
        case: Any = store.repository.get(case_id)
    except AggregateNotFoundError:
        return None
    assert isinstance(case, Case)
    return case


def process_batch(store: CaseStore, service: CaseService, commands: list[Command]) -> BatchResult:
    """Apply a batch of one partition's commands and save them in ONE transaction.

    Blocking (psycopg): run it in a thread. Falls back to one transaction per command when the
    batch save hits a conflict.
    """
    touched: dict[UUID, Case] = {}
    outcomes: list[Outcome] = []

    def load(case_id: UUID) -> Case | None:
        if case_id in touched:
            return touched[case_id]
        return _load(store, case_id)

    for cmd in commands:
        case_id = UUID(cmd.case_id)
        try:
            if cmd.verb == "report" and case_id in touched:
                outcomes.append(_ok(cmd, touched[case_id], service, duplicate=True))
                continue
            current = None if cmd.verb == "report" else load(case_id)
            for changed_case in service.execute(cmd, current, load):
                touched[changed_case.id] = changed_case
            outcomes.append(_ok(cmd, touched[case_id], service))
        except DomainError as exc:
            outcomes.append(_refused(cmd, exc.to_dict()))
        except ValidationError as exc:
            outcomes.append(_refused(cmd, {"error": "invalid_command", "message": str(exc)}))
    pending = sum(len(c.pending_events) for c in touched.values())  # type: ignore[attr-defined]
    if not touched:
        return BatchResult(outcomes, 0)
    try:
        store.save(*touched.values())
        return BatchResult(outcomes, pending)
    except IntegrityError:
        log.info("worker.batch_conflict", size=len(commands))
        return process_one_by_one(store, service, commands)


def process_one_by_one(
    store: CaseStore, service: CaseService, commands: list[Command], attempts: int = 5
) -> BatchResult:
    """The slow, precise path: one transaction per command, conflicts resolved individually."""
    result = BatchResult()
    for cmd in commands:
        case_id = UUID(cmd.case_id)
        for attempt in range(attempts):
            try:
                existing = _load(store, case_id)
                if cmd.verb == "report" and existing is not None:
                    result.outcomes.append(_ok(cmd, existing, service, duplicate=True))
                    break
                changed: dict[UUID, Case] = {}

                def load(cid: UUID, _changed: dict[UUID, Case] = changed) -> Case | None:
                    return _changed.get(cid) or _load(store, cid)

                for case in service.execute(cmd, existing, load):
                    changed[case.id] = case
                result.saved_events += sum(
                    len(c.pending_events)
                    for c in changed.values()  # type: ignore[attr-defined]
                )
                store.save(*changed.values())
                result.outcomes.append(_ok(cmd, changed[case_id], service))
                break
            except DomainError as exc:
                result.outcomes.append(_refused(cmd, exc.to_dict()))
                break
            except ValidationError as exc:
                result.outcomes.append(
                    _refused(cmd, {"error": "invalid_command", "message": str(exc)})
                )
                break
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
                log.info("worker.conflict_retry", case_no=cmd.case_no, attempt=attempt + 1)
    return result
