"""The closed loop through the running system (HTTP → NATS → worker → store → read model),
with a controllable clock: overdue → automatic escalation community → district → dispatch →
handle → verify fail (rework) → handle → verify pass → close → return visit."""

from __future__ import annotations

from typing import Any

from core.clock import FixedClock
from gateways.runtime import Runtime
from tests.conftest import auth_headers, eventually, user_headers
from tests.intake_support import on_site

# Bearer headers per role, filled per test by ``_sign_in`` (city-level demo users; the
# inspector of grid 520102001001; handlers per department via ``user_headers``).
DISPATCHER: dict[str, str] = {}
INSPECTOR: dict[str, str] = {}
CALL_TAKER: dict[str, str] = {}
SHIFT_LEADER: dict[str, str] = {}


async def _sign_in(client: Any) -> None:
    for headers, role in (
        (DISPATCHER, "dispatcher"),
        (INSPECTOR, "inspector"),
        (CALL_TAKER, "call_taker"),
        (SHIFT_LEADER, "shift_leader"),
    ):
        headers.clear()
        headers.update(await auth_headers(client, role))


async def act(
    client: Any, case_no: str, verb: str, headers: dict[str, str], expect: int = 200, **args: Any
) -> dict[str, Any]:
    response = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args, headers=headers)
    assert response.status_code == expect, (verb, response.status_code, response.text)
    body: dict[str, Any] = response.json()
    return body


async def case_where(client: Any, case_no: str, **expected: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await client.get(f"/v1/cases/{case_no}", headers=DISPATCHER)
        if response.status_code != 200:
            return None
        case: dict[str, Any] = response.json()
        return case if all(case.get(k) == v for k, v in expected.items()) else None

    result: dict[str, Any] = await eventually(probe, timeout=20)
    return result


async def test_full_closed_loop_with_escalation_and_rework(system: dict[str, Any]) -> None:
    client, rt, clock = system["client"], system["runtime"], system["clock"]
    assert isinstance(rt, Runtime) and isinstance(clock, FixedClock)
    await _sign_in(client)
    j = rt.ref.jurisdiction
    grid = sorted(j.grids)[0]
    response = await client.post(
        "/v1/reports",
        headers=CALL_TAKER,
        json={
            "category": "ZL0101",
            "grid": grid,
            "source": "hotline",
            "description": "樓上漏水引發鄰里糾紛 (a leak upstairs started a neighbour dispute)",
            "reporter": {"name": "王五", "phone": "13700000000", "type": "citizen"},
        },
    )
    assert response.status_code == 202, response.text
    case_no = response.json()["case_no"]
    case = await case_where(client, case_no, status="reported")
    assert case["level"] == "community"
    assert case["proposal"]["department"].startswith("D-" + j.grid(grid).parent)
    assert "file" in case["allowed_actions"]

    # An illegal command names the state and the allowed actions.
    refused = await act(
        client, case_no, "return_visit", CALL_TAKER, expect=409, satisfaction="satisfied"
    )
    assert refused["error"] == "illegal_transition" and refused["status"] == "reported"
    # A role that may not: 403 with a machine-readable body.
    assert (await act(client, case_no, "file", INSPECTOR, expect=403))["error"] == "not_permitted"
    # A handler sees only cases dispatched to its department: this one does not exist for it.
    proposed = await user_headers(system, role="handler", department=case["proposal"]["department"])
    assert (await act(client, case_no, "accept", proposed, expect=404))["error"] == "not_found"

    await act(client, case_no, "file", DISPATCHER, note="符合立案條件")
    await act(client, case_no, "dispatch", DISPATCHER)
    case = await case_where(client, case_no, status="dispatched")
    community_dept = case["department"]
    assert case["due_step"] == "handle" and case["level"] == "community"

    # The deadline passes: warning, overdue, then automatic escalation to the district.
    clock.advance(days=30)
    await rt.watcher.tick() if rt.watcher else None
    case = await case_where(client, case_no, status="filed", level="district")
    assert case["escalations"] == 1 and case["department"] is None
    assert case["node"] == j.partition_of(grid)
    kinds = [e["type"] for e in case["timeline"]]
    assert kinds[-3:] == ["WarningMarked", "OverdueMarked", "Escalated"]
    escalated = case["timeline"][-1]
    assert escalated["actor"] == "sla-watcher" and escalated["data"]["automatic"] is True
    # A second tick at the same time changes nothing (idempotent commands).
    await rt.watcher.tick() if rt.watcher else None

    # The district dispatches with an override of the triage proposal, recorded with reason.
    district_depts = [d.code for d in j.departments_at(j.partition_of(grid))]
    target = next(d for d in district_depts if d.endswith("-mediation"))
    missing_reason = await act(
        client, case_no, "dispatch", DISPATCHER, expect=422, department=target, priority="urgent"
    )
    assert missing_reason["error"] == "invalid_command"
    await act(
        client,
        case_no,
        "dispatch",
        DISPATCHER,
        department=target,
        priority="urgent",
        override_reason="涉及多戶，需區級調解 (several households involved)",
    )
    case = await case_where(client, case_no, status="dispatched", department=target)
    assert case["priority"] == "urgent" and target != community_dept
    HANDLER = await user_headers(system, role="handler", department=target)

    clock.advance(minutes=10)
    await act(client, case_no, "accept", HANDLER)
    clock.advance(hours=1)
    await act(client, case_no, "report_result", HANDLER, note="已調解，雙方簽字")
    case = await case_where(client, case_no, status="awaiting_verification")

    # The inspector finds it not fixed: rework to the same department, the clock restarts.
    clock.advance(minutes=30)
    await act(client, case_no, "verify_fail", INSPECTOR, note="漏水仍未修復",
              **await on_site(client, case_no, INSPECTOR))
    case = await case_where(client, case_no, status="dispatched", rework_count=1)
    assert case["department"] == target and case["due_step"] == "handle"

    clock.advance(minutes=10)
    await act(client, case_no, "accept", HANDLER)
    clock.advance(hours=1)
    await act(client, case_no, "report_result", HANDLER, note="已修復漏水")
    clock.advance(minutes=20)
    await act(client, case_no, "verify_pass", INSPECTOR, note="現場核查通過",
              **await on_site(client, case_no, INSPECTOR))
    await case_where(client, case_no, status="verified")
    await act(client, case_no, "close", DISPATCHER, note="結案")
    await act(
        client, case_no, "return_visit", CALL_TAKER, satisfaction="satisfied", comment="處理及時"
    )
    case = await case_where(client, case_no, status="closed", satisfaction="satisfied")
    assert case["allowed_actions"] == []
    # Every event records who, in which role, through which channel, when.
    for event in case["timeline"]:
        assert event["actor"] and event["role"] and event["channel"] and event["at"]
    types = [e["type"] for e in case["timeline"]]
    assert types.count("Dispatched") == 2 and "VerificationFailed" in types
    assert types[-2:] == ["Closed", "ReturnVisited"]


async def test_extension_suspension_and_duplicate(system: dict[str, Any]) -> None:
    client, clock = system["client"], system["clock"]
    rt: Runtime = system["runtime"]
    await _sign_in(client)
    grid = sorted(rt.ref.jurisdiction.grids)[10]
    numbers = []
    for i in range(2):
        r = await client.post(
            "/v1/reports",
            headers=CALL_TAKER,
            json={
                "category": "SJ0101",
                "grid": grid,
                "description": f"垃圾暴露 {i}",
                "reporter": {"name": f"市民{i}", "phone": f"1360000000{i}"},
            },
        )
        numbers.append(r.json()["case_no"])
    first, second = numbers
    await case_where(client, second, status="reported")
    await act(client, first, "file", DISPATCHER)
    await act(client, second, "mark_duplicate", DISPATCHER, of_case_no=first, reason="同一地點")
    await case_where(client, second, status="merged", duplicate_of=first)
    await act(client, first, "dispatch", DISPATCHER)
    dispatched = await case_where(client, first, status="dispatched")
    HANDLER = await user_headers(system, role="handler", department=dispatched["department"])
    await act(client, first, "accept", HANDLER)
    before = (await case_where(client, first, status="in_progress"))["due_at"]
    await act(client, first, "request_extension", HANDLER, hours=7, reason="需要協調車輛")
    await act(client, first, "approve_extension", SHIFT_LEADER)
    after = (await case_where(client, first, extension_count=1))["due_at"]
    assert after > before
    # A second extension needs a supervisor: the shift leader is no longer offered it.
    await act(client, first, "request_extension", HANDLER, hours=7, reason="再次延期")

    async def pending() -> dict[str, Any] | None:
        case = (await client.get(f"/v1/cases/{first}", headers=SHIFT_LEADER)).json()
        return case if case.get("pending_extension") else None

    offered: dict[str, Any] = await eventually(pending, timeout=20)
    assert offered["pending_extension"]["reason"] == "再次延期"
    assert "approve_extension" not in offered["allowed_actions"]
    assert "refuse_extension" in offered["allowed_actions"]
    refused = await act(client, first, "approve_extension", SHIFT_LEADER, expect=409)
    assert refused["error"] == "illegal_transition"
    assert "supervisor" in refused["why"]
    assert refused["allowed_actions"] == offered["allowed_actions"]
    await act(
        client,
        first,
        "refuse_extension",
        SHIFT_LEADER,
        reason="不予延期",
    )
    clock.advance(hours=1)
    await act(
        client,
        first,
        "suspend",
        HANDLER,
        reason="需要預算",
        review_at=(clock.now().replace(year=clock.now().year + 1)).isoformat(),
    )
    case = await case_where(client, first, status="suspended")
    assert case["due_step"] == "review"
    clock.advance(days=2)
    await act(client, first, "resume", HANDLER)
    resumed = await case_where(client, first, status="in_progress")
    assert resumed["due_step"] == "handle" and resumed["due_at"] > after
    timeline = {e["type"] for e in resumed["timeline"]}
    assert {
        "ExtensionRequested",
        "ExtensionApproved",
        "ExtensionRefused",
        "Suspended",
        "Resumed",
        "ReporterLinked",
    } <= timeline


async def test_dissatisfied_return_visit_reopens_the_case(system: dict[str, Any]) -> None:
    """回访不满意 → 重办: offered only then and only to the shift leader, back to dispatch with
    a deadline, on the timeline, and counted as a reopen; the call-taker's list of visits due
    is what the server offers (any channel)."""
    client = system["client"]
    await _sign_in(client)
    grid = "520102001001"
    response = await client.post(
        "/v1/reports",
        headers=INSPECTOR,
        json={"category": "SJ0101", "grid": grid, "description": "垃圾暴露 (inspector report)"},
    )
    assert response.status_code == 202, response.text
    case_no = response.json()["case_no"]
    await case_where(client, case_no, status="reported")
    await act(client, case_no, "file", DISPATCHER)
    await act(client, case_no, "dispatch", DISPATCHER)
    case = await case_where(client, case_no, status="dispatched")
    handler = await user_headers(system, role="handler", department=case["department"])
    await act(client, case_no, "accept", handler, note="马上处理")
    await act(client, case_no, "report_result", handler, note="已清运")
    await case_where(client, case_no, status="awaiting_verification")
    evidence = await on_site(client, case_no, INSPECTOR)
    await act(client, case_no, "verify_pass", INSPECTOR, **evidence)
    await case_where(client, case_no, status="verified")
    await act(client, case_no, "close", DISPATCHER)
    await case_where(client, case_no, status="closed")

    # An inspector's case is on the call-taker's list of return visits due.
    due = (await client.get("/v1/cases?action=return_visit", headers=CALL_TAKER)).json()
    assert case_no in [c["case_no"] for c in due["items"]]
    assert all("return_visit" in c["allowed_actions"] for c in due["items"])
    before = (await client.get(f"/v1/cases/{case_no}", headers=SHIFT_LEADER)).json()
    assert "reopen" not in before["allowed_actions"]  # nothing to reopen before a visit
    visited = await act(client, case_no, "return_visit", CALL_TAKER, satisfaction="dissatisfied",
                        comment="垃圾又堆起来了")
    assert visited["allowed_actions"] == []  # one visit per closing: not offered again

    async def reopen_offered() -> dict[str, Any] | None:
        case = (await client.get(f"/v1/cases/{case_no}", headers=SHIFT_LEADER)).json()
        return case if "reopen" in case["allowed_actions"] else None

    await eventually(reopen_offered, timeout=20)
    refused = await act(client, case_no, "reopen", DISPATCHER, expect=403, reason="不满意")
    assert refused["error"] == "not_permitted"
    assert (await act(client, case_no, "reopen", SHIFT_LEADER, expect=422))["error"] == (
        "validation_error"
    )  # a reason is required
    done = await act(client, case_no, "reopen", SHIFT_LEADER, reason="回访不满意, 重新派遣")
    assert done["status"] == "filed" and "dispatch" in done["allowed_actions"]
    case = await case_where(client, case_no, status="filed")
    assert case["due_step"] == "dispatch" and case["due_at"] and case["satisfaction"] is None
    reopened = case["timeline"][-1]
    assert reopened["type"] == "Reopened" and reopened["reason"] == "回访不满意, 重新派遣"
    assert reopened["data"]["satisfaction"] == "dissatisfied"

    async def counted() -> dict[str, Any] | None:
        body = (await client.get("/v1/metrics?metrics=reopens,open_now",
                                 headers=SHIFT_LEADER)).json()
        # Counted as a reopen, and open again (on the map's counts too).
        wanted = {"reopens": 1, "open_now": 1}
        return body if body["totals"]["metrics"] == wanted else None

    await eventually(counted, timeout=20)
    definitions = (await client.get("/v1/metrics/definitions", headers=SHIFT_LEADER)).json()
    reopens = next(d for d in definitions["metrics"] if d["key"] == "reopens")
    assert reopens["numerator"] == ["reopened"]
