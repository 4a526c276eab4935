"""Property test of the command handler on the real reference data (Guiyang, catalogue,
working calendar): random command sequences through ``CaseService``.

Invariants beyond the aggregate's own: escalation never goes above the top command level
(the city) and follows the tree one level at a time; deadlines move only on the events whose
registry entry says they start or stop a clock, a started clock is the category's limit for
the case's priority on the working-time calendar, extensions and resumptions never move a
deadline earlier, and replaying the events gives the same state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast
from uuid import uuid4

from hypothesis import event as hypothesis_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from aggregates import deadlines
from aggregates.actions import REGISTRY, offers
from aggregates.case import Case
from aggregates.errors import DomainError
from core.vocabulary import LIMITED_STEPS
from tests.unit.casekit import (
    CALENDAR,
    CATALOGUE,
    JURISDICTION,
    REF,
    T0,
    replay,
    report,
    run,
)

GRIDS = sorted(JURISDICTION.grids)
CATEGORIES = [c.code for c in CATALOGUE.all()]
LEVEL_RANK = {lvl: i for i, lvl in enumerate(JURISDICTION.command_levels())}
VERBS = sorted(n for n, s in REGISTRY.items() if s.public and not s.creates)
#: Event names by the clock effect their entry declares (keep / stop / start).
EFFECT = {spec.event.__name__: spec.deadline for spec in REGISTRY.values()}


def args_for(verb: str, case: Case, data: st.DataObject, now: datetime) -> dict[str, Any]:
    s = case.state
    match verb:
        case "file" | "accept" | "resume" | "close":
            return {}
        case (
            "reject" | "return_case" | "refuse_extension" | "supervise"
            | "reopen" | "decline_reopen"
        ):
            return {"reason": "理由"}
        case "dispatch":
            if data.draw(st.booleans()) or not s.proposal:
                return {}
            dept = data.draw(st.sampled_from(JURISDICTION.departments_at(s.district))).code
            return {"department": dept, "override_reason": "调度员判断"}
        case "request_extension":
            return {"hours": data.draw(st.sampled_from([1.0, 7.0, 21.0])), "reason": "需要时间"}
        case "approve_extension":
            return data.draw(st.sampled_from([{}, {"reason": "工程量大"}]))
        case "suspend":
            return {"reason": "需要预算", "review_at": (now + timedelta(days=30)).isoformat()}
        case "report_result":
            return {"note": "已处置"}
        case "verify_pass":
            return {"note": "通过"}
        case "verify_fail":
            return {"note": "未处置好"}
        case "escalate":
            return {"reason": "需要上级协调"}
        case "return_visit":
            return {
                "satisfaction": data.draw(
                    st.sampled_from(["satisfied", "basically_satisfied", "dissatisfied"])
                )
            }
        case "mark_duplicate":
            return {"of_case_no": "GD-NONE"}
    raise AssertionError(verb)


class ServiceMachine(RuleBasedStateMachine):
    @initialize(grid=st.sampled_from(GRIDS), category=st.sampled_from(CATEGORIES))
    def report(self, grid: str, category: str) -> None:
        self.now = T0
        self.counter = 0
        self.case = report(when=self.now, case_id=uuid4(), grid=grid, category=category,
                           description="问题")
        self.origin_level = self.case.state.level
        self.events = list(self.case.collect_events())

    @rule(verb=st.sampled_from(VERBS), minutes=st.integers(1, 3000), data=st.data())
    def command(self, verb: str, minutes: int, data: st.DataObject) -> None:
        # Mostly pick an action someone is offered now (and that someone), so runs get deep.
        pairs = [
            (role, name)
            for role, names in offers(self.case.state, REF).items()
            for name in names
            if name in VERBS and name != "mark_duplicate"
        ]
        if data.draw(st.integers(0, 9)) > 0:  # mostly stay out of the dead end (不予立案)
            pairs = [p for p in pairs if p[1] != "reject"] or pairs
        role = data.draw(st.sampled_from(sorted(REGISTRY[verb].roles)))
        if pairs and data.draw(st.integers(0, 9)) > 0:
            role, verb = data.draw(st.sampled_from(pairs))
        self.now += timedelta(minutes=minutes)
        before = self.case.state.copy()
        try:
            run(self.case, verb, role, self.now, actor="x",
                **args_for(verb, self.case, data, self.now))
        except DomainError:
            assert list(self.case.collect_events()) == []
            return
        new = list(self.case.collect_events())
        self.events.extend(new)
        state = self.case.state
        for event in new:
            name = type(event).__name__
            hypothesis_event(name)
            effect = EFFECT[name]
            if effect.effect == "keep":
                assert (state.due, state.due_step) == (before.due, before.due_step), name
            elif effect.effect == "stop":
                assert state.due is None and state.due_step is None, name
            elif effect.due is None and effect.step in LIMITED_STEPS:
                category = CATALOGUE.get(state.category)
                expected = deadlines.due_at(
                    category, cast(Any, state.priority), effect.step, self.now, CALENDAR
                )
                assert (state.due, state.due_step) == (expected, effect.step), name
            if name == "ExtensionApproved":
                assert before.due is not None and state.due is not None
                assert state.due > before.due
            if name == "Suspended":
                assert state.paused_due == before.due and state.due_step == "review"
            if name == "Resumed":
                assert state.due is not None and state.due_step == "handle"
                if before.paused_due is not None:
                    assert state.due >= before.paused_due
            if name == "Escalated":
                assert LEVEL_RANK[state.level] == LEVEL_RANK[before.level] + 1
                assert before.level != JURISDICTION.command_levels()[-1]
                assert state.node == JURISDICTION.command_node(state.grid, state.level).code

    @invariant()
    def never_above_the_city_nor_down(self) -> None:
        state = self.case.state
        assert state.level in LEVEL_RANK  # the top is the city: nothing above it exists
        assert LEVEL_RANK[state.level] >= LEVEL_RANK[self.origin_level]
        assert state.escalations <= LEVEL_RANK[state.level] - LEVEL_RANK[self.origin_level]

    @invariant()
    def extensions_beyond_the_limit_only_by_a_supervisor(self) -> None:
        limit = CATALOGUE.get(self.case.state.category).max_extensions
        for event in self.events:
            if type(event).__name__ == "ExtensionApproved":
                assert event.beyond_limit == (event.extension_number > limit)
                if event.beyond_limit:
                    assert event.role == "supervisor" and event.reason

    @invariant()
    def replay_is_identical(self) -> None:
        assert replay(self.events).snapshot_dict() == self.case.snapshot_dict()


ServiceMachine.TestCase.settings = settings(stateful_step_count=30)
TestService = ServiceMachine.TestCase
