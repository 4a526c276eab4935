"""The action registry's promises (issue 14): what is offered is what succeeds, and nothing a
caller sends is accepted and then dropped.

Why a property test: ``offered()`` — recorded as ``summary["offers"]`` in every event and served
by the API as ``allowed_actions`` — and ``Case.execute`` must agree in every state a case can
reach, for every role, guards included. Hypothesis builds random histories on the real Guiyang
reference data and, at each step, tries every action offered to a random role (on copies of
the cases, with valid arguments: each must succeed) and every public action not offered to it
(each must be refused as not permitted or not possible now, never for its arguments).
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timedelta
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from uuid import uuid4

import pytest
from hypothesis import event as hypothesis_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pydantic import ValidationError

from aggregates import deadlines
from aggregates.actions import PUBLIC_ACTIONS, REGISTRY, offered, offers
from aggregates.actions.closing import Reopened
from aggregates.actions.oversight import StepArgs
from aggregates.case import Case, verify_chain
from aggregates.commands import ARGS
from aggregates.errors import IllegalTransition, NotPermitted
from aggregates.events import CaseEvent, fold_summaries
from aggregates.registry import _flat, _scalar
from aggregates.state import json_view
from core.vocabulary import ROLES, Status
from tests.unit.casekit import (
    CALENDAR,
    CATALOGUE,
    JURISDICTION,
    REF,
    T0,
    at,
    replay,
    report,
    report_args,
    run,
    valid_command,
)

#: Common event fields an argument may be recorded in (see ``aggregates.events``).
COMMON = set(CaseEvent.__annotations__)
#: The watcher's marks record nothing when the deadline they saw is stale or already marked.
MAY_RECORD_NOTHING = {"mark_warning", "mark_overdue"}
DEAD_ENDS = {"reject", "mark_duplicate"}
NOISE = {"supervise", "link_reporter", "mark_warning", "mark_overdue", "escalate"}


# --- (a) every argument is recorded ------------------------------------------------------


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_argument_is_a_field_of_its_event(name: str) -> None:
    spec = REGISTRY[name]
    event_fields = {f.name for f in dataclasses.fields(spec.event)}
    for arg in spec.args.model_fields:
        assert arg in event_fields, f"{name}: argument {arg!r} is not recorded"
        if arg in COMMON:
            # Only two arguments land in common fields: a reason, and the deadline a watcher
            # saw (which must be the running one, recorded as the common ``due``).
            assert arg == "reason" or (arg == "due" and spec.args is StepArgs), (name, arg)
        else:
            assert arg in spec.event.__annotations__, f"{name}: {arg!r} not the event's own"


def _example(annotation: Any) -> Any:
    """A value of a flat argument's type (the non-None part of an optional one)."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        return _example(next(a for a in get_args(annotation) if a is not type(None)))
    return {str: "text", int: 3, float: 1.5, bool: True, datetime: T0}[annotation]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_the_cheap_dump_is_model_dump(name: str) -> None:
    """``Strict.dump`` skips pydantic's serializer for flat schemas: same dict, new object."""
    schema = REGISTRY[name].args
    if not _flat(schema):
        assert any(not _scalar(f.annotation) for f in schema.model_fields.values())
        return
    args = schema.model_construct(
        **{n: _example(f.annotation) for n, f in schema.model_fields.items()}
    )
    dumped = args.dump()
    assert dumped == args.model_dump() and dumped is not args.__dict__
    empty = schema.model_construct(
        **{n: None for n, f in schema.model_fields.items() if not f.is_required()}
    )
    assert empty.dump() == empty.model_dump()


def test_a_report_records_every_argument_as_given() -> None:
    args = report_args(
        client_time=at(-3).isoformat(),
        photos=[{"digest": "sha256:" + "0f" * 32, "size": 7, "content_type": "image/png",
                 "name": "p.png"}],
    )
    case = report(**args)
    (event,) = case.collect_events()
    for key, value in ARGS["report"].model_validate(args).model_dump().items():
        assert json_view(getattr(event, key)) == json_view(value), key


def test_the_watchers_due_is_the_recorded_common_due() -> None:
    case = report()
    file_due = case.state.due
    assert file_due is not None
    run(case, "mark_warning", "system", 5, step="file", due=file_due)
    event = case.collect_events()[-1]
    assert type(event).__name__ == "WarningMarked"
    assert event.due == file_due and event.due_step == "file" and event.step == "file"


# --- (b) notes on accept and resume ----------------------------------------------------------


def _in_progress() -> Case:
    case = report()
    run(case, "file", "dispatcher", 1)
    run(case, "dispatch", "dispatcher", 2)
    run(case, "accept", "handler", 3, note="马上到场")
    return case


def test_accept_records_its_note() -> None:
    case = _in_progress()
    accepted = case.collect_events()[-1]
    assert type(accepted).__name__ == "Accepted" and accepted.note == "马上到场"


def test_resume_records_its_note() -> None:
    case = _in_progress()
    run(case, "suspend", "handler", 4, reason="等预算", review_at=at(600))
    run(case, "resume", "shift_leader", 60, note="预算已批")
    resumed = case.collect_events()[-1]
    assert type(resumed).__name__ == "Resumed" and resumed.note == "预算已批"
    assert resumed.suspended_since == at(4)


def test_an_unknown_argument_is_refused_for_every_action() -> None:
    for name, schema in ARGS.items():
        with pytest.raises(ValidationError):
            schema.model_validate({"surely_not_a_field": 1})
        assert schema.model_config.get("extra") == "forbid", name


# --- (c) what is offered is what succeeds ------------------------------------------------


GRIDS = sorted(JURISDICTION.grids)
CATEGORIES = [c.code for c in CATALOGUE.all()]


class OfferedIsWhatSucceeds(RuleBasedStateMachine):
    """One or two cases of one district; each step checks the offers of a random role, then
    moves one case on with one of the actions offered to anybody."""

    def __init__(self) -> None:
        super().__init__()
        self.cases: list[Case] = []
        self.events: dict[Any, list[Any]] = {}
        self.now: datetime = T0

    @initialize(grid=st.sampled_from(GRIDS), two=st.booleans(), data=st.data())
    def report_cases(self, grid: str, two: bool, data: st.DataObject) -> None:
        district = JURISDICTION.partition_of(grid)
        neighbours = [g for g in GRIDS if JURISDICTION.partition_of(g) == district]
        for _ in range(2 if two else 1):
            case = report(
                role=data.draw(st.sampled_from(["inspector", "call_taker", "system"])),
                when=self.now,
                grid=data.draw(st.sampled_from(neighbours)),
                category=data.draw(st.sampled_from(CATEGORIES)),
                description=data.draw(st.sampled_from(["垃圾", "学校门口 大量 垃圾", "井盖"])),
            )
            self.cases.append(case)
            self.events[case.id] = list(case.collect_events())

    def _collect(self) -> None:
        for case in self.cases:
            self.events[case.id].extend(case.collect_events())

    @rule(minutes=st.integers(0, 600), data=st.data())
    def check_a_role_then_move_on(self, minutes: int, data: st.DataObject) -> None:
        self.now += timedelta(minutes=minutes)
        index = data.draw(st.integers(0, len(self.cases) - 1))
        role = data.draw(st.sampled_from([*ROLES, "stranger"]))
        self._offered_succeed(index, role, data)
        self._not_offered_refused(index, role, data)
        self._move_on(data)

    def _offered_succeed(self, index: int, role: str, data: st.DataObject) -> None:
        case = self.cases[index]
        names = offered(case.state, role, REF)
        assert names == fold_summaries(self.events[case.id])["offers"].get(role, [])
        for name in names:
            made = valid_command(name, case, role, self.now, data, self.cases)
            if made is None:
                hypothesis_event(f"no valid arguments for offered {name}")
                continue
            args, when = made
            twins = copy.deepcopy(self.cases)
            twin = twins[index]
            version = twin.version
            run(twin, name, role, when, others=twins, **args)  # must not raise
            recorded = twin.version - version
            assert recorded == 1 or (recorded == 0 and name in MAY_RECORD_NOTHING), name

    def _not_offered_refused(self, index: int, role: str, data: st.DataObject) -> None:
        case = self.cases[index]
        names = offered(case.state, role, REF)
        for name in PUBLIC_ACTIONS:
            if name in names:
                continue
            made = valid_command(name, case, role, self.now, data, self.cases)
            args, when = made if made else (
                {"of_case_no": "GD-NONE", "of_case_id": str(uuid4())}, self.now
            )
            version = case.version
            with pytest.raises((NotPermitted, IllegalTransition)) as refused:
                run(case, name, role, when, others=self.cases, **args)
            if role in REGISTRY[name].roles:
                assert isinstance(refused.value, IllegalTransition), name
                assert refused.value.allowed == names
            else:
                assert isinstance(refused.value, NotPermitted), name
            assert case.version == version

    def _move_on(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.cases) - 1))
        case = self.cases[index]
        pairs = [(r, n) for r, ns in fold_summaries(self.events[case.id])["offers"].items()
                 for n in ns]
        if data.draw(st.integers(0, 9)) > 0:  # mostly stay out of the dead ends
            pairs = [p for p in pairs if p[1] not in DEAD_ENDS] or pairs
        if data.draw(st.integers(0, 2)) > 0:  # mostly move the case along its loop
            pairs = [p for p in pairs if p[1] not in NOISE] or pairs
        if not pairs:
            return
        role, name = data.draw(st.sampled_from(pairs))
        made = valid_command(name, case, role, self.now, data, self.cases)
        if made is None:
            return
        args, when = made
        before = case.state.copy()
        version = case.version
        touched = run(case, name, role, when, others=self.cases, **args)
        self.now = max(self.now, when)
        if case.version == version:
            assert name in MAY_RECORD_NOTHING
            return
        hypothesis_event(f"{name} → {case.state.status.value}")
        event = case.collect_events()[-1]
        self.events[case.id].append(event)
        self._collect()
        spec = REGISTRY[name]
        assert type(event) is spec.event
        assert event.from_status == before.status.value
        assert Status(event.to_status) is spec.moves[before.status] is case.state.status
        assert (event.actor, event.role, event.timestamp) == (f"{role}-1", role, when)
        # Nothing accepted and dropped: every argument given is recorded as given.
        for key, value in ARGS[name].model_validate(args).model_dump().items():
            if value is not None:
                assert json_view(getattr(event, key)) == json_view(value), (name, key)
        if spec.deadline.effect == "stop":
            assert event.due is None and event.due_step is None
        elif spec.deadline.effect == "keep":
            assert (event.due, event.due_step) == (before.due, before.due_step)
        elif spec.deadline.step is not None:
            assert event.due_step == spec.deadline.step and event.due is not None
        if name == "mark_duplicate":
            assert len(touched) == 2
        if name in ("reopen", "decline_reopen"):
            assert before.satisfaction == "dissatisfied" and role == "shift_leader"

    @invariant()
    def events_record_the_state_after_them(self) -> None:
        for case in self.cases:
            last = self.events[case.id][-1]
            # The summaries, folded in order, are the state's read-model fields and offers.
            assert fold_summaries(self.events[case.id]) == {
                **case.state.summary(), "offers": offers(case.state, REF)
            }
            assert {"warned", "overdue"} <= set(last.summary)
            assert (last.due, last.to_status) == (case.state.due, case.state.status.value)
            assert last.due_step == case.state.due_step
            # The yellow moment recorded with the running deadline is the policy's own
            # (``deadlines.warning_at`` from when it started), whichever action kept it.
            state = case.state
            if state.due is None or state.due_step == "review":
                assert last.due_warn is None
            else:
                assert state.due_since is not None
                clock = REF.catalogue.get(state.category).clock
                assert last.due_warn == deadlines.warning_at(
                    state.due_since, state.due, clock, REF.calendar)

    @invariant()
    def replay_gives_the_same_snapshot(self) -> None:
        for case in self.cases:
            events = self.events[case.id]
            assert case.version == len(events)
            assert replay(events).snapshot_dict() == case.snapshot_dict()
            assert verify_chain(events) is None


OfferedIsWhatSucceeds.TestCase.settings = settings(stateful_step_count=25)
TestOfferedIsWhatSucceeds = OfferedIsWhatSucceeds.TestCase


# --- (d) 重办 reopen ---------------------------------------------------------------------------


def _closed_and_visited(satisfaction: str | None) -> Case:
    case = _in_progress()
    run(case, "report_result", "handler", 10, note="已清运")
    run(case, "verify_pass", "inspector", 20)
    run(case, "close", "dispatcher", 30)
    if satisfaction is not None:
        run(case, "return_visit", "call_taker", 40, satisfaction=satisfaction)
    return case


def test_reopen_after_a_dissatisfied_visit_goes_back_to_dispatch() -> None:
    case = _closed_and_visited("dissatisfied")
    history = case.collect_events()
    summary = fold_summaries(history)
    assert summary["offers"] == {"shift_leader": ["reopen", "decline_reopen"]}
    assert history[-1].summary["offers"] == summary["offers"]  # the visit changed them
    with pytest.raises(NotPermitted):
        run(case, "reopen", "dispatcher", 50, reason="不满意")
    with pytest.raises(ValidationError):
        run(case, "reopen", "shift_leader", 50, reason=" ")
    run(case, "reopen", "shift_leader", 50, reason="群众不满意, 重办")
    history += case.collect_events()
    event = history[-1]
    assert isinstance(event, Reopened)
    assert (event.from_status, event.to_status) == ("closed", "filed")
    assert event.reason == "群众不满意, 重办" and event.satisfaction == "dissatisfied"
    category = CATALOGUE.get(case.state.category)
    expected = deadlines.due_at(category, "ordinary", "dispatch", at(50), CALENDAR)
    assert (event.due, event.due_step) == (expected, "dispatch")
    s = case.state
    assert s.status is Status.filed and s.department is None
    assert s.closed_at is None and s.finished_at is None
    assert s.satisfaction is None and s.return_visited_at is None
    assert "dispatch" in offered(s, "dispatcher", REF)
    # ... and the loop runs again: dispatch, handle, verify, close, a new return visit.
    run(case, "dispatch", "dispatcher", 60)
    assert case.state.dispatch_count == 2 and case.state.department is not None
    run(case, "accept", "handler", 61)
    run(case, "report_result", "handler", 70, note="再次清运")
    run(case, "verify_pass", "inspector", 80)
    run(case, "close", "shift_leader", 90)
    assert case.state.status is Status.closed and case.state.closed_at == at(90)
    run(case, "return_visit", "call_taker", 100, satisfaction="satisfied")
    assert case.state.satisfaction == "satisfied"
    assert offers(case.state, REF) == {}
    with pytest.raises(IllegalTransition) as again:
        run(case, "reopen", "shift_leader", 110, reason="再次重办")
    assert again.value.why == "only after a dissatisfied return visit"
    history += case.collect_events()
    assert [type(e).__name__ for e in history].count("ReturnVisited") == 2
    assert verify_chain(history) is None
    assert replay(history).snapshot_dict() == case.snapshot_dict()


@pytest.mark.parametrize("satisfaction", ["satisfied", "basically_satisfied", None])
def test_reopen_is_not_offered_unless_the_visit_was_dissatisfied(
    satisfaction: str | None,
) -> None:
    case = _closed_and_visited(satisfaction)
    for role in ROLES:
        assert "reopen" not in offered(case.state, role, REF)
    with pytest.raises(IllegalTransition):
        run(case, "reopen", "shift_leader", 50, reason="想重办")
    assert case.state.status is Status.closed
