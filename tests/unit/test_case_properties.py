"""Property tests: random command sequences with random roles against one `Case`.

Why: the example tests show each rule once; here hypothesis throws arbitrary orders, roles,
redelivered command ids and half-valid arguments at the aggregate and checks that the action
registry is the only thing deciding (an accepted action was offered before it, a refusal names
what is offered, refused commands change nothing), that counters never go negative, that the
hash chain (哈希链) always links, and that replaying the events — in memory and through
eventsourcing's POPO store — gives the identical state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from hypothesis import event as hypothesis_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pydantic import ValidationError

from aggregates.actions import REGISTRY, offered, offers
from aggregates.case import Case, recompute_hash, verify_chain
from aggregates.errors import IllegalTransition, InvalidCommand, NotPermitted
from aggregates.events import fold_summaries
from aggregates.integrity import GENESIS
from core.vocabulary import ROLES, SATISFACTIONS, STEPS, TERMINAL, Status
from tests.unit.casekit import GRID, REF, T0, replay, report, run

ACTIONS: list[str] = [name for name, spec in REGISTRY.items() if not spec.creates]
DEAD_ENDS = frozenset({"reject", "mark_duplicate"})
FORWARD = frozenset(
    {
        "file",
        "dispatch",
        "accept",
        "report_result",
        "verify_pass",
        "verify_fail",
        "close",
        "return_visit",
        "reopen",
        "suspend",
        "resume",
        "approve_extension",
    }
)
#: Actions that may accept a command and record nothing (a stale or repeated watcher mark).
SILENT = frozenset({"mark_warning", "mark_overdue"})
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
PROPOSED = "D-520102-sanitation"

# Mostly valid, so runs get deep; sometimes missing / blank to exercise the refusals.
reasons = st.sampled_from(["有理由", "有理由", "有理由", None, "", "  "])
departments = st.sampled_from(
    [None, PROPOSED, "D-520102-water", "D-520102001-station", "D-520103-water", "D-nowhere"]
)
priorities = st.sampled_from([None, "ordinary", "urgent", "important"])
offsets = st.integers(min_value=-120, max_value=3000)  # minutes relative to the command time


def _args(name: str, case: Case, data: st.DataObject, now: datetime) -> dict[str, Any]:
    """Arguments for ``name``: sometimes valid, sometimes missing reason / bad values."""
    s = case.state

    def when() -> datetime:
        return now + timedelta(minutes=data.draw(offsets))

    match name:
        case "file" | "accept" | "close" | "resume":
            return {"note": data.draw(reasons)}
        case (
            "reject" | "supervise" | "return_case" | "refuse_extension"
            | "reopen" | "decline_reopen"
        ):
            return {"reason": data.draw(reasons)}
        case "mark_duplicate":
            return {"of_case_no": "GY-ORIGINAL", "of_case_id": str(UUID(int=99))}
        case "link_reporter":
            return {"reporter": {"name": "王五", "type": "citizen"}, "from_case_no": "GY-DUP"}
        case "dispatch":
            return {
                "department": data.draw(departments),
                "priority": data.draw(priorities),
                "override_reason": data.draw(reasons),
            }
        case "request_extension":
            return {
                "hours": data.draw(st.sampled_from([-1, 0, 2, 4.5])),
                "reason": data.draw(reasons),
            }
        case "approve_extension":
            return {"reason": data.draw(reasons)}
        case "suspend":
            return {"reason": data.draw(reasons), "review_at": when()}
        case "report_result" | "verify_fail":
            return {"note": data.draw(st.sampled_from(["", "已处置", "已处置"])), "photos": []}
        case "verify_pass":
            return {"note": data.draw(reasons), "photos": []}
        case "escalate":
            return {"reason": data.draw(reasons), "automatic": data.draw(st.booleans())}
        case "return_visit":
            return {
                "satisfaction": data.draw(st.sampled_from([*SATISFACTIONS, "meh"])),
                "comment": None,
            }
        case "mark_warning" | "mark_overdue":
            step = data.draw(st.sampled_from([s.due_step or "handle", "handle", *STEPS, "close"]))
            due = data.draw(st.sampled_from([s.due, s.due, now]))
            return {"step": step, "due": due or now}
    raise AssertionError(name)  # pragma: no cover


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
        description=st.sampled_from(["垃圾", "学校门口垃圾", "大量垃圾"]),
    )
    def report(self, role: str, description: str) -> None:
        self.case = report(role=role, when=T0, case_id=UUID(int=1), case_no="GY-1",
                           cid="cmd-0", grid=GRID, description=description)
        self.used_ids.append("cmd-0")
        self.events.extend(self.case.collect_events())

    @rule(
        name=st.sampled_from(ACTIONS),
        role=st.sampled_from([*ROLES, "stranger"]),
        guided=st.integers(0, 3).map(bool),
        advance=st.integers(min_value=0, max_value=600),
        redeliver=st.booleans(),
        data=st.data(),
    )
    def command(
        self,
        name: str,
        role: str,
        guided: bool,
        advance: int,
        redeliver: bool,
        data: st.DataObject,
    ) -> None:
        case = self.case
        if guided:
            # Most steps pick something offered, so runs reach deep states (rework,
            # escalation, return visit, reopen) instead of bouncing off NotPermitted.
            pairs = [(r, a) for r, names in offers(case.state, REF).items() for a in names]
            actions = sorted({a for _, a in pairs}, key=ACTIONS.index)
            if data.draw(st.integers(0, 9)) > 0:  # mostly stay out of the dead ends
                actions = [a for a in actions if a not in DEAD_ENDS] or actions
            if data.draw(st.integers(0, 2)) > 0:  # mostly move the case forward
                actions = [a for a in actions if a in FORWARD] or actions
            if actions:
                name = data.draw(st.sampled_from(actions))
                role = data.draw(st.sampled_from([r for r, a in pairs if a == name]))
        spec = REGISTRY[name]
        self.minutes += advance
        now = T0 + timedelta(minutes=self.minutes)
        redelivered = redeliver and data.draw(st.booleans())
        if redelivered:
            command_id = data.draw(st.sampled_from(self.used_ids))
        else:
            self.counter += 1
            command_id = f"cmd-{self.counter}"
        before = case.state.copy()
        before_offered = offered(before, role, REF)
        may = spec.why_not(before, role, REF) is None  # offered, or a hidden action it may do
        before_snapshot = case.snapshot_dict()
        kwargs = _args(name, case, data, now)
        try:
            run(case, name, role, now, actor=f"{role}-x", cid=command_id, **kwargs)
        except ValidationError:
            # The wire schema is checked before the aggregate (even for a redelivered id,
            # which in practice carries the arguments that were valid the first time).
            new: list[Any] = []
        except NotPermitted:
            assert not redelivered
            assert role not in spec.roles
            new = []
        except IllegalTransition as exc:
            assert not redelivered
            assert role in spec.roles and not may
            assert name not in before_offered
            assert exc.to_dict()["allowed_actions"] == before_offered
            assert exc.to_dict()["status"] == before.status.value
            new = []
        except InvalidCommand:
            assert not redelivered
            assert may
            new = []
        else:
            new = list(case.collect_events())
            if redelivered:
                assert new == []
            elif not new:
                # Only the traffic lights may be silently ignored (already marked / stale).
                assert name in SILENT and may
            else:
                self.used_ids.append(command_id)
        if not new:
            assert case.snapshot_dict() == before_snapshot
            assert list(case.collect_events()) == []
            return
        assert len(new) == 1
        (event,) = new
        assert type(event) is spec.event
        assert may
        assert spec.public is False or name in before_offered
        assert case.state.status is spec.moves[before.status]
        assert event.timestamp == now
        assert event.from_status == before.status.value
        assert event.to_status == case.state.status.value
        assert fold_summaries([*self.events, *new])["offers"] == offers(case.state, REF)
        self.events.extend(new)
        hypothesis_event(f"reached {case.state.status.value}")

    @invariant()
    def status_is_a_status(self) -> None:
        assert isinstance(self.case.state.status, Status)

    @invariant()
    def terminal_states_offer_only_their_moves(self) -> None:
        state = self.case.state
        if state.status in TERMINAL:
            for names in offers(state, REF).values():
                assert all(state.status in REGISTRY[n].moves for n in names)
            assert state.due is None

    @invariant()
    def counters_never_negative(self) -> None:
        for name in COUNTERS:
            assert getattr(self.case.state, name) >= 0, name
        assert self.case.state.extension_count <= self.case.version

    @invariant()
    def hash_chain_links(self) -> None:
        # Each new event is checked against its predecessor when it arrives (linear cost);
        # the whole chain is re-verified from GENESIS in teardown.
        assert self.events[0].prev_hash == GENESIS
        last = self.events[-1]
        if len(self.events) > 1:
            assert last.prev_hash == self.events[-2].hash
        assert recompute_hash(last) == last.hash
        assert self.case.state.last_hash == last.hash
        assert self.case.version == len(self.events) == last.originator_version

    @invariant()
    def replay_gives_identical_snapshot(self) -> None:
        assert replay(self.events).snapshot_dict() == self.case.snapshot_dict()

    def teardown(self) -> None:
        """Finally, the same history through eventsourcing's POPO store and JSON transcoder."""
        if not self.events:
            return
        assert verify_chain(self.events) is None
        app: Application[UUID] = Application()
        app.events.put(self.events)  # the store's own encode / transcode / record path
        loaded: Case = app.repository.get(self.case.id)
        assert loaded.snapshot_dict() == self.case.snapshot_dict()
        assert loaded.state == self.case.state
        assert verify_chain(list(app.repository.event_store.get(self.case.id))) is None


CaseMachine.TestCase.settings = settings(stateful_step_count=50)
TestCaseMachine = CaseMachine.TestCase
