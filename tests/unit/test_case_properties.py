"""Property tests: random command sequences with random roles against one `Case`.

Why: the example tests show each rule once; here hypothesis throws arbitrary orders, roles,
redelivered command ids and half-valid arguments at the aggregate and checks that the rules
table is the only thing deciding (an accepted action was allowed before it, refused commands
change nothing), that counters never go negative, that the hash chain (哈希鏈) always links,
and that replaying the events - in memory and through eventsourcing's POPO store - gives the
identical state.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from hypothesis import HealthCheck, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from aggregates.case import SATISFACTION, Case, recompute_hash, verify_chain
from aggregates.errors import IllegalTransition, InvalidCommand, NotPermitted
from aggregates.integrity import GENESIS
from aggregates.states import (
    ROLES,
    TERMINAL,
    TRANSITIONS,
    Action,
    Status,
    allowed_actions,
    next_status,
    role_may,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=CST)
COMMAND_ACTIONS: list[Action] = [a for a in Action if a is not Action.report]
ORDER = {a: i for i, a in enumerate(COMMAND_ACTIONS)}
DEAD_ENDS = frozenset({Action.reject, Action.mark_duplicate})
FORWARD = frozenset(
    {
        Action.file,
        Action.dispatch,
        Action.accept,
        Action.report_result,
        Action.verify_pass,
        Action.verify_fail,
        Action.close,
        Action.return_visit,
        Action.resume,
        Action.approve_extension,
    }
)
COUNTERS = (
    "extension_count",
    "rework_count",
    "return_count",
    "dispatch_count",
    "escalations",
    "supervision_orders",
    "wrong_dispatches",
    "suspension_count",
    "overdue_count",
)

# Mostly valid, so runs get deep; sometimes missing / blank to exercise InvalidCommand.
reasons = st.sampled_from(["有理由", "有理由", "有理由", None, "", "  "])
departments = st.sampled_from(["sanitation", "roads", "greening"])
priorities = st.sampled_from(["ordinary", "urgent"])
levels = st.sampled_from([None, "community", "district", "city"])
offsets = st.integers(min_value=-120, max_value=3000)  # minutes relative to the command time
steps = st.sampled_from(["file", "dispatch", "handle", "review", "verify", "close"])


def _args(action: Action, case: Case, data: st.DataObject, now: datetime) -> dict[str, Any]:
    """Arguments for `action`: sometimes valid, sometimes missing reason / bad values."""

    def when() -> datetime:
        return now + timedelta(minutes=data.draw(offsets))

    match action:
        case Action.file:
            return {"note": data.draw(reasons), "dispatch_due": when()}
        case Action.reject | Action.supervise | Action.return_case | Action.refuse_extension:
            return {"reason": data.draw(reasons)}
        case Action.mark_duplicate:
            return {"of_case_no": "GY-ORIGINAL", "of_case_id": UUID(int=99)}
        case Action.link_reporter:
            return {"reporter": {"name": "王五", "type": "citizen"}, "from_case_no": "GY-DUP"}
        case Action.dispatch:
            return {
                "department": data.draw(departments),
                "level": "community",
                "node": "C01",
                "priority": data.draw(priorities),
                "handle_due": when(),
                "override_reason": data.draw(reasons),
            }
        case Action.accept:
            return {}
        case Action.request_extension:
            return {
                "hours": data.draw(st.sampled_from([-1, 0, 2, 4.5])),
                "reason": data.draw(reasons),
            }
        case Action.approve_extension:
            return {
                "new_due": when(),
                "reason": data.draw(reasons),
                "max_extensions": data.draw(st.integers(0, 2)),
            }
        case Action.suspend:
            return {"reason": data.draw(reasons), "review_at": when()}
        case Action.resume:
            return {"new_due": when()}
        case Action.report_result:
            return {"note": data.draw(st.sampled_from(["", "已處置", "已處置"])), "photos": []}
        case Action.verify_pass:
            return {"note": data.draw(reasons), "photos": [], "close_due": None}
        case Action.verify_fail:
            return {
                "note": data.draw(st.sampled_from(["", "未處置好", "未處置好"])),
                "photos": [],
                "new_due": when(),
            }
        case Action.escalate:
            return {
                "to_level": data.draw(levels),
                "to_node": "N",
                "reason": data.draw(reasons),
                "automatic": data.draw(st.booleans()),
                "proposal": data.draw(
                    st.sampled_from([None, {"department": "roads", "priority": "ordinary"}])
                ),
                "dispatch_due": when(),
            }
        case Action.close:
            return {"note": data.draw(reasons)}
        case Action.return_visit:
            return {
                "satisfaction": data.draw(st.sampled_from([*SATISFACTION, "meh"])),
                "comment": None,
            }
        case Action.mark_warning | Action.mark_overdue:
            step = data.draw(st.sampled_from([case.due_step or "handle", "handle"]) | steps)
            return {"step": step, "due": data.draw(st.sampled_from([None, case.due]))}
    raise AssertionError(action)  # pragma: no cover


def _replay(events: list[Any]) -> Case:
    case: Case | None = None
    for event in events:
        case = event.mutate(case)
    assert case is not None
    return case


class CaseMachine(RuleBasedStateMachine):
    """One case per run; every rule is one command with a random role and arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.case: Case
        self.events: list[Any] = []
        self.minutes = 0
        self.used_ids: list[str] = []
        self.counter = 0

    @initialize(
        role=st.sampled_from(["inspector", "call_taker", "system"]),
        priority=priorities,
    )
    def report(self, role: str, priority: str) -> None:
        self.case = Case.report(
            case_id=UUID(int=1),
            case_no="GY-1",
            category="exposed_garbage",
            kind="event",
            grid="G1",
            community="C01",
            district="D01",
            description="垃圾",
            reporter={"name": "李四", "type": "inspector"},
            source="inspector_app",
            priority=priority,
            level="community",
            proposal={"department": "sanitation", "priority": "ordinary", "node": "C01"},
            file_due=T0 + timedelta(minutes=30),
            actor="u0",
            role=role,
            channel="app",
            at=T0,
            command_id="cmd-0",
        )
        self.used_ids.append("cmd-0")
        self.events.extend(self.case.collect_events())

    @rule(
        action=st.sampled_from(COMMAND_ACTIONS),
        role=st.sampled_from([*ROLES, "stranger"]),
        guided=st.integers(0, 3).map(bool),
        advance=st.integers(min_value=0, max_value=600),
        redeliver=st.booleans(),
        data=st.data(),
    )
    def command(
        self,
        action: Action,
        role: str,
        guided: bool,
        advance: int,
        redeliver: bool,
        data: st.DataObject,
    ) -> None:
        case = self.case
        if guided:
            # Half of the steps pick something the table allows, so runs reach deep states
            # (rework, escalation, return visit) instead of bouncing off NotPermitted.
            pairs = [(r, a) for r in ROLES for a in case.available_actions(r)]
            actions = sorted({a for _, a in pairs}, key=ORDER.__getitem__)
            if data.draw(st.integers(0, 9)) > 0:  # mostly stay out of the dead ends
                actions = [a for a in actions if a not in DEAD_ENDS] or actions
            if data.draw(st.integers(0, 2)) > 0:  # mostly move the case forward
                actions = [a for a in actions if a in FORWARD] or actions
            if actions:
                action = data.draw(st.sampled_from(actions))
                role = data.draw(st.sampled_from([r for r, a in pairs if a is action]))
        self.minutes += advance
        now = T0 + timedelta(minutes=self.minutes)
        redelivered = redeliver and data.draw(st.booleans())
        if redelivered:
            command_id = data.draw(st.sampled_from(self.used_ids))
        else:
            self.counter += 1
            command_id = f"cmd-{self.counter}"
        before_status = case.status
        before_available = case.available_actions(role)
        before_snapshot = case.snapshot_dict()
        kwargs = _args(action, case, data, now)
        method = getattr(case, action.value)
        try:
            method(
                **kwargs,
                actor=f"{role}-x",
                role=role,
                channel="test",
                at=now,
                command_id=command_id,
            )
        except NotPermitted:
            assert not redelivered
            assert not role_may(role, action)
            new: list[Any] = []
        except IllegalTransition as exc:
            assert not redelivered
            assert role_may(role, action)
            assert action not in before_available
            assert exc.to_dict()["allowed_actions"] == [a.value for a in before_available]
            assert exc.to_dict()["status"] == before_status.value
            new = []
        except InvalidCommand:
            assert not redelivered
            assert action in before_available
            new = []
        else:
            new = list(case.collect_events())
            if redelivered:
                assert new == []
            elif not new:
                # Only the traffic lights may be silently ignored (already marked / stale).
                assert action in (Action.mark_warning, Action.mark_overdue)
                assert action in before_available
            else:
                self.used_ids.append(command_id)
        if not new:
            assert case.snapshot_dict() == before_snapshot
            assert list(case.collect_events()) == []
            return
        assert len(new) == 1
        (event,) = new
        assert type(event).action is action
        assert action in before_available
        assert action in allowed_actions(before_status, role)
        assert action in TRANSITIONS[before_status]
        assert case.status is next_status(before_status, action)
        assert event.timestamp == now
        assert event.from_status == before_status.value
        assert event.to_status == case.status.value
        self.events.extend(new)
        hypothesis_event(f"reached {case.status.value}")

    @invariant()
    def status_is_in_the_table(self) -> None:
        assert self.case.status in TRANSITIONS
        assert isinstance(self.case.status, Status)

    @invariant()
    def terminal_states_offer_only_the_table_row(self) -> None:
        if self.case.status in TERMINAL:
            assert set(self.case.available_actions()) <= set(TRANSITIONS[self.case.status])

    @invariant()
    def counters_never_negative(self) -> None:
        for name in COUNTERS:
            assert getattr(self.case, name) >= 0, name
        assert self.case.extension_count <= self.case.version

    @invariant()
    def hash_chain_links(self) -> None:
        # Each new event is checked against its predecessor when it arrives (linear cost);
        # the whole chain is re-verified from GENESIS in teardown.
        assert self.events[0].prev_hash == GENESIS
        last = self.events[-1]
        if len(self.events) > 1:
            assert last.prev_hash == self.events[-2].hash
        assert recompute_hash(last) == last.hash
        assert self.case.last_hash == last.hash
        assert self.case.version == len(self.events) == last.originator_version

    @invariant()
    def replay_gives_identical_snapshot(self) -> None:
        assert _replay(self.events).snapshot_dict() == self.case.snapshot_dict()

    def teardown(self) -> None:
        """Finally, the same history through eventsourcing's POPO store and JSON transcoder."""
        if not self.events:
            return
        assert verify_chain(self.events) is None
        app: Application[UUID] = Application()
        app.events.put(self.events)  # the store's own encode / transcode / record path
        loaded: Case = app.repository.get(self.case.id)
        assert loaded.snapshot_dict() == self.case.snapshot_dict()
        assert verify_chain(list(app.repository.event_store.get(self.case.id))) is None


CaseMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCaseMachine = CaseMachine.TestCase
