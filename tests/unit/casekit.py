"""Helpers for the pure tests of the case aggregate: the real reference data (Guiyang, the
category catalogue v1, the working-time calendar) and one way to run an action by name with
its arguments as a dict, the way a gateway does — a :class:`Command` through
:class:`CaseService` — so the tests exercise the wire schema (``ARGS``) too.

No I/O beyond reading the reference files once at import.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from aggregates.case import Case
from aggregates.commands import Command
from aggregates.service import CaseService
from core.calendar import WorkCalendar
from core.catalogue import Catalogue
from core.ids import case_no_for_id
from core.jurisdiction import Jurisdiction
from core.refdata import Reference

ROOT = Path(__file__).resolve().parents[2]
JURISDICTION = Jurisdiction.load(ROOT / "deploy" / "cities" / "guiyang")
CATALOGUE = Catalogue.load(ROOT / "deploy" / "categories.v1.json")
CALENDAR = WorkCalendar()
SERVICE = CaseService(CATALOGUE, JURISDICTION, CALENDAR)
REF: Reference = SERVICE.ref

#: Monday 2026-11-23 09:00 in Guiyang (UTC+8): inside working hours.
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
#: A grid of 新華社區 (community 520102001) in district 520102.
GRID = "520102001001"
COMMUNITY = JURISDICTION.grid(GRID).parent
DISTRICT = JURISDICTION.partition_of(GRID)
#: 暴露垃圾: district level, triage proposes D-520102-sanitation, one extension allowed.
CATEGORY = "SJ0101"

_ids = itertools.count(1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def fresh_id() -> str:
    return f"cmd-{next(_ids)}"


def _when(moment: float | datetime) -> datetime:
    return moment if isinstance(moment, datetime) else at(moment)


def report_args(grid: str = GRID, **overrides: Any) -> dict[str, Any]:
    """A valid ``report`` argument dict for ``grid`` (category 暴露垃圾 unless overridden)."""
    args: dict[str, Any] = {
        "category": CATEGORY,
        "grid": grid,
        "community": JURISDICTION.grid(grid).parent,
        "district": JURISDICTION.partition_of(grid),
        "description": "垃圾暴露 garbage piled up",
        "reporter": {"name": "李四", "phone": "13800000000", "id": "insp-7", "type": "inspector"},
        "source": "inspector_app",
        "lat": 26.58,
        "lon": 106.65,
        "address": "中华北路 1 号",
        "photos": [{"digest": "sha256:" + "ab" * 32, "size": 1024, "content_type": "image/jpeg"}],
    }
    args.update(overrides)
    return args


def command(
    verb: str,
    role: str,
    when: float | datetime,
    args: dict[str, Any],
    *,
    case_id: UUID,
    case_no: str,
    partition: str = DISTRICT,
    actor: str | None = None,
    cid: str | None = None,
) -> Command:
    return Command(
        command_id=cid or fresh_id(),
        verb=verb,
        case_id=str(case_id),
        case_no=case_no,
        partition=partition,
        actor=actor or f"{role}-1",
        role=role,
        channel="web",
        at=_when(when),
        args=args,
    )


def report(
    role: str = "inspector",
    when: float | datetime = 0,
    *,
    case_id: UUID | None = None,
    case_no: str | None = None,
    cid: str | None = None,
    actor: str | None = None,
    **overrides: Any,
) -> Case:
    """上报: a new case through the service (``overrides`` change the report arguments)."""
    args = report_args(**overrides)
    case_id = case_id or uuid4()
    cmd = command(
        "report",
        role,
        when,
        args,
        case_id=case_id,
        case_no=case_no if case_no is not None else case_no_for_id(case_id),
        partition=JURISDICTION.partition_of(args["grid"]),
        actor=actor,
        cid=cid,
    )
    (case,) = SERVICE.execute(cmd, None, lambda _id: None)
    return case


def loader(cases: Iterable[Case]) -> Any:
    """The unit of work's ``load``: another case of the partition by id, else None."""
    by_id = {c.id: c for c in cases}
    return lambda case_id: by_id.get(case_id)


def run(
    case: Case,
    verb: str,
    role: str,
    when: float | datetime,
    *,
    actor: str | None = None,
    cid: str | None = None,
    others: Sequence[Case] = (),
    **args: Any,
) -> list[Case]:
    """Run action ``verb`` on ``case`` as ``role`` with ``args``; ``others`` are the cases the
    loader can find (the original of a duplicate). Returns the cases the service touched."""
    cmd = command(
        verb,
        role,
        when,
        args,
        case_id=case.id,
        case_no=case.state.case_no or "GD-X",
        partition=case.state.district or DISTRICT,
        actor=actor,
        cid=cid,
    )
    return SERVICE.execute(cmd, case, loader(others))


def names(events: Sequence[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def replay(events: Sequence[Any]) -> Case:
    """Rebuild an aggregate by projecting its events (what the repository does)."""
    case: Case | None = None
    for event in events:
        case = event.mutate(case)
    assert case is not None
    return case
