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
from core.vocabulary import TERMINAL

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


#: The actions that need on-site evidence (a photo and a location near the case).
ON_SITE = ("verify_pass", "verify_fail")


def evidence(case: Case, **overrides: Any) -> dict[str, Any]:
    """Valid on-site evidence for 核查: one photo and the case's own point (its grid's
    centroid when it has none)."""
    lat, lon = case.state.lat, case.state.lon
    if lat is None or lon is None:
        lat, lon = JURISDICTION.grid(case.state.grid).centroid
    return {"photos": [_photo()], "lat": lat, "lon": lon, **overrides}


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
    loader can find (the original of a duplicate). Returns the cases the service touched.
    A verification without a location (or photos) gets valid on-site evidence
    (:func:`evidence`); tests of the on-site rule give their own."""
    if verb in ON_SITE:
        filled = evidence(case)
        args = {**args, "photos": args.get("photos") or filled["photos"],
                "lat": args.get("lat", filled["lat"]), "lon": args.get("lon", filled["lon"])}
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


# --- valid arguments for any action, for the property tests --------------------------------

TEXTS = ("理由", "群众反映", "材料未到", "现场已处理")


def departments_over(grid: str) -> list[str]:
    """Every department whose node covers ``grid`` (at each command level)."""
    codes: list[str] = []
    for level in JURISDICTION.command_levels():
        node = JURISDICTION.command_node(grid, level)
        codes += [d.code for d in JURISDICTION.departments_at(node.code)]
    return codes


def valid_command(
    name: str,
    case: Case,
    role: str,
    now: datetime,
    data: Any,
    others: Sequence[Case] = (),
) -> tuple[dict[str, Any], datetime] | None:
    """Arguments (and the time) with which ``name`` must succeed whenever it is offered to
    ``role``; drawn with ``data`` (hypothesis ``st.data()``) so runs vary. None when no valid
    arguments exist (a duplicate with no other open case to merge into).

    What "valid" means is each schema plus the documented data rules: a dispatch that departs
    from the triage proposal gives ``override_reason``; an extension beyond the category's
    limit gives a reason; a suspension's review date is in the future; a duplicate names
    another open case the loader finds; the watcher marks the running deadline, and marks it
    overdue only once it has passed.
    """
    from hypothesis import strategies as st

    s = case.state
    text = data.draw(st.sampled_from(TEXTS))
    maybe_text = data.draw(st.sampled_from((None, *TEXTS)))
    match name:
        case "file" | "accept" | "close" | "resume":
            return {"note": maybe_text}, now
        case (
            "reject" | "return_case" | "refuse_extension" | "supervise"
            | "reopen" | "decline_reopen"
        ):
            return {"reason": text}, now
        case "verify_pass":
            return {"note": maybe_text, **evidence(case)}, now
        case "verify_fail":
            return {"note": text, **evidence(case)}, now
        case "report_result":
            photos = data.draw(st.sampled_from(([], [_photo()])))
            return {"note": text, "photos": photos}, now
        case "dispatch":
            proposed = s.proposal.get("department") or None
            department = data.draw(
                st.sampled_from([None, proposed] if proposed else departments_over(s.grid))
                | st.sampled_from(departments_over(s.grid))
            )
            priority = data.draw(st.sampled_from([None, "urgent", "important", "ordinary"]))
            proposed_priority = s.proposal.get("priority") or s.priority
            departs = (department not in (None, proposed)) or (
                (priority or s.priority) != proposed_priority
            )
            reason = text if departs or data.draw(st.booleans()) else None
            return {"department": department, "priority": priority, "override_reason": reason}, now
        case "request_extension":
            hours = data.draw(st.sampled_from([0.5, 2.0, 4.5, 24.0]))
            return {"hours": hours, "reason": text}, now
        case "approve_extension":
            limit = CATALOGUE.get(s.category).max_extensions
            return {"reason": text if s.extension_count >= limit else maybe_text}, now
        case "suspend":
            review = now + timedelta(hours=data.draw(st.integers(1, 24 * 60)))
            return {"reason": text, "review_at": review}, now
        case "escalate":
            return {"reason": text, "automatic": role == "system" and data.draw(st.booleans())}, now
        case "return_visit":
            satisfaction = data.draw(
                st.sampled_from(["satisfied", "basically_satisfied", "dissatisfied"])
            )
            return {"satisfaction": satisfaction, "comment": maybe_text}, now
        case "mark_duplicate":
            open_ones = [
                o for o in others
                if o.id != case.id and o.state.status not in TERMINAL
            ]
            if not open_ones:
                return None
            original = open_ones[data.draw(st.integers(0, len(open_ones) - 1))]
            return {
                "of_case_no": original.state.case_no,
                "of_case_id": str(original.id),
                "reason": maybe_text,
            }, now
        case "link_reporter":
            return {"reporter": {"name": "王五", "type": "citizen"}, "from_case_no": "GD-DUP",
                    "reason": maybe_text}, now
        case "mark_warning" | "mark_overdue":
            if s.due is None:  # nothing running: the mark is stale and records nothing
                return {"step": "handle", "due": now}, now
            when = max(now, s.due) if name == "mark_overdue" else now
            return {"step": s.due_step, "due": s.due}, when
    raise AssertionError(f"no valid arguments known for {name}")


def _photo() -> dict[str, Any]:
    return {"digest": "sha256:" + "5a" * 32, "size": 4096, "content_type": "image/jpeg",
            "name": "现场.jpg"}


def closed_case() -> Case:
    """A case reported at a precise fix and walked to closed, one step a minute — every
    kind of value an event stores (times, coordinates, a note, 核查 evidence) for the tests
    that decode stored events."""
    case = report(lat=26.58713789, lon=106.71347)
    steps = [("file", "dispatcher"), ("dispatch", "dispatcher"), ("accept", "handler"),
             ("report_result", "handler"), ("verify_pass", "inspector"), ("close", "dispatcher")]
    for when, (verb, role) in enumerate(steps, start=1):
        if verb == "report_result":
            run(case, verb, role, when, note="已处置")
        else:
            run(case, verb, role, when)
    return case
