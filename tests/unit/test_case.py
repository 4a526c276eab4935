"""Unit tests of the `Case` aggregate (案件) run through the action registry.

Why: the aggregate is where the counting rules (返工 vs 错误派遣, extension limits, 督办,
上提) are decided once, and where the hash chain starts. Each test drives commands by name
with explicit times (no clock) on the real Guiyang reference data, and checks both the state
and the recorded events. Deadlines are computed by the registry from the category's limits,
so the tests compare them with ``aggregates.deadlines`` on the same calendar.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast
from uuid import UUID

import pytest
from eventsourcing.application import Application
from pydantic import ValidationError

from aggregates import deadlines, triage
from aggregates.actions import REGISTRY, offered, offers, role_actions
from aggregates.actions.closing import VerificationFailed
from aggregates.actions.handling import Dispatched, ExtensionApproved, Resumed
from aggregates.actions.intake import MarkedDuplicate, Reported
from aggregates.actions.oversight import Escalated, WarningMarked
from aggregates.case import NON_PAYLOAD_FIELDS, Case, event_payload, recompute_hash, verify_chain
from aggregates.commands import ARGS
from aggregates.errors import DomainError, IllegalTransition, InvalidCommand, NotPermitted
from aggregates.events import fold_summaries
from aggregates.integrity import GENESIS, event_hash, iso_utc
from aggregates.registry import Context
from aggregates.state import CaseState
from core.vocabulary import (
    ROLES,
    SATISFACTION_LABELS,
    STATUS_LABELS,
    TERMINAL,
    Status,
)
from tests.unit.casekit import (
    CALENDAR,
    CATALOGUE,
    CATEGORY,
    GRID,
    JURISDICTION,
    REF,
    at,
    names,
    replay,
    report,
    report_args,
    run,
)

CST = timezone(timedelta(hours=8))  # 北京时间
PROPOSED = "D-520102-sanitation"  # triage's department for 暴露垃圾 in grid 520102001001
OTHER = "D-520102-water"  # another department of the same district
ANYTIME = {"supervise", "link_reporter", "mark_warning", "mark_overdue"}


def due(step: str, minutes: float, *, category: str = CATEGORY, priority: str = "ordinary"
        ) -> datetime:
    """The deadline of ``step`` started at ``at(minutes)``, by the category's limit."""
    return deadlines.due_at(
        CATALOGUE.get(category), cast(Any, priority), cast(Any, step), at(minutes), CALENDAR
    )


def filed(case: Case | None = None) -> Case:
    case = case or report()
    run(case, "file", "dispatcher", 1)
    return case


def dispatched(case: Case | None = None) -> Case:
    case = filed(case)
    run(case, "dispatch", "dispatcher", 2, actor="disp-A")
    return case


def in_progress(case: Case | None = None) -> Case:
    case = dispatched(case)
    run(case, "accept", "handler", 3)
    return case


def last(case: Case) -> Any:
    """The newest event (collecting drains the pending events: call once per check)."""
    return case.collect_events()[-1]


# --- the registry as a state table -------------------------------------------------------


def test_moves_cover_only_statuses_and_terminal_statuses_are_dead_ends() -> None:
    assert set(STATUS_LABELS) == set(Status)
    for spec in REGISTRY.values():
        for source, target in spec.moves.items():
            assert isinstance(source, Status) and isinstance(target, Status)
    for status in (Status.rejected, Status.merged):
        assert [n for n, s in REGISTRY.items() if status in s.moves] == []
    assert sorted(n for n, s in REGISTRY.items() if Status.closed in s.moves) == [
        "decline_reopen",
        "reopen",
        "return_visit",
    ]
    (creator,) = [s for s in REGISTRY.values() if s.creates]
    assert creator.name == "report" and dict(creator.moves) == {}


def test_anytime_actions_only_in_non_terminal_statuses_and_stay() -> None:
    for name in ANYTIME:
        moves = REGISTRY[name].moves
        assert set(moves) == set(Status) - TERMINAL
        assert all(source is target for source, target in moves.items())


def test_roles_and_offered_actions() -> None:
    assert role_actions("auditor") == [] and role_actions("admin") == []
    assert set(role_actions("dispatcher")) <= set(role_actions("shift_leader"))
    assert set(ROLES) >= {r for s in REGISTRY.values() for r in s.roles}
    reported = CaseState(status=Status.reported)
    assert offered(reported, "dispatcher", REF) == ["file", "reject", "mark_duplicate"]
    assert offered(reported, "call_taker", REF) == ["reject"]
    assert offered(reported, "system", REF) == ["link_reporter", "mark_warning", "mark_overdue"]
    handling = CaseState(status=Status.in_progress, category=CATEGORY, level="district")
    assert offered(handling, "handler", REF) == [
        "return_case",
        "request_extension",
        "suspend",
        "report_result",
    ]
    closed = CaseState(status=Status.closed)
    assert offered(closed, "call_taker", REF) == ["return_visit"]
    assert offered(closed, "dispatcher", REF) == []
    assert offered(closed, "shift_leader", REF) == []  # reopen only after 不满意
    filed_state = CaseState(status=Status.filed, level="district")
    assert offered(filed_state, "nobody", REF) == []
    assert offered(filed_state, "auditor", REF) == []
    assert "auditor" not in offers(filed_state, REF)


# --- happy path ------------------------------------------------------------------------------


def test_happy_path_closed_loop_with_chained_hashes() -> None:
    case = report()
    s = case.state
    assert s.status is Status.reported
    assert case.version == 1 and s.due == due("file", 0) and s.due_step == "file"
    assert (s.level, s.node, s.priority) == ("district", "520102", "ordinary")
    assert s.proposal["department"] == PROPOSED
    run(case, "file", "shift_leader", 5, note="符合立案条件")
    assert case.state.status is Status.filed and case.state.due_step == "dispatch"
    assert case.state.due == due("dispatch", 5)
    run(case, "dispatch", "dispatcher", 10)
    s = case.state
    assert s.status is Status.dispatched and s.department == PROPOSED
    assert not s.overridden and s.due == due("handle", 10) and s.due_step == "handle"
    run(case, "accept", "handler", 20)
    assert case.state.status is Status.in_progress and case.state.due == due("handle", 10)
    photo = {"digest": "sha256:" + "cd" * 32, "size": 2048, "content_type": "image/png"}
    run(case, "report_result", "handler", 120, note="已清运", photos=[photo])
    s = case.state
    assert s.status is Status.awaiting_verification
    assert s.due == due("verify", 120) and s.due_step == "verify"
    assert s.result is not None and s.result["note"] == "已清运"
    assert s.result["photos"][0]["digest"] == photo["digest"]
    run(case, "verify_pass", "inspector", 150, note="现场已清理")
    assert case.state.status is Status.verified and case.state.due is None
    run(case, "close", "shift_leader", 160, note="结案")
    s = case.state
    assert s.status is Status.closed and s.closed_at == at(160) and s.due is None
    assert s.close_note == "结案"
    run(case, "return_visit", "call_taker", 2000, satisfaction="satisfied", comment="很快")
    assert case.state.satisfaction == "satisfied" and case.state.return_visit_comment == "很快"

    events = case.collect_events()
    assert names(events) == [
        "Reported",
        "Filed",
        "Dispatched",
        "Accepted",
        "ResultReported",
        "VerificationPassed",
        "Closed",
        "ReturnVisited",
    ]
    assert [e.originator_version for e in events] == list(range(1, 9))
    assert events[0].prev_hash == GENESIS
    for prev, event in itertools.pairwise(events):
        assert event.prev_hash == prev.hash
    for event in events:
        assert recompute_hash(event) == event.hash
    assert case.state.last_hash == events[-1].hash
    assert verify_chain(events) is None
    assert [e.from_status for e in events] == [
        None,
        "reported",
        "filed",
        "dispatched",
        "in_progress",
        "awaiting_verification",
        "verified",
        "closed",
    ]
    assert [e.to_status for e in events][-2:] == ["closed", "closed"]
    assert [e.due_step for e in events] == [
        "file", "dispatch", "handle", "handle", "verify", None, None, None,
    ]
    snap = case.snapshot_dict()
    assert snap["status"] == "closed" and snap["status_zh"] == "已结案"
    assert snap["closed_at"] == iso_utc(at(160))
    assert snap["satisfaction"] == "satisfied"
    assert snap["version"] == 8 and snap["id"] == str(case.id)


def test_first_event_hash_is_the_documented_formula() -> None:
    case = report()
    (collected,) = case.collect_events()
    event = cast(Reported, collected)
    assert isinstance(event, Reported)
    payload = event_payload(event)
    assert set(payload) == {
        f.name for f in dataclasses.fields(event) if f.name not in NON_PAYLOAD_FIELDS
    }
    assert {"actor", "role", "channel", "reason", "command_id", "case_no", "summary"} <= set(
        payload
    )
    expected = event_hash(GENESIS, str(case.id), 1, "Reported", event.timestamp, payload)
    assert event.hash == expected


def test_event_timestamps_are_the_given_times() -> None:
    case = in_progress()
    events = case.collect_events()
    assert [e.timestamp for e in events] == [at(0), at(1), at(2), at(3)]
    assert case.created_on == at(0) and case.modified_on == at(3)


def test_common_event_fields() -> None:
    case = filed()
    events = case.collect_events()
    event = events[-1]
    assert type(event).__name__ == "Filed"
    assert (event.actor, event.role, event.channel) == ("dispatcher-1", "dispatcher", "web")
    assert event.command_id in case.state.applied_commands
    assert (event.from_status, event.to_status) == ("reported", "filed")
    assert (event.due, event.due_step) == (due("dispatch", 1), "dispatch")
    # The summary records what the event changed: filing changes what is offered.
    assert event.summary["offers"] == offers(case.state, REF)
    assert "level" not in event.summary  # unchanged since the report
    summary = fold_summaries(events)
    assert summary["level"] == "district" and summary["department"] is None


# --- filing exceptions -----------------------------------------------------------------------


def test_reject_needs_reason_and_is_terminal() -> None:
    case = report()
    for blank in ("", "  ", None):
        with pytest.raises(ValidationError):
            run(case, "reject", "dispatcher", 1, reason=blank)
    run(case, "reject", "call_taker", 2, reason="不属于城管范围")
    s = case.state
    assert s.status is Status.rejected and s.rejection_reason == "不属于城管范围"
    assert s.due is None and s.finished_at == at(2)
    assert offers(s, REF) == {} and last(case).summary["offers"] == {}
    with pytest.raises(IllegalTransition) as illegal:
        run(case, "file", "dispatcher", 3)
    assert illegal.value.to_dict()["allowed_actions"] == []
    assert illegal.value.to_dict()["status_zh"] == "不予立案"


def test_duplicate_merges_and_links_reporter_on_original() -> None:
    original = report()
    dup = report(reporter={"name": "王五", "phone": "139", "type": "citizen"})
    with pytest.raises(InvalidCommand) as itself:
        run(dup, "mark_duplicate", "dispatcher", 1, others=[dup],
            of_case_no=dup.state.case_no, of_case_id=str(dup.id))
    assert itself.value.field == "of_case_no"
    with pytest.raises(InvalidCommand) as missing:
        run(dup, "mark_duplicate", "dispatcher", 1,
            of_case_no=original.state.case_no, of_case_id=str(original.id))
    assert missing.value.field == "of_case_no"
    assert dup.version == 1 and original.version == 1
    touched = run(dup, "mark_duplicate", "dispatcher", 2, others=[original],
                  of_case_no=original.state.case_no, of_case_id=str(original.id), reason="同一处")
    assert touched == [dup, original]
    assert dup.state.status is Status.merged
    assert dup.state.duplicate_of == original.state.case_no
    assert dup.state.duplicate_of_id == str(original.id)
    assert dup.state.due is None
    assert original.state.status is Status.reported
    assert [r["name"] for r in original.state.reporters] == ["李四", "王五"]
    assert original.state.reporters[1]["from_case_no"] == dup.state.case_no
    merged_event = last(dup)
    assert isinstance(merged_event, MarkedDuplicate)
    assert merged_event.of_case_id == str(original.id) and merged_event.reason == "同一处"
    linked = last(original)
    assert type(linked).__name__ == "ReporterLinked" and linked.from_case_no == dup.state.case_no
    with pytest.raises(IllegalTransition):
        run(dup, "link_reporter", "system", 3, reporter={}, from_case_no="X")


def test_a_finished_original_cannot_take_a_duplicate() -> None:
    original = report()
    run(original, "reject", "dispatcher", 1, reason="不予立案")
    dup = report()
    with pytest.raises(DomainError):
        run(dup, "mark_duplicate", "dispatcher", 2, others=[original],
            of_case_no=original.state.case_no, of_case_id=str(original.id))
    assert dup.state.status is Status.reported and dup.version == 1
    assert original.version == 2


def test_a_finished_original_is_an_invalid_argument_of_the_duplicate() -> None:
    original = report()
    run(original, "reject", "dispatcher", 1, reason="不予立案")
    dup = report()
    with pytest.raises(InvalidCommand) as err:
        run(dup, "mark_duplicate", "dispatcher", 2, others=[original],
            of_case_no=original.state.case_no, of_case_id=str(original.id))
    assert err.value.field == "of_case_no"


# --- dispatch: override, return, wrong dispatch ------------------------------------------


def test_override_needs_reason() -> None:
    case = filed()
    with pytest.raises(InvalidCommand) as err:
        run(case, "dispatch", "dispatcher", 5, department=OTHER)
    assert err.value.field == "override_reason"
    with pytest.raises(InvalidCommand) as urgent:
        run(case, "dispatch", "dispatcher", 5, priority="urgent")
    assert urgent.value.field == "override_reason"
    with pytest.raises(InvalidCommand) as unknown:
        run(case, "dispatch", "dispatcher", 5, department="D-nowhere", override_reason="x")
    assert unknown.value.field == "department"
    with pytest.raises(InvalidCommand) as elsewhere:  # another district's department
        run(case, "dispatch", "dispatcher", 5, department="D-520103-water", override_reason="x")
    assert elsewhere.value.field == "department"
    assert case.version == 2
    run(case, "dispatch", "dispatcher", 6, department=OTHER, priority="urgent",
        override_reason="井盖属水务")
    event = last(case)
    assert isinstance(event, Dispatched)
    assert event.overridden and event.override_reason == "井盖属水务"
    assert event.reason == "井盖属水务"
    assert case.state.overridden and case.state.priority == "urgent"
    assert case.state.due == due("handle", 6, priority="urgent")


def test_return_and_redispatch_elsewhere_is_a_wrong_dispatch() -> None:
    case = dispatched()
    with pytest.raises(ValidationError):
        run(case, "return_case", "handler", 5, reason="")
    run(case, "return_case", "handler", 5, reason="不属本部门")
    s = case.state
    assert s.status is Status.returned and s.return_count == 1
    assert s.returned_from == PROPOSED and s.department is None
    assert s.due == due("dispatch", 5) and s.due_step == "dispatch"
    assert last(case).department == PROPOSED
    run(case, "dispatch", "dispatcher", 10, actor="disp-B", department=OTHER,
        override_reason="井盖归水务")
    event = last(case)
    assert isinstance(event, Dispatched)
    assert event.redispatch and event.wrong_dispatch
    assert event.previous_department == PROPOSED
    assert event.previous_dispatcher == "disp-A"  # counts against the first dispatcher
    assert case.state.wrong_dispatches == 1 and case.state.department == OTHER
    assert case.state.rework_count == 0 and case.state.dispatch_count == 2


def test_redispatch_to_same_department_is_not_wrong() -> None:
    case = dispatched()
    run(case, "return_case", "handler", 5, reason="地址不清")
    run(case, "dispatch", "dispatcher", 10)
    event = last(case)
    assert isinstance(event, Dispatched)
    assert event.redispatch and not event.wrong_dispatch
    assert event.previous_department == PROPOSED and event.previous_dispatcher is None
    assert case.state.wrong_dispatches == 0 and case.state.dispatch_count == 2


# --- extensions --------------------------------------------------------------------------


def test_extension_request_approve_and_second_extension_rule() -> None:
    case = in_progress()
    handle_due = due("handle", 2)
    with pytest.raises(IllegalTransition) as no_pending:
        run(case, "approve_extension", "shift_leader", 4)
    assert "approve_extension" not in no_pending.value.to_dict()["allowed_actions"]
    assert no_pending.value.why == "no pending extension request"
    for bad in ({"hours": 0, "reason": "x"}, {"hours": -1, "reason": "x"},
                {"hours": 4, "reason": None}, {"hours": float("inf"), "reason": "x"}):
        with pytest.raises(ValidationError):
            run(case, "request_extension", "handler", 5, **bad)
    run(case, "request_extension", "handler", 5, hours=4, reason="材料未到")
    pending = case.state.pending_extension
    assert pending is not None and pending["hours"] == 4.0 and pending["reason"] == "材料未到"
    with pytest.raises(IllegalTransition):  # one pending request at a time
        run(case, "request_extension", "handler", 6, hours=2, reason="again")
    run(case, "approve_extension", "shift_leader", 7)
    first_due = deadlines.extend(handle_due, 4.0, "working", CALENDAR)
    s = case.state
    assert s.extension_count == 1 and s.due == first_due and s.pending_extension is None
    assert s.due_step == "handle"

    run(case, "request_extension", "handler", 8, hours=4, reason="天气")
    with pytest.raises(IllegalTransition) as limit:  # beyond the category's one extension
        run(case, "approve_extension", "shift_leader", 9, reason="理由")
    assert "supervisor" in (limit.value.why or "")
    with pytest.raises(InvalidCommand) as no_reason:
        run(case, "approve_extension", "supervisor", 9)
    assert no_reason.value.field == "reason"
    assert offered(case.state, "supervisor", REF).count("approve_extension") == 1
    assert "approve_extension" not in offered(case.state, "shift_leader", REF)
    run(case, "approve_extension", "supervisor", 10, reason="工程量大")
    event = last(case)
    assert isinstance(event, ExtensionApproved)
    assert event.beyond_limit and event.extension_number == 2 and event.hours == 4.0
    assert event.previous_due == first_due and event.reason == "工程量大"
    assert case.state.extension_count == 2
    assert case.state.due == deadlines.extend(first_due, 4.0, "working", CALENDAR)


def test_category_without_extensions_needs_supervisor_for_the_first() -> None:
    case = in_progress(report(category="SJ0401"))  # 路面塌陷: max_extensions 0, natural clock
    assert CATALOGUE.get("SJ0401").max_extensions == 0
    run(case, "request_extension", "handler", 5, hours=8, reason="需施工")
    with pytest.raises(IllegalTransition):
        run(case, "approve_extension", "shift_leader", 6, reason="工程类")
    with pytest.raises(InvalidCommand):
        run(case, "approve_extension", "supervisor", 6)
    before = case.state.due
    assert before is not None
    run(case, "approve_extension", "supervisor", 6, reason="工程类")
    assert case.state.extension_count == 1 and last(case).beyond_limit
    assert case.state.due == before + timedelta(hours=8)  # natural clock: calendar hours


def test_refuse_extension_keeps_deadline() -> None:
    case = in_progress()
    run(case, "request_extension", "handler", 5, hours=4, reason="材料未到")
    with pytest.raises(ValidationError):
        run(case, "refuse_extension", "shift_leader", 6, reason="")
    run(case, "refuse_extension", "shift_leader", 6, reason="可按期完成")
    s = case.state
    assert s.pending_extension is None and s.due == due("handle", 2) and s.extension_count == 0
    event = last(case)
    assert event.hours == 4.0 and event.reason == "可按期完成"
    with pytest.raises(IllegalTransition):
        run(case, "refuse_extension", "shift_leader", 7, reason="again")


def test_pending_extension_dropped_when_leaving_handling() -> None:
    case = in_progress()
    run(case, "request_extension", "handler", 5, hours=4, reason="x")
    run(case, "report_result", "handler", 6, note="done")
    assert case.state.pending_extension is None
    assert last(case).summary["pending_extension"] is None


# --- suspension ------------------------------------------------------------------------------


def test_suspend_and_resume_move_the_clock() -> None:
    case = in_progress()
    handle_due = due("handle", 2)
    with pytest.raises(ValidationError):
        run(case, "suspend", "shift_leader", 5, reason="", review_at=at(5000))
    with pytest.raises(InvalidCommand) as past:
        run(case, "suspend", "shift_leader", 5, reason="需预算", review_at=at(4))
    assert past.value.field == "review_at"
    with pytest.raises(InvalidCommand):  # "now" is not in the future either
        run(case, "suspend", "shift_leader", 5, reason="需预算", review_at=at(5))
    run(case, "suspend", "shift_leader", 5, reason="需预算", review_at=at(5000))
    s = case.state
    assert s.status is Status.suspended and s.suspension_count == 1
    assert s.due == at(5000) and s.due_step == "review"
    assert s.paused_due == handle_due and s.suspended_at == at(5)
    with pytest.raises(IllegalTransition):
        run(case, "report_result", "handler", 6, note="x")
    run(case, "resume", "handler", 1005)
    s = case.state
    assert s.status is Status.in_progress
    expected = deadlines.resume(handle_due, at(5), at(1005), "working", CALENDAR)
    assert expected > handle_due  # 1000 minutes suspended include working time
    assert s.due == expected and s.due_step == "handle"
    assert s.paused_due is None and s.suspended_at is None
    event = last(case)
    assert isinstance(event, Resumed) and event.suspended_since == at(5)


# --- verification and rework -----------------------------------------------------------------


def test_verify_fail_is_rework_to_same_department() -> None:
    case = in_progress()
    run(case, "report_result", "handler", 100, note="已修复")
    assert case.state.due == due("verify", 100) and case.state.due_step == "verify"
    with pytest.raises(ValidationError):
        run(case, "verify_fail", "inspector", 150, note="")
    photo = {"digest": "sha256:" + "ef" * 32, "size": 10, "content_type": "image/webp"}
    run(case, "verify_fail", "inspector", 150, note="仍有垃圾", photos=[photo])
    s = case.state
    assert s.status is Status.dispatched and s.department == PROPOSED
    assert s.rework_count == 1 and s.wrong_dispatches == 0 and s.dispatch_count == 1
    assert s.due == due("handle", 150) and s.due_step == "handle"
    assert s.verification is not None and s.verification["passed"] is False
    run(case, "accept", "handler", 160)
    run(case, "report_result", "handler", 200, note="再次清理")
    run(case, "verify_fail", "inspector", 210, note="仍未清理")
    assert case.state.rework_count == 2
    event = last(case)
    assert isinstance(event, VerificationFailed) and event.rework_number == 2
    assert event.reason == "仍未清理" and event.department == PROPOSED


# --- escalation ------------------------------------------------------------------------------


def test_escalate_community_district_city_then_top_refused() -> None:
    case = in_progress(report(category="ZL0402"))  # community level, 社区工作站
    assert (case.state.level, case.state.department) == ("community", "D-520102001-station")
    with pytest.raises(ValidationError):
        run(case, "escalate", "dispatcher", 5, reason="")
    with pytest.raises(InvalidCommand) as automatic:  # only the SLA watcher escalates 自动
        run(case, "escalate", "dispatcher", 5, reason="跨社区", automatic=True)
    assert automatic.value.field == "automatic"
    run(case, "escalate", "dispatcher", 5, reason="跨社区")
    s = case.state
    district = triage.route_for_level(
        CATALOGUE.get("ZL0402"), GRID, "district", JURISDICTION, priority="ordinary"
    )
    assert s.status is Status.filed and s.level == "district" and s.node == "520102"
    assert s.department is None and s.escalations == 1
    assert s.proposal == district.model_dump()
    assert s.due == due("dispatch", 5, category="ZL0402") and s.due_step == "dispatch"
    # After escalation, overrides are judged against the new level's proposal.
    run(case, "dispatch", "dispatcher", 6)
    assert not case.state.overridden and case.state.department == district.department
    run(case, "escalate", "system", 700, reason="超期", automatic=True)
    s = case.state
    assert s.level == "city" and s.node == "520100" and s.escalations == 2
    assert s.proposal["level"] == "city"
    event = last(case)
    assert isinstance(event, Escalated)
    assert event.automatic and event.from_level == "district" and event.to_level == "city"
    assert event.previous_department == district.department
    with pytest.raises(IllegalTransition) as top:
        run(case, "escalate", "supervisor", 701, reason="再上提")
    assert "top level" in (top.value.why or "")
    assert all("escalate" not in names for names in offers(case.state, REF).values())
    assert case.state.escalations == 2


def test_reported_and_verifying_cases_cannot_be_escalated() -> None:
    case = report()
    with pytest.raises(IllegalTransition):
        run(case, "escalate", "dispatcher", 1, reason="x")
    case = in_progress()
    run(case, "report_result", "handler", 10, note="ok")
    with pytest.raises(IllegalTransition):
        run(case, "escalate", "supervisor", 11, reason="x")


# --- supervision and traffic lights ----------------------------------------------------------


def test_supervise_counts_orders() -> None:
    case = dispatched()
    with pytest.raises(ValidationError):
        run(case, "supervise", "supervisor", 5, reason="")
    run(case, "supervise", "supervisor", 5, reason="群众反映强烈")
    run(case, "supervise", "supervisor", 6, reason="仍未处置")
    assert case.state.supervised and case.state.supervision_orders == 2
    assert case.state.status is Status.dispatched
    with pytest.raises(NotPermitted):
        run(case, "supervise", "dispatcher", 7, reason="x")


def test_warning_and_overdue_once_per_deadline() -> None:
    case = in_progress()
    handle_due = due("handle", 2)
    minutes_due = (handle_due - at(0)).total_seconds() / 60
    run(case, "mark_warning", "system", 4, step="handle", due=handle_due)
    version = case.version
    run(case, "mark_warning", "system", 5, step="handle", due=handle_due)  # already marked
    run(case, "mark_warning", "system", 6, step="dispatch", due=handle_due)  # stale step
    run(case, "mark_warning", "system", 7, step="handle", due=at(500))  # stale deadline
    assert case.version == version
    assert case.state.warned and not case.state.overdue
    with pytest.raises(InvalidCommand) as early:  # not yet overdue
        run(case, "mark_overdue", "system", 8, step="handle", due=handle_due)
    assert early.value.field == "at"
    run(case, "mark_overdue", "system", minutes_due + 1, step="handle", due=handle_due)
    run(case, "mark_overdue", "system", minutes_due + 2, step="handle", due=handle_due)
    assert case.state.overdue and case.state.overdue_count == 1
    events = case.collect_events()
    assert names(events)[-2:] == ["WarningMarked", "OverdueMarked"]
    assert sum(1 for e in events if isinstance(e, WarningMarked)) == 1
    assert events[-2].summary["warned"] is True and events[-2].summary["overdue"] is False
    assert events[-1].due == handle_due and events[-1].summary["overdue"] is True
    # A new deadline (extension) may be warned / marked again.
    run(case, "request_extension", "handler", minutes_due + 3, hours=4, reason="x")
    run(case, "approve_extension", "shift_leader", minutes_due + 4)
    new_due = case.state.due
    assert new_due is not None and new_due > handle_due
    assert not case.state.warned and not case.state.overdue
    later = (new_due - at(0)).total_seconds() / 60 + 1
    run(case, "mark_overdue", "system", later, step="handle", due=new_due)
    assert case.state.overdue_count == 2


def test_each_deadline_records_when_it_turns_yellow() -> None:
    """``due_warn``: the policy's yellow moment (80 % of the limit, working clock) recorded
    with every deadline, kept while it runs, None once the clock stops."""
    case = filed()
    dispatch_due = due("dispatch", 1)
    assert case.state.due == dispatch_due
    clock = CATALOGUE.get(CATEGORY).clock
    assert last(case).due_warn == deadlines.warning_at(at(1), dispatch_due, clock, CALENDAR)
    run(case, "supervise", "supervisor", 2, reason="盯办")  # the deadline goes on
    assert last(case).due_warn == deadlines.warning_at(at(1), dispatch_due, clock, CALENDAR)
    run(case, "reject", "dispatcher", 3, reason="不属于受理范围")
    rejected = last(case)
    assert rejected.due is None and rejected.due_warn is None


def test_events_recorded_before_the_yellow_moment_existed_replay_and_verify() -> None:
    """An older store's events have no ``due_warn``: they replay (the moment unknown), their
    chain verifies on the payload they were hashed with, and the next event on the case
    records the running deadline's moment."""
    case = filed()
    events = case.collect_events()
    prev = GENESIS
    for event in events:  # as they were recorded before: no due_warn, hashed without it
        del vars(event)["due_warn"]
        payload = event_payload(event)
        assert "due_warn" not in payload
        digest = event_hash(prev, str(event.originator_id), event.originator_version,
                            type(event).__name__, event.timestamp, payload)
        object.__setattr__(event, "prev_hash", prev)
        object.__setattr__(event, "hash", digest)
        prev = digest
    assert verify_chain(events) is None
    old = replay(events)
    assert old.state.due_warn is None and old.state.due == due("dispatch", 1)
    run(old, "supervise", "supervisor", 2, reason="盯办")
    (new,) = old.collect_events()
    clock = CATALOGUE.get(CATEGORY).clock
    assert new.due_warn == deadlines.warning_at(at(1), due("dispatch", 1), clock, CALENDAR)
    assert verify_chain([*events, new]) is None


def test_traffic_lights_not_on_terminal_cases() -> None:
    case = report()
    file_due = case.state.due
    assert file_due is not None
    run(case, "reject", "dispatcher", 1, reason="x")
    with pytest.raises(IllegalTransition):
        run(case, "mark_overdue", "system", 100, step="file", due=file_due)


# --- errors: illegal, not permitted, idempotency, time -----------------------------------


def test_illegal_transition_names_status_and_offered_actions() -> None:
    case = report()
    with pytest.raises(IllegalTransition) as err:
        run(case, "dispatch", "dispatcher", 1)
    body = err.value.to_dict()
    assert body == {
        "error": "illegal_transition",
        "message": body["message"],
        "action": "dispatch",
        "status": "reported",
        "status_zh": "已上报(待立案)",
        "why": "not possible while the case is reported",
        "allowed_actions": ["file", "reject", "mark_duplicate"],
    }
    assert "dispatch" in body["message"] and "reported" in body["message"]
    assert err.value.http_status == 409
    assert case.version == 1


def test_wrong_role_is_not_permitted() -> None:
    case = report()
    with pytest.raises(NotPermitted) as err:
        run(case, "file", "handler", 1)
    assert err.value.to_dict() == {
        "error": "not_permitted",
        "message": "role 'handler' may not perform 'file'",
        "action": "file",
        "role": "handler",
    }
    assert err.value.http_status == 403
    for role in ("auditor", "admin", "stranger"):
        with pytest.raises(NotPermitted):
            run(case, "supervise", role, 1, reason="x")
    with pytest.raises(NotPermitted):
        report(role="handler")
    assert isinstance(err.value, DomainError)
    assert case.version == 1


def test_invalid_command_is_422() -> None:
    case = filed()
    with pytest.raises(InvalidCommand) as err:
        run(case, "dispatch", "dispatcher", 5, department=OTHER)
    assert err.value.http_status == 422
    assert err.value.to_dict() == {
        "error": "invalid_command",
        "message": err.value.message,
        "field": "override_reason",
    }


def test_unknown_argument_is_refused_not_dropped() -> None:
    case = filed()
    with pytest.raises(ValidationError):
        run(case, "dispatch", "dispatcher", 5, handle_due=at(300).isoformat())
    with pytest.raises(ValidationError):
        run(case, "file", "dispatcher", 5, dispatch_due=at(60).isoformat())
    assert case.version == 2


def test_same_command_id_twice_gives_one_event() -> None:
    case = report()
    run(case, "file", "dispatcher", 1, cid="dup-1")
    run(case, "file", "dispatcher", 1, cid="dup-1")
    # A redelivery is ignored before any check, even if it would now be illegal or refused.
    run(case, "reject", "dispatcher", 2, cid="dup-1", reason="x")
    run(case, "report_result", "handler", 2, cid="dup-1", note="x")
    assert names(case.collect_events()) == ["Reported", "Filed"]
    assert case.state.applied_commands.count("dup-1") == 1


def test_time_must_be_aware_and_not_go_backwards() -> None:
    case = filed()
    with pytest.raises(InvalidCommand) as back:
        run(case, "supervise", "supervisor", 0, reason="x")
    assert back.value.field == "at"
    with pytest.raises(ValidationError):  # the wire format refuses a naive time
        run(case, "supervise", "supervisor", datetime(2026, 11, 23, 10), reason="x")
    naive = Context("s", "supervisor", "web", datetime(2026, 11, 23, 10), "naive-1", REF)
    with pytest.raises(InvalidCommand):  # and so does the aggregate
        case.execute("supervise", ARGS["supervise"].model_validate({"reason": "x"}), naive)
    run(case, "supervise", "supervisor", 1, reason="same instant is fine")
    assert case.version == 3


def test_report_validation() -> None:
    for bad in (
        {"source": "fax"},
        {"reporter": {"name": "x", "type": "alien"}},
        {"reporter": {"type": "system"}},
        {"lat": 26.5, "lon": None},
        {"lat": 95.0, "lon": 10.0},
        {"photos": [{"blob": "raw"}]},
        {"description": "  "},
        {"surprise": 1},
    ):
        with pytest.raises(ValidationError):
            report(**bad)
    with pytest.raises(ValidationError):
        report(case_no="")
    with pytest.raises(InvalidCommand) as category:
        report(category="XX9999")
    assert category.value.field == "category"
    case = report(lat=None, lon=None, address=None, photos=[])
    assert case.state.due == due("file", 0) and case.state.lat is None
    assert case.state.node == "520102"  # from the triage proposal


def test_unknown_grid_is_invalid() -> None:
    args = report_args()
    args["grid"] = "520102999999"
    case_args = ARGS["report"].model_validate(args)
    ctx = Context("i", "inspector", "app", at(0), "g-1", REF)
    with pytest.raises(InvalidCommand) as err:
        Case.create(UUID(int=5), "GD-5", case_args, ctx)
    assert err.value.field == "grid"


def test_return_visit_once_and_validated() -> None:
    case = in_progress()
    run(case, "report_result", "handler", 10, note="ok")
    run(case, "verify_pass", "inspector", 20)
    with pytest.raises(IllegalTransition):
        run(case, "return_visit", "call_taker", 21, satisfaction="satisfied")
    run(case, "close", "dispatcher", 30)
    with pytest.raises(ValidationError):
        run(case, "return_visit", "call_taker", 40, satisfaction="so-so")
    run(case, "return_visit", "call_taker", 40, satisfaction="dissatisfied", comment="太慢")
    assert SATISFACTION_LABELS[case.state.satisfaction or ""] == "不满意"
    with pytest.raises(IllegalTransition) as again:
        run(case, "return_visit", "call_taker", 41, satisfaction="satisfied")
    assert again.value.to_dict()["allowed_actions"] == []


def test_input_objects_are_copied_into_events() -> None:
    reporter = {"name": "赵六", "type": "citizen"}
    case = report(reporter=reporter)
    reporter["name"] = "changed later"
    (event,) = case.collect_events()
    assert isinstance(event, Reported)
    assert event.reporter["name"] == "赵六" and case.state.reporter["name"] == "赵六"
    assert recompute_hash(event) == event.hash


def test_state_and_recorded_event_do_not_share_containers() -> None:
    case = report(reporter={"name": "赵六", "type": "citizen"})
    (event,) = case.collect_events()
    case.state.reporter["name"] = "mutated state"
    assert event.reporter["name"] == "赵六"
    assert recompute_hash(event) == event.hash


# --- replay and persistence ------------------------------------------------------------------


def _busy_case() -> tuple[Case, Case]:
    """A case that has been through most exception paths (and a duplicate merged into it)."""
    case = dispatched()
    run(case, "return_case", "handler", 4, reason="非本部门")
    run(case, "dispatch", "dispatcher", 5, department=OTHER, override_reason="水务")
    run(case, "accept", "handler", 6)
    run(case, "request_extension", "handler", 7, hours=2.5, reason="材料")
    run(case, "approve_extension", "shift_leader", 8)
    run(case, "suspend", "handler", 9, reason="预算", review_at=at(3000))
    run(case, "supervise", "supervisor", 10, reason="慢")
    run(case, "resume", "shift_leader", 11, note="预算到位")
    run(case, "report_result", "handler", 12, note="修好",
        photos=[{"digest": "sha256:" + "11" * 32, "size": 1, "content_type": "image/png"}])
    run(case, "verify_fail", "inspector", 13, note="未修好")
    run(case, "escalate", "dispatcher", 14, reason="跨部门")
    dup = report(when=15, reporter={"name": "x", "type": "open311"})
    run(dup, "mark_duplicate", "shift_leader", 16, others=[case],
        of_case_no=case.state.case_no, of_case_id=str(case.id))
    dispatch_due = case.state.due
    assert dispatch_due is not None
    run(case, "mark_warning", "system", 17, step="dispatch", due=dispatch_due)
    overdue_at = (dispatch_due - at(0)).total_seconds() / 60 + 1
    run(case, "mark_overdue", "system", overdue_at, step="dispatch", due=dispatch_due)
    return case, dup


def test_replay_from_collected_events_reproduces_state() -> None:
    case, _dup = _busy_case()
    events = case.collect_events()
    assert names(events)[-3:] == ["ReporterLinked", "WarningMarked", "OverdueMarked"]
    rebuilt = replay(events)
    assert rebuilt.snapshot_dict() == case.snapshot_dict()
    assert rebuilt.state == case.state
    assert verify_chain(events) is None
    s = rebuilt.state
    assert s.rework_count == 1 and s.wrong_dispatches == 1 and s.extension_count == 1
    assert s.escalations == 1 and s.supervision_orders == 1 and s.suspension_count == 1
    assert s.overdue_count == 1 and len(s.reporters) == 2 and s.level == "city"


def test_verify_chain_finds_tampering() -> None:
    case, _dup = _busy_case()
    events = list(case.collect_events())
    assert verify_chain(events) is None
    forged = dataclasses.replace(cast(Any, events[3]), actor="someone-else")
    assert verify_chain([*events[:3], forged, *events[4:]]) == 4
    assert verify_chain(events[:2] + events[3:]) == 4  # a removed event breaks the link
    assert verify_chain([events[1], events[0]]) == 2


def test_round_trip_through_eventsourcing_application_popo() -> None:
    """eventsourcing's own in-memory (POPO) persistence, with its JSON transcoder."""
    app: Application[UUID] = Application()
    case, dup = _busy_case()
    app.save(case, dup)
    loaded: Case = app.repository.get(case.id)
    assert isinstance(loaded, Case)
    assert loaded.snapshot_dict() == case.snapshot_dict()
    assert loaded.state == case.state
    stored = list(app.repository.event_store.get(case.id))
    assert names(stored)[0] == "Reported" and len(stored) == case.version
    assert verify_chain(stored) is None  # hashes survive transcoding
    assert app.repository.get(dup.id).state.status is Status.merged
    # Continue on the loaded copy: same idempotency memory, chain goes on.
    last_cid = loaded.state.applied_commands[-1]
    later = loaded.modified_on + timedelta(minutes=1)
    run(loaded, "supervise", "supervisor", later, cid=last_cid, reason="again")
    assert loaded.version == case.version
    run(loaded, "supervise", "supervisor", later, reason="again")
    app.save(loaded)
    stored = list(app.repository.event_store.get(case.id))
    assert verify_chain(stored) is None
    assert stored[-1].hash == loaded.state.last_hash
    # State at a past moment: replay a prefix.
    past: Case = app.repository.get(case.id, version=6)
    assert past.state.status is Status.in_progress and past.state.department == OTHER


def test_state_of_a_uuid_case_id_is_string_in_snapshot() -> None:
    case_id = UUID("00000000-0000-4000-8000-000000000001")
    case = report(case_id=case_id)
    snap = case.snapshot_dict()
    assert case.id == case_id and snap["id"] == str(case_id)
    assert snap["reported_at"] == "2026-11-23T01:00:00.000000Z"
    assert all(not isinstance(v, datetime) for v in snap.values())
    assert "applied_commands" not in snap


def test_zone_of_given_times_does_not_change_hash_input() -> None:
    a = report(case_id=UUID(int=7), case_no="N1", cid="r1", when=at(0))
    b = report(case_id=UUID(int=7), case_no="N1", cid="r1", when=at(0).astimezone(CST))
    c = report(case_id=UUID(int=7), case_no="N1", cid="r1", when=at(0).astimezone(UTC))
    assert a.state.last_hash == b.state.last_hash == c.state.last_hash


# --- recording without the dataclass __init__ (aggregates.case.new_event) -------------------


def test_new_event_is_the_dataclass_constructor() -> None:
    """The same attributes in the same order (the stored JSON keeps it), defaults filled, and
    the constructor's TypeError for a missing or unknown field or a non-UUID id."""
    import dataclasses

    import pytest as _pytest

    from aggregates.actions.closing import VerificationPassed
    from aggregates.case import new_event
    from aggregates.events import CaseEvent
    from tests.unit.casekit import report, run

    case = report(lat=26.58713789, lon=106.71347)
    for when, (verb, role) in enumerate(
        [("file", "dispatcher"), ("dispatch", "dispatcher"), ("accept", "handler"),
         ("request_extension", "handler"), ("approve_extension", "shift_leader"),
         ("report_result", "handler"), ("verify_pass", "inspector"), ("close", "dispatcher")],
        start=1,
    ):
        if verb == "report_result":
            run(case, verb, role, when, note="已处置")
        elif verb == "request_extension":
            run(case, verb, role, when, hours=4, reason="材料未到")
        else:
            run(case, verb, role, when)
    events = list(case.collect_events())
    assert len(events) == 9
    for event in events:
        assert isinstance(event, CaseEvent)
        fields = dict(vars(event))
        made = new_event(type(event), dict(fields))
        built = type(event)(**fields)
        assert type(made) is type(built)
        assert list(vars(made).items()) == list(vars(built).items())
    verified = dict(vars(events[-2]))
    assert isinstance(events[-2], VerificationPassed)
    for name in ("lat", "lon", "photo_taken_at", "distance_m", "radius_m"):
        del verified[name]  # fields with defaults (added later)
    assert list(vars(new_event(VerificationPassed, dict(verified))).items()) == list(
        vars(VerificationPassed(**verified)).items()
    )
    names = [f.name for f in dataclasses.fields(VerificationPassed)]
    assert list(vars(new_event(VerificationPassed, dict(verified)))) == names
    with _pytest.raises(TypeError):
        new_event(VerificationPassed, {k: v for k, v in verified.items() if k != "note"})
    with _pytest.raises(TypeError):
        new_event(VerificationPassed, {**verified, "unknown": 1})
    with _pytest.raises(TypeError):
        new_event(VerificationPassed, {**verified, "originator_id": str(case.id)})
