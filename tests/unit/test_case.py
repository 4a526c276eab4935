"""Unit tests of the `Case` aggregate (案件) and the state table.

Why: the aggregate is where the counting rules (返工 vs 錯誤派遣, extension limits, 督辦,
上提) are decided once, and where the hash chain starts. Each test drives commands with
explicit times (no clock) and checks both the state and the recorded events.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application

from aggregates.case import (
    NON_PAYLOAD_FIELDS,
    SATISFACTION,
    Case,
    event_payload,
    recompute_hash,
    verify_chain,
)
from aggregates.errors import DomainError, IllegalTransition, InvalidCommand, NotPermitted
from aggregates.integrity import GENESIS, event_hash
from aggregates.states import (
    ROLE_ACTIONS,
    ROLES,
    STATUS_ZH,
    TERMINAL,
    TRANSITIONS,
    Action,
    Status,
    allowed_actions,
)

CST = timezone(timedelta(hours=8))  # 北京時間
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=CST)
PROPOSAL = {
    "department": "sanitation",
    "level": "community",
    "node": "C01",
    "priority": "ordinary",
    "reasons": ["category default"],
}
_ids = itertools.count(1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ctx(
    role: str, minutes: float, *, actor: str | None = None, cid: str | None = None
) -> dict[str, Any]:
    """Common command keywords; a fresh command id unless one is given."""
    return {
        "actor": actor or f"{role}-1",
        "role": role,
        "channel": "web",
        "at": at(minutes),
        "command_id": cid or f"cmd-{next(_ids)}",
    }


def new_case(**overrides: Any) -> Case:
    kwargs: dict[str, Any] = {
        "case_id": uuid4(),
        "case_no": f"GY2024-{next(_ids):06d}",
        "category": "exposed_garbage",
        "kind": "event",
        "grid": "520102001001001",
        "community": "C01",
        "district": "D01",
        "lat": 26.58,
        "lon": 106.71,
        "address": "中華北路 1 號",
        "description": "垃圾暴露 garbage piled up",
        "reporter": {"name": "李四", "phone": "13800000000", "id": "insp-7", "type": "inspector"},
        "source": "inspector_app",
        "client_time": at(-5),
        "photos": [{"sha256": "ab" * 32, "size": 1024}],
        "priority": "ordinary",
        "level": "community",
        "proposal": dict(PROPOSAL),
        "file_due": at(30),
        **ctx("inspector", 0),
    }
    kwargs.update(overrides)
    return Case.report(**kwargs)


def filed(case: Case | None = None) -> Case:
    case = case or new_case()
    case.file(dispatch_due=at(60), note=None, **ctx("dispatcher", 1))
    return case


def dispatched(case: Case | None = None, department: str = "sanitation") -> Case:
    case = filed(case)
    reason = None if department == "sanitation" else "triage proposal wrong"
    case.dispatch(
        department=department,
        level="community",
        node="C01",
        priority="ordinary",
        handle_due=at(600),
        override_reason=reason,
        **ctx("dispatcher", 2, actor="disp-A"),
    )
    return case


def in_progress(case: Case | None = None) -> Case:
    case = dispatched(case)
    case.accept(**ctx("handler", 3))
    return case


def names(events: Sequence[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def replay(events: Sequence[Any]) -> Case:
    """Rebuild an aggregate by projecting its events (what the repository does)."""
    case: Case | None = None
    for event in events:
        case = event.mutate(case)
    assert case is not None
    return case


def state(case: Case) -> dict[str, Any]:
    return {k: v for k, v in case.__dict__.items() if k != "_pending_events"}


# --- the state table -------------------------------------------------------------------------


def test_table_covers_every_status_and_targets_are_statuses() -> None:
    assert set(TRANSITIONS) == set(Status)
    assert set(STATUS_ZH) == set(Status)
    for row in TRANSITIONS.values():
        for action, target in row.items():
            assert isinstance(action, Action)
            assert target is None or isinstance(target, Status)
    assert TRANSITIONS[Status.rejected] == {} and TRANSITIONS[Status.merged] == {}
    assert TRANSITIONS[Status.closed] == {Action.return_visit: None}
    assert all(Action.report not in row for row in TRANSITIONS.values())


def test_anytime_actions_only_in_non_terminal_statuses() -> None:
    anytime = {Action.supervise, Action.link_reporter, Action.mark_warning, Action.mark_overdue}
    for status, row in TRANSITIONS.items():
        if status in TERMINAL:
            assert not anytime & set(row)
        else:
            assert anytime <= set(row)
            assert all(row[a] is None for a in anytime)


def test_roles_and_allowed_actions() -> None:
    assert set(ROLE_ACTIONS) == set(ROLES)
    assert ROLE_ACTIONS["auditor"] == frozenset() and ROLE_ACTIONS["admin"] == frozenset()
    assert ROLE_ACTIONS["dispatcher"] <= ROLE_ACTIONS["shift_leader"]
    assert allowed_actions(Status.reported) == [
        Action.file,
        Action.reject,
        Action.mark_duplicate,
        Action.link_reporter,
        Action.supervise,
        Action.mark_warning,
        Action.mark_overdue,
    ]
    assert allowed_actions(Status.reported, "call_taker") == [Action.reject]
    assert allowed_actions(Status.in_progress, "handler") == [
        Action.return_case,
        Action.request_extension,
        Action.suspend,
        Action.report_result,
    ]
    assert allowed_actions(Status.closed, "call_taker") == [Action.return_visit]
    assert allowed_actions(Status.closed, "dispatcher") == []
    assert allowed_actions(Status.filed, "nobody") == []
    assert allowed_actions(Status.filed, "auditor") == []


# --- happy path ------------------------------------------------------------------------------


def test_happy_path_closed_loop_with_chained_hashes() -> None:
    case = new_case()
    assert case.status is Status.reported
    assert case.version == 1 and case.due == at(30) and case.due_step == "file"
    case.file(dispatch_due=at(60), note="符合立案條件", **ctx("shift_leader", 5))
    assert case.status is Status.filed and case.due_step == "dispatch"
    case.dispatch(
        department="sanitation",
        level="community",
        node="C01",
        priority="ordinary",
        handle_due=at(300),
        override_reason=None,
        **ctx("dispatcher", 10),
    )
    assert case.status is Status.dispatched and case.department == "sanitation"
    assert not case.overridden and case.due == at(300) and case.due_step == "handle"
    case.accept(**ctx("handler", 20))
    assert case.status is Status.in_progress
    case.report_result(
        note="已清運", photos=[{"sha256": "cd" * 32, "size": 2048}], **ctx("handler", 120)
    )
    assert case.status is Status.awaiting_verification and case.due is None
    assert case.result is not None and case.result["note"] == "已清運"
    case.verify_pass(note="現場已清理", photos=[], **ctx("inspector", 150))
    assert case.status is Status.verified
    case.close(note="結案", **ctx("shift_leader", 160))
    assert case.status is Status.closed and case.closed_at == at(160) and case.due is None
    case.return_visit(satisfaction="satisfied", comment="很快", **ctx("call_taker", 2000))
    assert case.satisfaction == "satisfied"

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
    assert case.last_hash == events[-1].hash
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
    snap = case.snapshot_dict()
    assert snap["status"] == "closed" and snap["status_zh"] == "已結案"
    assert snap["closed_at"] == "2024-05-06T03:40:00.000000Z"
    assert snap["satisfaction"] == "satisfied"


def test_first_event_hash_is_the_documented_formula() -> None:
    case = new_case()
    (collected,) = case.collect_events()
    event = cast(Case.Reported, collected)
    payload = event_payload(event)
    assert set(payload) == {
        f.name for f in dataclasses.fields(event) if f.name not in NON_PAYLOAD_FIELDS
    }
    assert {"actor", "role", "channel", "reason", "command_id", "case_no"} <= set(payload)
    expected = event_hash(GENESIS, str(case.id), 1, "Reported", event.timestamp, payload)
    assert event.hash == expected


def test_event_timestamps_are_the_given_times() -> None:
    case = in_progress()
    events = case.collect_events()
    assert [e.timestamp for e in events] == [at(0), at(1), at(2), at(3)]
    assert case.created_on == at(0) and case.modified_on == at(3)


def test_common_event_fields() -> None:
    case = filed()
    event = case.collect_events()[-1]
    assert isinstance(event, Case.Filed)
    assert (event.actor, event.role, event.channel) == ("dispatcher-1", "dispatcher", "web")
    assert event.command_id in case.applied_commands
    assert (event.from_status, event.to_status) == ("reported", "filed")


# --- filing exceptions -----------------------------------------------------------------------


def test_reject_needs_reason_and_is_terminal() -> None:
    case = new_case()
    with pytest.raises(InvalidCommand) as err:
        case.reject(reason="  ", **ctx("dispatcher", 1))
    assert err.value.to_dict() == {
        "error": "invalid_command",
        "message": "reason is required",
        "field": "reason",
    }
    case.reject(reason="不屬於城管範圍", **ctx("call_taker", 2))
    assert case.status is Status.rejected and case.rejection_reason == "不屬於城管範圍"
    assert case.available_actions() == []
    with pytest.raises(IllegalTransition) as illegal:
        case.file(dispatch_due=at(10), **ctx("dispatcher", 3))
    assert illegal.value.to_dict()["allowed_actions"] == []
    assert illegal.value.to_dict()["status_zh"] == "不予立案"


def test_duplicate_merges_and_links_reporter_on_original() -> None:
    original = new_case()
    dup = new_case(reporter={"name": "王五", "phone": "139", "id": None, "type": "citizen"})
    with pytest.raises(InvalidCommand):
        dup.mark_duplicate(of_case_no=dup.case_no, of_case_id=dup.id, **ctx("dispatcher", 1))
    original.link_reporter(reporter=dup.reporter, from_case_no=dup.case_no, **ctx("dispatcher", 2))
    dup.mark_duplicate(of_case_no=original.case_no, of_case_id=original.id, **ctx("dispatcher", 2))
    assert dup.status is Status.merged
    assert dup.duplicate_of == original.case_no and dup.duplicate_of_id == str(original.id)
    assert dup.due is None
    assert original.status is Status.reported
    assert [r["name"] for r in original.reporters] == ["李四", "王五"]
    assert original.reporters[1]["from_case_no"] == dup.case_no
    merged_event = dup.collect_events()[-1]
    assert isinstance(merged_event, Case.MarkedDuplicate)
    assert merged_event.of_case_id == str(original.id)
    with pytest.raises(IllegalTransition):
        dup.link_reporter(reporter={}, from_case_no="X", **ctx("system", 3))


# --- dispatch: override, return, wrong dispatch ------------------------------------------


def test_override_needs_reason() -> None:
    case = filed()
    base: dict[str, Any] = {"level": "community", "node": "C01", "handle_due": at(300)}
    with pytest.raises(InvalidCommand) as err:
        case.dispatch(department="roads", priority="ordinary", **base, **ctx("dispatcher", 5))
    assert err.value.field == "override_reason"
    with pytest.raises(InvalidCommand):
        case.dispatch(department="sanitation", priority="urgent", **base, **ctx("dispatcher", 5))
    case.dispatch(
        department="roads",
        priority="urgent",
        override_reason="井蓋屬道路部門",
        **base,
        **ctx("dispatcher", 6),
    )
    event = case.collect_events()[-1]
    assert isinstance(event, Case.Dispatched)
    assert event.overridden and event.override_reason == "井蓋屬道路部門"
    assert case.overridden and case.priority == "urgent"


def test_return_and_redispatch_elsewhere_is_a_wrong_dispatch() -> None:
    case = dispatched()
    with pytest.raises(InvalidCommand):
        case.return_case(reason="", **ctx("handler", 5))
    case.return_case(reason="不屬本部門", dispatch_due=at(40), **ctx("handler", 5))
    assert case.status is Status.returned and case.return_count == 1
    assert case.returned_from == "sanitation" and case.department is None
    assert case.due == at(40) and case.due_step == "dispatch"
    case.dispatch(
        department="greening",
        level="community",
        node="C01",
        priority="ordinary",
        handle_due=at(700),
        override_reason="綠化帶內垃圾歸園林",
        **ctx("dispatcher", 10, actor="disp-B"),
    )
    event = case.collect_events()[-1]
    assert isinstance(event, Case.Dispatched)
    assert event.redispatch and event.wrong_dispatch
    assert event.previous_department == "sanitation"
    assert event.previous_dispatcher == "disp-A"  # counts against the first dispatcher
    assert case.wrong_dispatches == 1 and case.department == "greening"
    assert case.rework_count == 0


def test_redispatch_to_same_department_is_not_wrong() -> None:
    case = dispatched()
    case.return_case(reason="地址不清", **ctx("handler", 5))
    assert case.due is None  # no re-dispatch clock given
    case.dispatch(
        department="sanitation",
        level="community",
        node="C01",
        priority="ordinary",
        handle_due=at(700),
        **ctx("dispatcher", 10),
    )
    event = case.collect_events()[-1]
    assert isinstance(event, Case.Dispatched)
    assert event.redispatch and not event.wrong_dispatch
    assert case.wrong_dispatches == 0 and case.dispatch_count == 2


# --- extensions --------------------------------------------------------------------------


def test_extension_request_approve_and_second_extension_rule() -> None:
    case = in_progress()
    with pytest.raises(IllegalTransition) as no_pending:
        case.approve_extension(new_due=at(900), **ctx("shift_leader", 4))
    assert "approve_extension" not in no_pending.value.to_dict()["allowed_actions"]
    with pytest.raises(InvalidCommand):
        case.request_extension(hours=0, reason="x", **ctx("handler", 5))
    with pytest.raises(InvalidCommand):
        case.request_extension(hours=4, reason=None, **ctx("handler", 5))  # type: ignore[arg-type]
    case.request_extension(hours=4, reason="材料未到", **ctx("handler", 5))
    assert case.pending_extension is not None and case.pending_extension["hours"] == 4.0
    with pytest.raises(IllegalTransition):  # one pending request at a time
        case.request_extension(hours=2, reason="again", **ctx("handler", 6))
    with pytest.raises(InvalidCommand):  # must actually extend
        case.approve_extension(new_due=at(600), **ctx("shift_leader", 7))
    case.approve_extension(new_due=at(840), **ctx("shift_leader", 7))
    assert case.extension_count == 1 and case.due == at(840) and case.pending_extension is None

    case.request_extension(hours=4, reason="天氣", **ctx("handler", 8))
    with pytest.raises(InvalidCommand) as limit:
        case.approve_extension(new_due=at(1080), **ctx("shift_leader", 9))
    assert limit.value.field == "role"
    with pytest.raises(InvalidCommand) as no_reason:
        case.approve_extension(new_due=at(1080), **ctx("supervisor", 9))
    assert no_reason.value.field == "reason"
    case.approve_extension(new_due=at(1080), reason="工程量大", **ctx("supervisor", 10))
    event = case.collect_events()[-1]
    assert isinstance(event, Case.ExtensionApproved)
    assert event.beyond_limit and event.extension_number == 2 and event.hours == 4.0
    assert event.previous_due == at(840)
    assert case.extension_count == 2


def test_engineering_case_needs_supervisor_for_first_extension() -> None:
    case = in_progress()
    case.request_extension(hours=8, reason="需施工", **ctx("handler", 5))
    with pytest.raises(InvalidCommand):
        case.approve_extension(new_due=at(900), max_extensions=0, **ctx("shift_leader", 6))
    case.approve_extension(
        new_due=at(900), max_extensions=0, reason="工程類", **ctx("supervisor", 6)
    )
    assert case.extension_count == 1


def test_refuse_extension_keeps_deadline() -> None:
    case = in_progress()
    case.request_extension(hours=4, reason="材料未到", **ctx("handler", 5))
    with pytest.raises(InvalidCommand):
        case.refuse_extension(reason="", **ctx("shift_leader", 6))
    case.refuse_extension(reason="可按期完成", **ctx("shift_leader", 6))
    assert case.pending_extension is None and case.due == at(600) and case.extension_count == 0
    with pytest.raises(IllegalTransition):
        case.refuse_extension(reason="again", **ctx("shift_leader", 7))


def test_pending_extension_dropped_when_leaving_handling() -> None:
    case = in_progress()
    case.request_extension(hours=4, reason="x", **ctx("handler", 5))
    case.report_result(note="done", photos=[], **ctx("handler", 6))
    assert case.pending_extension is None


# --- suspension ------------------------------------------------------------------------------


def test_suspend_and_resume_move_the_clock() -> None:
    case = in_progress()
    with pytest.raises(InvalidCommand):
        case.suspend(reason="", review_at=at(5000), **ctx("shift_leader", 5))
    with pytest.raises(InvalidCommand):
        case.suspend(reason="需預算", review_at=at(4), **ctx("shift_leader", 5))
    case.suspend(reason="需預算", review_at=at(5000), **ctx("shift_leader", 5))
    assert case.status is Status.suspended
    assert case.due == at(5000) and case.due_step == "review"
    assert case.paused_due == at(600) and case.suspended_at == at(5)
    with pytest.raises(IllegalTransition):
        case.report_result(note="x", photos=[], **ctx("handler", 6))
    case.resume(new_due=at(1600), **ctx("handler", 1005))
    assert case.status is Status.in_progress
    assert case.due == at(1600) and case.due_step == "handle"
    assert case.paused_due is None and case.suspended_at is None
    event = case.collect_events()[-1]
    assert isinstance(event, Case.Resumed) and event.suspended_since == at(5)


# --- verification and rework -----------------------------------------------------------------


def test_verify_fail_is_rework_to_same_department() -> None:
    case = in_progress()
    case.report_result(note="已修復", photos=[], verify_due=at(200), **ctx("handler", 100))
    assert case.due == at(200) and case.due_step == "verify"
    with pytest.raises(InvalidCommand):
        case.verify_fail(note="", new_due=at(900), **ctx("inspector", 150))
    case.verify_fail(
        note="仍有垃圾", photos=[{"sha256": "ef"}], new_due=at(900), **ctx("inspector", 150)
    )
    assert case.status is Status.dispatched and case.department == "sanitation"
    assert case.rework_count == 1 and case.wrong_dispatches == 0
    assert case.due == at(900) and case.due_step == "handle"
    case.accept(**ctx("handler", 160))
    case.report_result(note="再次清理", photos=[], **ctx("handler", 200))
    case.verify_fail(note="仍未清理", new_due=at(1200), **ctx("inspector", 210))
    assert case.rework_count == 2
    event = case.collect_events()[-1]
    assert isinstance(event, Case.VerificationFailed) and event.rework_number == 2


# --- escalation ------------------------------------------------------------------------------


def test_escalate_community_district_city_then_top_refused() -> None:
    case = in_progress()
    with pytest.raises(InvalidCommand):
        case.escalate(to_level="district", to_node="D01", reason="", **ctx("dispatcher", 5))
    with pytest.raises(InvalidCommand):
        case.escalate(to_level="community", to_node="C01", reason="x", **ctx("dispatcher", 5))
    district_proposal = {"department": "district-sanitation", "priority": "ordinary"}
    case.escalate(
        to_level="district",
        to_node="D01",
        reason="跨社區",
        automatic=False,
        proposal=district_proposal,
        dispatch_due=at(60),
        **ctx("dispatcher", 5),
    )
    assert case.status is Status.filed and case.level == "district" and case.node == "D01"
    assert case.department is None and case.escalations == 1
    assert case.proposal == district_proposal and case.due == at(60)
    # After escalation, overrides are judged against the new level's proposal.
    case.dispatch(
        department="district-sanitation",
        level="district",
        node="D01",
        priority="ordinary",
        handle_due=at(500),
        **ctx("dispatcher", 6),
    )
    assert not case.overridden
    case.escalate(
        to_level="city", to_node="CITY", reason="超期", automatic=True, **ctx("system", 700)
    )
    assert case.level == "city" and case.escalations == 2 and case.proposal == {}
    event = case.collect_events()[-1]
    assert isinstance(event, Case.Escalated)
    assert event.automatic and event.from_level == "district"
    assert event.previous_department == "district-sanitation"
    with pytest.raises(InvalidCommand) as top:
        case.escalate(to_level=None, to_node=None, reason="再上提", **ctx("supervisor", 701))
    assert top.value.field == "to_level"
    assert case.escalations == 2


def test_reported_case_cannot_be_escalated() -> None:
    case = new_case()
    with pytest.raises(IllegalTransition):
        case.escalate(to_level="district", reason="x", **ctx("dispatcher", 1))


# --- supervision and traffic lights ----------------------------------------------------------


def test_supervise_counts_orders() -> None:
    case = dispatched()
    with pytest.raises(InvalidCommand):
        case.supervise(reason="", **ctx("supervisor", 5))
    case.supervise(reason="群眾反映強烈", **ctx("supervisor", 5))
    case.supervise(reason="仍未處置", **ctx("supervisor", 6))
    assert case.supervised and case.supervision_orders == 2
    with pytest.raises(NotPermitted):
        case.supervise(reason="x", **ctx("dispatcher", 7))


def test_warning_and_overdue_once_per_deadline() -> None:
    case = in_progress()  # handle due at(600)
    case.mark_warning(step="handle", **ctx("system", 480))
    case.mark_warning(step="handle", **ctx("system", 490))  # same deadline: ignored
    case.mark_warning(step="dispatch", **ctx("system", 495))  # stale step: ignored
    case.mark_warning(step="handle", due=at(500), **ctx("system", 496))  # stale due: ignored
    assert case.is_warned and not case.is_overdue
    with pytest.raises(InvalidCommand):  # not yet overdue
        case.mark_overdue(step="handle", **ctx("system", 500))
    case.mark_overdue(step="handle", due=at(600), **ctx("system", 601))
    case.mark_overdue(step="handle", **ctx("system", 700))
    assert case.is_overdue and case.overdue_count == 1
    events = case.collect_events()
    assert names(events)[-2:] == ["WarningMarked", "OverdueMarked"]
    assert sum(1 for e in events if isinstance(e, Case.WarningMarked)) == 1
    # A new deadline (extension) may be warned / marked again.
    case.request_extension(hours=4, reason="x", **ctx("handler", 701))
    case.approve_extension(new_due=at(960), **ctx("shift_leader", 702))
    assert not case.is_warned and not case.is_overdue
    case.mark_overdue(step="handle", **ctx("system", 961))
    assert case.overdue_count == 2


def test_traffic_lights_not_on_terminal_cases() -> None:
    case = new_case()
    case.reject(reason="x", **ctx("dispatcher", 1))
    with pytest.raises(IllegalTransition):
        case.mark_overdue(step="file", **ctx("system", 100))


# --- errors: illegal, not permitted, idempotency, time -----------------------------------


def test_illegal_transition_names_status_and_allowed_actions() -> None:
    case = new_case()
    with pytest.raises(IllegalTransition) as err:
        case.dispatch(
            department="sanitation",
            level="community",
            node="C01",
            priority="ordinary",
            handle_due=at(100),
            **ctx("dispatcher", 1),
        )
    body = err.value.to_dict()
    assert body == {
        "error": "illegal_transition",
        "message": body["message"],
        "action": "dispatch",
        "status": "reported",
        "status_zh": "已上報(待立案)",
        "allowed_actions": ["file", "reject", "mark_duplicate", "link_reporter"],
    }
    assert "dispatch" in body["message"] and "reported" in body["message"]
    assert err.value.http_status == 409
    assert case.version == 1


def test_wrong_role_is_not_permitted() -> None:
    case = new_case()
    with pytest.raises(NotPermitted) as err:
        case.file(dispatch_due=at(10), **ctx("handler", 1))
    assert err.value.to_dict() == {
        "error": "not_permitted",
        "message": "role 'handler' may not perform 'file'",
        "action": "file",
        "role": "handler",
    }
    assert err.value.http_status == 403
    for role in ("auditor", "admin", "stranger"):
        with pytest.raises(NotPermitted):
            case.supervise(reason="x", **ctx(role, 1))
    with pytest.raises(NotPermitted):
        new_case(**ctx("handler", 0))
    assert isinstance(err.value, DomainError)


def test_same_command_id_twice_gives_one_event() -> None:
    case = new_case()
    cmd = ctx("dispatcher", 1, cid="dup-1")
    case.file(dispatch_due=at(60), **cmd)
    case.file(dispatch_due=at(60), **cmd)
    # A redelivery is ignored before any check, even if it would now be illegal.
    case.reject(reason="x", **ctx("dispatcher", 2, cid="dup-1"))
    assert names(case.collect_events()) == ["Reported", "Filed"]
    assert case.applied_commands.count("dup-1") == 1


def test_time_must_be_aware_and_not_go_backwards() -> None:
    case = filed()
    with pytest.raises(InvalidCommand) as back:
        case.supervise(reason="x", **ctx("supervisor", 0))
    assert back.value.field == "at"
    naive = ctx("supervisor", 5)
    naive["at"] = datetime(2024, 5, 6, 10)
    with pytest.raises(InvalidCommand):
        case.supervise(reason="x", **naive)
    with pytest.raises(InvalidCommand):
        case.dispatch(
            department="sanitation",
            level="community",
            node="C01",
            priority="ordinary",
            handle_due=datetime(2024, 5, 7),
            **ctx("dispatcher", 5),
        )
    case.supervise(reason="same instant is fine", **ctx("supervisor", 1))


def test_report_validation() -> None:
    with pytest.raises(InvalidCommand) as src:
        new_case(source="fax")
    assert src.value.field == "source"
    with pytest.raises(InvalidCommand):
        new_case(reporter={"name": "x", "type": "alien"})
    with pytest.raises(InvalidCommand):
        new_case(lat=26.5, lon=None)
    with pytest.raises(InvalidCommand):
        new_case(lat=95.0, lon=10.0)
    with pytest.raises(InvalidCommand):
        new_case(case_no="")
    with pytest.raises(InvalidCommand):
        new_case(photos=[{"blob": b"raw"}])  # not storable as JSON
    case = new_case(lat=None, lon=None, address=None, photos=None, proposal=None, file_due=None)
    assert case.due is None and case.node is None and case.proposal == {}
    assert new_case().node == "C01"  # from the triage proposal
    assert new_case(node="C99").node == "C99"


def test_return_visit_once_and_validated() -> None:
    case = in_progress()
    case.report_result(note="ok", photos=[], **ctx("handler", 10))
    case.verify_pass(note=None, photos=[], **ctx("inspector", 20))
    with pytest.raises(IllegalTransition):
        case.return_visit(satisfaction="satisfied", **ctx("call_taker", 21))
    case.close(**ctx("dispatcher", 30))
    with pytest.raises(InvalidCommand):
        case.return_visit(satisfaction="so-so", **ctx("call_taker", 40))
    case.return_visit(satisfaction="dissatisfied", comment="太慢", **ctx("call_taker", 40))
    assert SATISFACTION[case.satisfaction or ""] == "不滿意"
    with pytest.raises(IllegalTransition) as again:
        case.return_visit(satisfaction="satisfied", **ctx("call_taker", 41))
    assert again.value.to_dict()["allowed_actions"] == []


def test_input_objects_are_copied_into_events() -> None:
    reporter = {"name": "趙六", "type": "citizen"}
    case = new_case(reporter=reporter)
    reporter["name"] = "changed later"
    (event,) = case.collect_events()
    assert isinstance(event, Case.Reported)
    assert event.reporter["name"] == "趙六" and case.reporter["name"] == "趙六"
    case.reporter["name"] = "mutated state"
    assert event.reporter["name"] == "趙六"
    assert recompute_hash(event) == event.hash


# --- replay and persistence ------------------------------------------------------------------


def _busy_case() -> Case:
    """A case that has been through most exception paths."""
    case = dispatched()
    case.return_case(reason="非本部門", dispatch_due=at(30), **ctx("handler", 4))
    case.dispatch(
        department="roads",
        level="community",
        node="C01",
        priority="ordinary",
        handle_due=at(600),
        override_reason="道路",
        **ctx("dispatcher", 5),
    )
    case.accept(**ctx("handler", 6))
    case.request_extension(hours=2.5, reason="材料", **ctx("handler", 7))
    case.approve_extension(new_due=at(750), **ctx("shift_leader", 8))
    case.suspend(reason="預算", review_at=at(3000), **ctx("handler", 9))
    case.supervise(reason="慢", **ctx("supervisor", 10))
    case.resume(new_due=at(800), **ctx("shift_leader", 11))
    case.report_result(note="修好", photos=[{"sha256": "11", "size": 1}], **ctx("handler", 12))
    case.verify_fail(note="未修好", new_due=at(900), **ctx("inspector", 13))
    case.escalate(
        to_level="district",
        to_node="D01",
        reason="跨部門",
        dispatch_due=at(60),
        **ctx("dispatcher", 14),
    )
    case.link_reporter(
        reporter={"name": "x", "type": "open311"}, from_case_no="DUP-1", **ctx("system", 15)
    )
    case.mark_warning(step="dispatch", **ctx("system", 50))
    case.mark_overdue(step="dispatch", **ctx("system", 61))
    return case


def test_replay_from_collected_events_reproduces_state() -> None:
    case = _busy_case()
    events = case.collect_events()
    rebuilt = replay(events)
    assert rebuilt.snapshot_dict() == case.snapshot_dict()
    assert state(rebuilt) == state(case)
    assert verify_chain(events) is None
    assert rebuilt.rework_count == 1 and rebuilt.wrong_dispatches == 1
    assert rebuilt.escalations == 1 and rebuilt.supervision_orders == 1


def test_verify_chain_finds_tampering() -> None:
    case = _busy_case()
    events = list(case.collect_events())
    assert verify_chain(events) is None
    forged = dataclasses.replace(cast(Any, events[3]), actor="someone-else")
    assert verify_chain([*events[:3], forged, *events[4:]]) == 4
    assert verify_chain(events[:2] + events[3:]) == 4  # a removed event breaks the link
    assert verify_chain([events[1], events[0]]) == 2


def test_round_trip_through_eventsourcing_application_popo() -> None:
    """eventsourcing's own in-memory (POPO) persistence, with its JSON transcoder."""
    app: Application[UUID] = Application()
    case = _busy_case()
    app.save(case)
    loaded: Case = app.repository.get(case.id)
    assert isinstance(loaded, Case)
    assert loaded.snapshot_dict() == case.snapshot_dict()
    assert state(loaded) == state(case)
    stored = list(app.repository.event_store.get(case.id))
    assert names(stored)[0] == "Reported" and len(stored) == case.version
    assert verify_chain(stored) is None  # hashes survive transcoding
    # Continue on the loaded copy: same idempotency memory, chain goes on.
    last_cid = loaded.applied_commands[-1]
    loaded.supervise(reason="again", **ctx("supervisor", 70, cid=last_cid))
    assert loaded.version == case.version
    loaded.supervise(reason="again", **ctx("supervisor", 70))
    app.save(loaded)
    stored = list(app.repository.event_store.get(case.id))
    assert verify_chain(stored) is None
    assert cast(Case.Event, stored[-1]).hash == loaded.last_hash
    # State at a past moment: replay a prefix.
    past: Case = app.repository.get(case.id, version=6)
    assert past.status is Status.in_progress and past.department == "roads"


def test_state_of_a_uuid_case_id_is_string_in_snapshot() -> None:
    case_id = UUID("00000000-0000-4000-8000-000000000001")
    case = new_case(case_id=case_id)
    assert case.id == case_id and case.snapshot_dict()["id"] == str(case_id)
    assert case.snapshot_dict()["reported_at"] == "2024-05-06T01:00:00.000000Z"
    assert all(not isinstance(v, datetime) for v in case.snapshot_dict().values())


def test_zone_of_given_times_does_not_change_hash_input() -> None:
    a = new_case(case_id=UUID(int=7), case_no="N1", **ctx("inspector", 0, cid="r1"))
    b = new_case(
        case_id=UUID(int=7),
        case_no="N1",
        **{**ctx("inspector", 0, cid="r1"), "at": at(0).astimezone(UTC)},
    )
    assert a.last_hash == b.last_hash
