"""Property test of the command handler on the real reference data (Guiyang, catalogue,
working calendar): random command sequences through ``CaseService``.

Invariants beyond the aggregate's own: escalation never goes above the top command level
(the city) and follows the tree one level at a time; deadlines move only on the events that
the rules say move them, extensions and resumptions never move them earlier, and replaying
the events gives the same state.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from aggregates.case import Case
from aggregates.commands import Command
from aggregates.errors import DomainError
from aggregates.service import CaseService
from aggregates.states import ROLE_ACTIONS, Action
from core.calendar import WorkCalendar
from core.catalogue import Catalogue
from core.ids import case_no_for_id
from core.jurisdiction import Jurisdiction

ROOT = Path(__file__).resolve().parents[2]
JURISDICTION = Jurisdiction.load(ROOT / "deploy" / "cities" / "guiyang")
CATALOGUE = Catalogue.load(ROOT / "deploy" / "categories.v1.json")
SERVICE = CaseService(CATALOGUE, JURISDICTION, WorkCalendar())
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
GRIDS = sorted(JURISDICTION.grids)
CATEGORIES = [c.code for c in CATALOGUE.all()]
LEVEL_RANK = {lvl: i for i, lvl in enumerate(JURISDICTION.command_levels())}

# Events allowed to change the running deadline (mirrors the aggregate's _set_due calls).
MOVES_DEADLINE = {
    "Filed",
    "Rejected",
    "MarkedDuplicate",
    "Dispatched",
    "Returned",
    "ExtensionApproved",
    "Suspended",
    "Resumed",
    "ResultReported",
    "VerificationPassed",
    "VerificationFailed",
    "Escalated",
    "Closed",
}
VERBS = sorted(a.value for a in Action if a not in (Action.report, Action.link_reporter))


def role_for(verb: str) -> str:
    for role in (
        "dispatcher",
        "handler",
        "inspector",
        "shift_leader",
        "supervisor",
        "call_taker",
        "system",
    ):
        if Action(verb) in ROLE_ACTIONS[role]:
            return role
    return "system"


def args_for(verb: str, case: Case, data: st.DataObject, now: datetime) -> dict[str, Any]:
    match verb:
        case "file" | "accept" | "resume" | "close":
            return {}
        case "reject" | "return_case" | "refuse_extension" | "supervise":
            return {"reason": "理由"}
        case "dispatch":
            if data.draw(st.booleans()) or not case.proposal:
                return {}
            district = JURISDICTION.partition_of(case.grid)
            dept = data.draw(st.sampled_from(JURISDICTION.departments_at(district))).code
            return {"department": dept, "override_reason": "調度員判斷"}
        case "request_extension":
            return {"hours": data.draw(st.sampled_from([1.0, 7.0, 21.0])), "reason": "需要時間"}
        case "approve_extension":
            return {}
        case "suspend":
            return {"reason": "需要預算", "review_at": (now + timedelta(days=30)).isoformat()}
        case "report_result":
            return {"note": "已處置"}
        case "verify_pass":
            return {"note": "通過"}
        case "verify_fail":
            return {"note": "未處置好"}
        case "escalate":
            return {"reason": "需要上級協調"}
        case "return_visit":
            return {
                "satisfaction": data.draw(
                    st.sampled_from(["satisfied", "basically_satisfied", "dissatisfied"])
                )
            }
        case "mark_warning" | "mark_overdue":
            due = case.due or now
            return {"step": case.due_step or "handle", "due": due.isoformat()}
        case "mark_duplicate":
            return {"of_case_no": "GD-NONE"}
    raise AssertionError(verb)


class ServiceMachine(RuleBasedStateMachine):
    @initialize(grid=st.sampled_from(GRIDS), category=st.sampled_from(CATEGORIES))
    def report(self, grid: str, category: str) -> None:
        self.now = T0
        self.counter = 0
        case_id = uuid4()
        g = JURISDICTION.grid(grid)
        cmd = Command(
            command_id="c-0",
            verb="report",
            case_id=str(case_id),
            case_no=case_no_for_id(case_id),
            partition=JURISDICTION.partition_of(grid),
            actor="insp",
            role="inspector",
            channel="test",
            at=self.now,
            args={
                "category": category,
                "grid": grid,
                "community": g.parent,
                "district": JURISDICTION.partition_of(grid),
                "description": "問題",
                "reporter": {"type": "inspector"},
            },
        )
        (self.case,) = SERVICE.execute(cmd, None, lambda _id: None)
        self.origin_level = self.case.level
        self.events = list(self.case.collect_events())

    @rule(verb=st.sampled_from(VERBS), minutes=st.integers(1, 3000), data=st.data())
    def command(self, verb: str, minutes: int, data: st.DataObject) -> None:
        # Mostly pick an action the case allows now, so runs get deep.
        allowed = [
            a.value
            for a in self.case.available_actions()
            if a.value in VERBS and a.value != "mark_duplicate"
        ]
        if allowed and data.draw(st.integers(0, 4)) > 0:
            verb = data.draw(st.sampled_from(allowed))
        self.now += timedelta(minutes=minutes)
        self.counter += 1
        before_due, before_level = self.case.due, self.case.level
        cmd = Command(
            command_id=f"c-{self.counter}",
            verb=verb,
            case_id=str(self.case.id),  # type: ignore[arg-type]
            case_no=self.case.case_no,
            partition=self.case.district,
            actor="x",
            role=role_for(verb),
            channel="test",
            at=self.now,
            args=args_for(verb, self.case, data, self.now),
        )
        try:
            SERVICE.execute(cmd, self.case, lambda _id: None)
        except DomainError:
            assert list(self.case.collect_events()) == []
            return
        new = list(self.case.collect_events())
        self.events.extend(new)
        for event in new:
            name = type(event).__name__
            if name not in MOVES_DEADLINE:
                assert self.case.due == before_due, name
            if name == "ExtensionApproved":
                assert before_due is not None and self.case.due is not None
                assert self.case.due > before_due
            if name == "Escalated":
                assert LEVEL_RANK[self.case.level] == LEVEL_RANK[before_level] + 1
                assert before_level != JURISDICTION.command_levels()[-1]
                assert (
                    self.case.node
                    == JURISDICTION.command_node(self.case.grid, self.case.level).code
                )

    @invariant()
    def never_above_the_city_nor_down(self) -> None:
        assert self.case.level in LEVEL_RANK  # the top is the city: nothing above it exists
        assert LEVEL_RANK[self.case.level] >= LEVEL_RANK[self.origin_level]
        assert self.case.escalations <= LEVEL_RANK[self.case.level] - LEVEL_RANK[self.origin_level]

    @invariant()
    def replay_is_identical(self) -> None:
        replayed: Case | None = None
        for event in self.events:
            replayed = event.mutate(replayed)
        assert replayed is not None
        assert replayed.snapshot_dict() == self.case.snapshot_dict()


ServiceMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestService = ServiceMachine.TestCase
