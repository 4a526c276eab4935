"""The return-visit loop (回访 → 重办 / 不予重办): the shift leader's decision after a
dissatisfied visit, and how the reopen rate and the declined count are counted."""

from __future__ import annotations

from typing import Any

import pytest

from aggregates.actions import REGISTRY, offered, offers
from aggregates.actions.closing import ReopenDeclined
from aggregates.case import Case, verify_chain
from aggregates.errors import IllegalTransition, NotPermitted
from core.envelope import to_envelope
from core.vocabulary import ROLES, Status
from projections.metrics import METRICS, Emitter, compute, fold
from tests.unit.casekit import REF, replay, report, run


def _closed(satisfaction: str | None, **report_overrides: Any) -> Case:
    case = report(**report_overrides)
    run(case, "file", "dispatcher", 1)
    run(case, "dispatch", "dispatcher", 2)
    run(case, "accept", "handler", 3)
    run(case, "report_result", "handler", 10, note="已清运")
    run(case, "verify_pass", "inspector", 20)
    run(case, "close", "dispatcher", 30)
    if satisfaction is not None:
        run(case, "return_visit", "call_taker", 40, satisfaction=satisfaction)
    return case


def _counters(events: list[Any]) -> dict[str, int]:
    """The metrics fold over a case's envelopes, summed over days and places."""
    out = Emitter()
    state = None
    for position, event in enumerate(events, start=1):
        state = fold(state, to_envelope("520102", position, event), out)
    totals: dict[str, int] = {}
    for key, n in out.deltas.items():
        totals[key[0]] = totals.get(key[0], 0) + n
    return {k: v for k, v in totals.items() if v}


def test_after_a_dissatisfied_visit_the_shift_leader_reopens_or_declines_once() -> None:
    spec = REGISTRY["decline_reopen"]
    assert spec.label == "不予重办" and spec.roles == {"shift_leader"}
    case = _closed("dissatisfied")
    assert offers(case.state, REF) == {"shift_leader": ["reopen", "decline_reopen"]}
    with pytest.raises(NotPermitted):
        run(case, "decline_reopen", "dispatcher", 50, reason="不属于受理范围")
    run(case, "decline_reopen", "shift_leader", 50, reason="不属于受理范围, 已向来电人解释")
    events = case.collect_events()
    declined = events[-1]
    assert isinstance(declined, ReopenDeclined)
    assert (declined.from_status, declined.to_status) == ("closed", "closed")
    assert declined.reason == "不属于受理范围, 已向来电人解释"
    assert declined.satisfaction == "dissatisfied"
    assert declined.summary["offers"] == {}  # decided: nothing more is offered
    assert case.state.reopen_declined == {
        "reason": "不属于受理范围, 已向来电人解释", "by": "shift_leader-1",
        "at": "2026-11-23T01:50:00.000000Z",
    }
    for role in ROLES:
        assert offered(case.state, role, REF) == []
    with pytest.raises(IllegalTransition) as again:
        run(case, "reopen", "shift_leader", 60, reason="还是重办吧")
    assert again.value.why == "already decided not to reopen"
    assert case.state.status is Status.closed
    assert verify_chain(events) is None
    assert replay(events).snapshot_dict() == case.snapshot_dict()


@pytest.mark.parametrize("satisfaction", ["satisfied", "basically_satisfied", None])
def test_declining_needs_a_dissatisfied_visit(satisfaction: str | None) -> None:
    case = _closed(satisfaction)
    with pytest.raises(IllegalTransition):
        run(case, "decline_reopen", "shift_leader", 50, reason="无需重办")


def test_reopen_rate_and_declines_are_counted_by_their_cohorts() -> None:
    reopened = _closed("dissatisfied")
    run(reopened, "reopen", "shift_leader", 50, reason="群众不满意")
    run(reopened, "dispatch", "dispatcher", 60)
    run(reopened, "accept", "handler", 61)
    run(reopened, "report_result", "handler", 70, note="再次清运")
    run(reopened, "verify_pass", "inspector", 80)
    run(reopened, "close", "dispatcher", 90)
    run(reopened, "return_visit", "call_taker", 100, satisfaction="satisfied")
    a = _counters(reopened.collect_events())
    assert a["closed"] == 2 and a["reopened"] == 1 and a["reopened_of_closed"] == 1
    assert a["return_visits"] == 2 and a["satisfied"] == 1 and a["dissatisfied"] == 1

    declined = _closed("dissatisfied")
    run(declined, "decline_reopen", "shift_leader", 50, reason="已解释")
    b = _counters(declined.collect_events())
    assert b["reopen_declined"] == 1 and "reopened_of_closed" not in b

    total = {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}
    # 3 closings, one of which was reopened; 3 visits, one of them satisfied.
    assert compute(METRICS["reopen_rate"], total) == pytest.approx(1 / 3)
    assert compute(METRICS["reopens_declined"], total) == 1
    assert compute(METRICS["satisfaction_rate"], total) == pytest.approx(1 / 3)
    assert "重办率" in METRICS["reopen_rate"]["formula_zh"]
