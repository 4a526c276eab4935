"""A generated history of cases made by the real domain: ``CaseService`` executing commands on
real ``Case`` aggregates (the same code the workers run), turned into the envelopes the relay
publishes. Used by the metrics tests (≥ 2,000 cases) and to fill the browser tests' screens.

Each case takes a random path through the closed loop — rejected, merged as a duplicate, left
waiting at any step, returned and re-dispatched (sometimes to another department), extended,
suspended, escalated, supervised, reworked, closed, return-visited — with yellow and red
lights raised the way the SLA watcher raises them when a step runs past its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aggregates.case import Case
from aggregates.commands import Command
from aggregates.errors import DomainError
from aggregates.service import CaseService
from benchmarks.common import ON_SITE, on_site_args
from core import codec
from core.envelope import to_envelope
from core.ids import case_no_for_id
from core.refdata import Reference
from core.vocabulary import LIMITED_STEPS

SATISFACTION = ("satisfied", "basically_satisfied", "dissatisfied")


class History:
    """Generates cases; ``envelopes()`` gives every event as a JSON-round-tripped envelope,
    in per-partition order with positions 1, 2, 3 …"""

    def __init__(self, ref: Reference, seed: int = 12319) -> None:
        self.ref = ref
        self.j = ref.jurisdiction
        self.svc = CaseService(ref.catalogue, ref.jurisdiction, ref.calendar)
        self.rng = random.Random(seed)
        self.cases: dict[uuid.UUID, Case] = {}
        self.partition: dict[uuid.UUID, str] = {}
        self.emitted: list[tuple[str, Any]] = []
        self.parked: dict[str, list[uuid.UUID]] = defaultdict(list)  # open, per district
        self.refused = 0

    # ------------------------------------------------------------------ plumbing
    def act(
        self, case: Case | None, verb: str, role: str, actor: str, at: datetime,
        case_id: uuid.UUID | None = None, partition: str | None = None, **args: Any,
    ) -> Case | None:
        cid = case.id if case is not None else case_id
        assert cid is not None
        part = self.partition.get(cid) or partition
        assert part is not None
        if case is not None:
            at = max(at, case.modified_on)
        cmd = Command(
            command_id=uuid.UUID(int=self.rng.getrandbits(128)).hex,
            verb=verb,  # type: ignore[arg-type]
            case_id=str(cid),
            case_no=case.state.case_no if case is not None else case_no_for_id(cid),
            partition=part,
            actor=actor,
            role=role,
            channel="web",
            at=at,
            args=args,
        )
        try:
            touched = self.svc.execute(cmd, case, self.cases.get)
        except DomainError:
            self.refused += 1
            return case
        for c in touched:
            self.cases[c.id] = c
            self.partition.setdefault(c.id, part)
            for event in c.collect_events():
                self.emitted.append((self.partition[c.id], event))
        return self.cases[cid]

    def lights(self, case: Case, until: datetime) -> None:
        """What the SLA watcher does before ``until``: yellow near the deadline, red past it."""
        if case.state.due is None or case.state.due_step not in LIMITED_STEPS:
            return
        due, step = case.state.due, case.state.due_step
        warn_at = due - timedelta(minutes=10)
        if warn_at < until and warn_at >= case.modified_on and not case.state.warned:
            self.act(case, "mark_warning", "system", "sla-watcher", warn_at, step=step, due=due)
        over_at = max(due + timedelta(minutes=1), case.modified_on)
        if over_at < until and not case.state.overdue and self.rng.random() < 0.9:
            self.act(case, "mark_overdue", "system", "sla-watcher", over_at, step=step, due=due)

    def step(self, case: Case, verb: str, role: str, actor: str, after: timedelta,
             **args: Any) -> tuple[Case, datetime]:
        at = case.modified_on + after
        self.lights(case, at)
        if verb in ON_SITE:
            args = {**on_site_args(case.state, self.j), **args}
        result = self.act(case, verb, role, actor, at, **args)
        assert result is not None
        return result, at

    def minutes(self, lo: float, hi: float) -> timedelta:
        return timedelta(minutes=self.rng.uniform(lo, hi))

    # ------------------------------------------------------------------ a case's life
    def generate(self, count: int, start: datetime, days: int) -> None:
        grids = sorted(self.j.grids)
        categories = self.ref.catalogue.all()
        for n in range(count):
            grid = self.j.grid(self.rng.choice(grids))
            category = self.rng.choice(categories)
            day = self.rng.randrange(days)
            at = start + timedelta(days=day, hours=self.rng.uniform(0, 24))
            self.one_case(n, grid, category, at)

    def one_case(self, n: int, grid: Any, category: Any, at: datetime) -> None:
        rng = self.rng
        district = self.j.partition_of(grid.code)
        case_id = uuid.uuid5(uuid.NAMESPACE_URL, f"history-{n}")
        by_inspector = rng.random() < 0.7
        reporter = (
            {"type": "inspector", "id": grid.team.inspector}
            if by_inspector
            else {"type": "citizen", "name": "市民", "phone": "13800000000"}
        )
        case = self.act(
            None, "report", "inspector" if by_inspector else "call_taker",
            grid.team.inspector if by_inspector else "calltaker", at,
            case_id=case_id, partition=district,
            category=category.code, grid=grid.code, community=grid.parent, district=district,
            description=f"{category.name_zh} #{n}", reporter=reporter,
            source="inspector_app" if by_inspector else "hotline",
        )
        assert case is not None
        disp = "dispatcher"  # the demo users: the pages name them
        r = rng.random()
        if r < 0.08:
            self.step(case, "reject", "dispatcher", disp, self.minutes(5, 200),
                      reason="不符合立案条件")
            return
        if r < 0.14 and self.parked[district]:
            original = self.cases[rng.choice(self.parked[district])]
            if original.state.status.value not in ("rejected", "merged", "closed"):
                when = max(case.modified_on, original.modified_on) + self.minutes(1, 30)
                self.act(case, "mark_duplicate", "dispatcher", disp, when,
                         of_case_no=original.state.case_no, of_case_id=str(original.id))
                return
        if r < 0.18:
            self.park(case, district)
            return
        case, _ = self.step(case, "file", "dispatcher", disp, self.minutes(5, 150))
        reworks = 0
        while True:
            if rng.random() < 0.05:
                self.park(case, district)
                return
            if rng.random() < 0.04:
                case = self.escalate_or_supervise(case, disp)
            case = self.dispatch(case, disp)
            handler = f"handler-{case.state.department}"
            if rng.random() < 0.03:
                self.park(case, district)
                return
            if rng.random() < 0.12:
                case, _ = self.step(case, "return_case", "handler", handler,
                                    self.minutes(10, 600), reason="非本部门职责")
                case = self.dispatch(case, disp, other=rng.random() < 0.6)
                handler = f"handler-{case.state.department}"
            case, _ = self.step(case, "accept", "handler", handler, self.minutes(5, 120))
            if rng.random() < 0.1:
                case, _ = self.step(case, "request_extension", "handler", handler,
                                    self.minutes(30, 600), hours=8, reason="需要采购材料")
                verb = "approve_extension" if rng.random() < 0.7 else "refuse_extension"
                # A supervisor with a reason may approve beyond the category's limit.
                case, _ = self.step(case, verb, "supervisor", "supervisor",
                                    self.minutes(5, 120), reason="同意延期 / 时限足够")
            if rng.random() < 0.05:
                review = case.modified_on + timedelta(days=3)
                case, _ = self.step(case, "suspend", "handler", handler, self.minutes(30, 300),
                                    reason="需要预算", review_at=review)
                case, _ = self.step(case, "resume", "handler", handler, timedelta(days=1))
            if rng.random() < 0.05:
                case = self.escalate_or_supervise(case, disp, escalate=False)
            if rng.random() < 0.04:
                self.park(case, district)
                return
            hours = rng.choice((0.5, 2, 6, 20, 50, 120))
            case, _ = self.step(case, "report_result", "handler", handler,
                                timedelta(hours=rng.uniform(0.1, 1) * hours), note="已处置完毕")
            inspector = self.j.grid(case.state.grid).team.inspector
            if rng.random() < 0.03:
                self.park(case, district)
                return
            if reworks < 2 and rng.random() < 0.15:
                reworks += 1
                case, _ = self.step(case, "verify_fail", "inspector", inspector,
                                    self.minutes(30, 900), note="现场未整改到位")
                case, _ = self.step(case, "accept", "handler", handler, self.minutes(5, 60))
                case, _ = self.step(case, "report_result", "handler", handler,
                                    self.minutes(60, 3000), note="已返工")
            case, _ = self.step(case, "verify_pass", "inspector", inspector,
                                self.minutes(30, 900), note="核查通过")
            if case.state.status.value == "verified":
                break
            if case.state.status.value == "awaiting_verification":
                continue
        case, _ = self.step(case, "close", "dispatcher", disp, self.minutes(5, 300))
        if case.state.reporter.get("type") == "citizen" and rng.random() < 0.8:
            self.step(case, "return_visit", "call_taker", "calltaker", self.minutes(60, 2000),
                      satisfaction=rng.choices(SATISFACTION, (6, 3, 1))[0])

    def park(self, case: Case, district: str) -> None:
        """Leave the case open where it is (and make it a candidate original for merges)."""
        if self.rng.random() < 0.3:
            self.step(case, "supervise", "supervisor", "supervisor", self.minutes(10, 3000),
                      reason="群众反映强烈")
        self.lights(case, case.modified_on + timedelta(days=self.rng.uniform(0, 6)))
        self.parked[district].append(case.id)

    def dispatch(self, case: Case, disp: str, other: bool = False) -> Case:
        if other:
            node = case.state.node or self.j.partition_of(case.state.grid)
            proposed = (case.state.proposal or {}).get("department")
            choices = [d.code for d in self.j.departments.values()
                       if d.code != proposed and self.j.contains(d.node, case.state.grid)]
            if choices:
                case, _ = self.step(case, "dispatch", "dispatcher", disp, self.minutes(5, 90),
                                    department=self.rng.choice(sorted(choices)),
                                    override_reason=f"改派 ({node})")
                return case
        if self.rng.random() < 0.08:
            priority = self.rng.choice(("urgent", "important"))
            case, _ = self.step(case, "dispatch", "dispatcher", disp, self.minutes(5, 90),
                                priority=priority, override_reason="群众反映强烈, 提高优先级")
            return case
        proposed_priority = (case.state.proposal or {}).get("priority")
        extra = {} if proposed_priority in (None, case.state.priority) else {
            "override_reason": "沿用已调整的优先级"
        }
        case, _ = self.step(case, "dispatch", "dispatcher", disp, self.minutes(2, 90), **extra)
        return case

    def escalate_or_supervise(self, case: Case, disp: str, escalate: bool = True) -> Case:
        if escalate and case.state.level != "city":
            case, _ = self.step(case, "escalate", "dispatcher", disp, self.minutes(5, 120),
                                reason="跨区域, 需上级协调")
        else:
            case, _ = self.step(case, "supervise", "supervisor", "supervisor",
                                self.minutes(5, 600), reason="处置缓慢")
        return case

    # ------------------------------------------------------------------ output
    def truncate(self, now: datetime) -> None:
        """Forget everything after ``now`` (each case keeps the prefix of its history that
        had happened by then), so a history ending "today" has no events from the future."""
        cut: set[Any] = set()
        kept = []
        for partition, event in self.emitted:
            case_id = event.originator_id
            if case_id in cut or event.timestamp > now:
                cut.add(case_id)
                continue
            kept.append((partition, event))
        self.emitted = kept

    def envelopes(self) -> list[dict[str, Any]]:
        """Every event as the relay would publish it (JSON round trip included)."""
        positions: dict[str, int] = defaultdict(int)
        out = []
        for partition, event in self.emitted:
            positions[partition] += 1
            env = to_envelope(partition, positions[partition], event)
            out.append(codec.loads(codec.dumps(env)))
        return out


def save(history: History, stores: Any, chunk: int = 500) -> int:
    """Write the generated events into the partitions' event stores (blocking: run it in a
    thread). The relay then publishes them and every projection applies them like any other
    events — a quick way to give a running system a realistic past."""
    by_partition: dict[str, list[Any]] = defaultdict(list)
    for partition, event in history.emitted:
        by_partition[partition].append(event)
    for partition, events in by_partition.items():
        store = stores.get(partition)
        for i in range(0, len(events), chunk):
            store.events.put(events[i: i + chunk])
    return len(history.emitted)


def start_of_history() -> datetime:
    return datetime(2026, 10, 5, 1, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def generated_store(cases: int, seed: int) -> AsyncIterator[dict[str, Any]]:
    """A fresh schema whose partitions' event stores hold ``cases`` generated cases:
    ``{"schema", "stores", "ref", "conn" (asyncpg, JSON codecs), "events" (count)}``; the
    schema is dropped afterwards."""
    import asyncpg

    from core.db import _init_connection
    from core.eventstore import StoreRegistry
    from core.refdata import load_reference
    from tests.conftest import database_url, make_settings

    settings = make_settings()
    schema = settings.db_schema
    ref = load_reference(settings)
    conn = await asyncpg.connect(database_url())
    await _init_connection(conn)
    await conn.execute(f"CREATE SCHEMA {schema}")
    stores = StoreRegistry(database_url(), schema)
    history = History(ref, seed=seed)
    history.generate(cases, start_of_history(), 20)
    events = await asyncio.to_thread(save, history, stores)
    try:
        yield {"schema": schema, "stores": stores, "ref": ref, "conn": conn, "events": events}
    finally:
        stores.close()
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
