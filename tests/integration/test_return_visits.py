"""The return-visit loop through the running system: the call-taker's list is every closed
case the visit rule makes due (hotline, Open311, any case with a reporter phone), from the
read model, oldest closing first and paginated; a 不满意 visit puts the case on the shift
leader's list until 重办 or 不予重办; the decision is counted in the metrics."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from pypdf import PdfReader
from typer.testing import CliRunner

from aggregates.visits import VisitRule
from gateways.cli import app
from projections import return_visits as rv
from projections.metrics import METRICS
from tests.conftest import auth_headers, eventually, user_headers
from tests.intake_support import on_site
from tests.integration.test_lifecycle import (
    CALL_TAKER,
    DISPATCHER,
    INSPECTOR,
    SHIFT_LEADER,
    _sign_in,
    act,
    case_where,
)

GRID = "520102001001"


async def close_case(
    system: dict[str, Any], headers: dict[str, str], supervisor: dict[str, str] | None = None,
    **report: Any,
) -> str:
    """A case reported with ``report`` and taken through the loop to 结案 (supervised on the
    way when ``supervisor`` is given)."""
    client = system["client"]
    body = {"category": "SJ0101", "grid": GRID, "description": "垃圾暴露", **report}
    response = await client.post("/v1/reports", headers=headers, json=body)
    assert response.status_code == 202, response.text
    case_no: str = response.json()["case_no"]
    await case_where(client, case_no, status="reported")
    await act(client, case_no, "file", DISPATCHER)
    await act(client, case_no, "dispatch", DISPATCHER)
    case = await case_where(client, case_no, status="dispatched")
    handler = await user_headers(system, role="handler", department=case["department"])
    if supervisor is not None:
        await act(client, case_no, "supervise", supervisor, reason="群众反映强烈, 限期办结")
    await act(client, case_no, "accept", handler)
    await act(client, case_no, "report_result", handler, note="已清运")
    await case_where(client, case_no, status="awaiting_verification")
    evidence = await on_site(client, case_no, INSPECTOR)
    await act(client, case_no, "verify_pass", INSPECTOR, **evidence)
    await case_where(client, case_no, status="verified")
    await act(client, case_no, "close", DISPATCHER)
    return case_no


async def test_return_visit_list_rule_pages_and_the_shift_leaders_decision(
    system: dict[str, Any], tmp_path: Path,
) -> None:
    client, clock = system["client"], system["clock"]
    await _sign_in(client)
    supervisor = await auth_headers(client, "supervisor")
    hotline = await close_case(
        system, CALL_TAKER, supervisor, source="hotline",
        reporter={"name": "王五", "phone": "13700001234", "type": "citizen"},
    )
    clock.advance(minutes=1)
    no_phone = await close_case(system, INSPECTOR)  # an inspector's own report: no one to ask
    clock.advance(minutes=1)
    with_phone = await close_case(
        system, INSPECTOR, reporter={"name": "赵六", "phone": "13900005678", "type": "citizen"},
    )
    await case_where(client, with_phone, status="closed")

    async def due_list(**query: Any) -> dict[str, Any]:
        response = await client.get("/v1/return-visits", params=query, headers=CALL_TAKER)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def listed() -> dict[str, Any] | None:
        body = await due_list()
        return body if body["total"] == 2 else None

    body = await eventually(listed, timeout=20)
    # Oldest closing first; the inspector's case without a reporter phone is not due.
    assert [c["case_no"] for c in body["items"]] == [hotline, with_phone]
    assert no_phone not in [c["case_no"] for c in body["items"]]
    assert body["items"][0]["reporter_phone"] == "13700001234"  # call-takers call back
    assert all(c["allowed_actions"] == ["return_visit"] for c in body["items"])
    assert "热线" in body["rule"]["zh"] and "电话" in body["rule"]["zh"]
    second = await due_list(page=2, page_size=1)
    assert (second["total"], second["pages"], [c["case_no"] for c in second["items"]]) == (
        2, 2, [with_phone])
    refused = await client.get("/v1/return-visits", headers=INSPECTOR)
    assert refused.status_code == 403

    # The same rule in SQL and in Python, for each way a city may set it.
    pool = system["runtime"].pool
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT case_no, source, reporter_phone FROM case_queue "
                                "WHERE status = 'closed'")
        for text in ("hotline,open311,phone", "hotline", "phone", "inspector_app", "all"):
            rule = VisitRule.parse(text)
            params: list[Any] = []
            items, _ = await rv.page(conn, "due", rule, "true", params, 1, 50)
            assert {r["case_no"] for r in items} == {
                r["case_no"] for r in rows if rule.due(r["source"], r["reporter_phone"])
            }, text

    # The reporters were texted (log-only channel by default): filed, closed, visit due.
    async def texted() -> list[Any] | None:
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT case_no, kind, status, channel, to_phone "
                                    "FROM outbound_messages ORDER BY id")
        return rows if len(rows) == 6 and all(r["status"] == "sent" for r in rows) else None

    messages = await eventually(texted, timeout=20)
    assert {(r["case_no"], r["kind"]) for r in messages} == {
        (no, kind) for no in (hotline, with_phone)
        for kind in ("filed", "closed", "return_visit_due")}
    assert {r["channel"] for r in messages} == {"log"}
    assert no_phone not in {r["case_no"] for r in messages}

    # The call-takers are told of the same cases (the same rule: a reporter phone counts).
    async def call_takers_told() -> set[str] | None:
        items = (await client.get("/v1/notifications", headers=CALL_TAKER)).json()["items"]
        told = {n["case_no"] for n in items if n["kind"] == "return_visit_due"}
        return told if len(told) >= 2 else None

    assert await eventually(call_takers_told, timeout=20) == {hotline, with_phone}

    # 不满意 → off the call-taker's list, onto the shift leader's until decided.
    await act(client, hotline, "return_visit", CALL_TAKER, satisfaction="dissatisfied",
              comment="还是很脏")
    await act(client, with_phone, "return_visit", CALL_TAKER, satisfaction="satisfied")

    async def decisions() -> dict[str, Any] | None:
        response = await client.get("/v1/return-visits/decisions", headers=SHIFT_LEADER)
        decided: dict[str, Any] = response.json()
        return decided if decided["total"] == 1 else None

    pending = await eventually(decisions, timeout=20)

    async def told() -> list[Any] | None:  # the shift leader is notified (SSE list)
        items = (await client.get("/v1/notifications", headers=SHIFT_LEADER)).json()["items"]
        found = [n for n in items if n["kind"] == "reopen_decision"]
        return found or None

    (notice,) = await eventually(told, timeout=20)
    assert notice["case_no"] == hotline and "还是很脏" in notice["body"]
    assert pending["items"][0]["case_no"] == hotline
    assert pending["items"][0]["allowed_actions"] == ["reopen", "decline_reopen"]

    async def none_due() -> bool:
        return (await due_list())["total"] == 0

    await eventually(none_due, timeout=20)
    done = await act(client, hotline, "decline_reopen", SHIFT_LEADER,
                     reason="属物业管理范围, 已向来电人解释")
    assert done["status"] == "closed" and done["allowed_actions"] == []
    case = await case_where(client, hotline, version=done["version"])
    assert case["timeline"][-1]["type"] == "ReopenDeclined"

    async def counted() -> dict[str, Any] | None:
        response = await client.get(
            "/v1/metrics?metrics=reopens_declined,reopen_rate,satisfaction_rate",
            headers=SHIFT_LEADER)
        got: dict[str, Any] = response.json()["totals"]["metrics"]
        return got if got["reopens_declined"] == 1 else None

    metrics = await eventually(counted, timeout=20)
    assert metrics["reopen_rate"] == 0 and metrics["satisfaction_rate"] == 0.5
    assert (await client.get("/v1/return-visits/decisions", headers=SHIFT_LEADER)).json()[
        "total"] == 0

    # Documents from the read models: 案卷 and 督办单 (PDF), 综合评价 (Excel, PDF).
    response = await client.get(f"/v1/documents/cases/{hotline}/case-file.pdf",
                                headers=SHIFT_LEADER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)
    for expected in (hotline, "案卷", "上报", "督办", "结案", "回访", "不予重办",
                     "属物业管理范围", "还是很脏", "137****1234"):
        assert expected in text, expected  # a shift leader sees the phone masked
    assert "13700001234" not in text
    order = await client.get(f"/v1/documents/cases/{hotline}/supervision.pdf",
                             headers=SHIFT_LEADER)
    assert order.status_code == 200
    order_text = PdfReader(io.BytesIO(order.content)).pages[0].extract_text()
    assert "督办单" in order_text and "群众反映强烈, 限期办结" in order_text
    never = await client.get(f"/v1/documents/cases/{no_phone}/supervision.pdf",
                             headers=SHIFT_LEADER)
    assert (never.status_code, never.json()["error"]) == (404, "not_supervised")
    assert (await client.get(f"/v1/documents/cases/{hotline}/case-file.pdf",
                             headers=INSPECTOR)).status_code == 403
    today = clock.now().date().isoformat()
    xlsx = await client.get("/v1/documents/evaluation.xlsx",
                            params={"from": today, "to": today}, headers=SHIFT_LEADER)
    assert xlsx.status_code == 200, xlsx.text
    workbook = load_workbook(io.BytesIO(xlsx.content))
    assert workbook.sheetnames == ["总览", "区县排名", "部门排名", "社区排名", "网格排名"]
    grids = workbook["网格排名"]
    header = [c.value for c in grids[1]]
    row = [c.value for c in grids[2]]
    assert row[header.index("代码")] == GRID and row[0] == 1
    closed = header.index(METRICS["closed"]["zh"])
    assert row[closed] == 3  # the three closings of today in the one grid
    assert row[header.index(METRICS["reopen_rate"]["zh"])] == 0
    pdf = await client.get("/v1/documents/evaluation.pdf",
                           params={"from": today, "to": today}, headers=SHIFT_LEADER)
    assert "综合评价报告" in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()

    # The same documents from gridctl (read models at DATABASE_URL, photos from NATS).
    settings = system["settings"]
    env = {"NATS_URL": settings.nats_url, "DATABASE_URL": settings.database_url,
           "GRID_DB_SCHEMA": settings.db_schema, "GRID_STREAM_PREFIX": settings.stream_prefix}
    runner = CliRunner()
    made = await asyncio.to_thread(
        runner.invoke, app, ["documents", "case-file", hotline, "-o", str(tmp_path / "a.pdf")],
        env=env)
    assert made.exit_code == 0, made.output
    cli_text = PdfReader(tmp_path / "a.pdf").pages[0].extract_text()
    assert hotline in cli_text and "137****1234" in cli_text  # masked without --personal
    made = await asyncio.to_thread(
        runner.invoke, app, ["documents", "evaluation", "--from", today, "--to", today,
                             "-o", str(tmp_path / "e.xlsx")], env=env)
    assert made.exit_code == 0, made.output
    assert load_workbook(tmp_path / "e.xlsx")["网格排名"].cell(2, 2).value
