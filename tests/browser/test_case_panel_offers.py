"""The case panel shows exactly what the API offers, and builds each form from the action's
argument schema: a call-taker records a dissatisfied return visit (回访 不满意) and a shift
leader reopens the case (重办) from the page. Screenshots in test-artifacts/."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import shoot
from tests.conftest import auth_headers, eventually, user_headers
from tests.intake_support import on_site

pytestmark = pytest.mark.browser
GRID = "520102001001"


async def _act(client: Any, case_no: str, verb: str, headers: dict[str, str], **args: Any) -> None:
    r = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args, headers=headers)
    assert r.status_code == 200, (verb, r.text)


async def _case(client: Any, case_no: str, who: str, **expected: Any) -> dict[str, Any]:
    headers = await auth_headers(client, who)

    async def probe() -> dict[str, Any] | None:
        r = await client.get(f"/v1/cases/{case_no}", headers=headers)
        body: dict[str, Any] = r.json()
        return body if all(body.get(k) == v for k, v in expected.items()) else None

    found: dict[str, Any] = await eventually(probe, timeout=20)
    return found


async def _buttons(page: Any) -> list[str]:
    return list(await page.eval_on_selector_all(
        "#case-actions button[data-action]", "bs => bs.map(b => b.dataset.action)"
    ))


async def _open(page: Any, case_no: str) -> None:
    await page.select_option("#f-status", "closed")  # the queue lists open cases by default
    row = page.locator(f'#queue-body tr[data-case-no="{case_no}"]')
    await row.wait_for()
    await row.click()
    await page.wait_for_selector("#case-title", state="visible")


async def test_return_visit_and_reopen_from_the_case_panel(centre: dict[str, Any]) -> None:
    client = centre["client"]
    r = await client.post(
        "/v1/reports",
        json={"category": "SJ0101", "grid": GRID, "description": "小区门口垃圾堆放",
              "source": "hotline", "reporter": {"name": "孙八", "phone": "13600000000"}},
        headers={**await auth_headers(client, "calltaker"), "Idempotency-Key": "browser-reopen-1"},
    )
    assert r.status_code == 202, r.text
    case_no = r.json()["case_no"]
    dispatcher = await auth_headers(client, "dispatcher")
    await _case(client, case_no, "dispatcher", status="reported")
    await _act(client, case_no, "file", dispatcher)
    await _act(client, case_no, "dispatch", dispatcher)
    case = await _case(client, case_no, "dispatcher", status="dispatched")
    handler = await user_headers(centre, role="handler", department=case["department"])
    await _act(client, case_no, "accept", handler)
    await _act(client, case_no, "report_result", handler, note="已清运")
    await _case(client, case_no, "dispatcher", status="awaiting_verification")
    inspector = await auth_headers(client, "inspector-520102001001")
    evidence = await on_site(client, case_no, inspector)
    await _act(client, case_no, "verify_pass", inspector, **evidence)
    await _case(client, case_no, "dispatcher", status="verified")
    await _act(client, case_no, "close", dispatcher)
    offered = (await _case(client, case_no, "calltaker", status="closed"))["allowed_actions"]
    assert offered == ["return_visit"]

    # The call-taker's panel: exactly the API's offer; the form comes from the schema
    # (satisfaction is an enum → a select with the three answers; the comment is optional).
    page = await centre["new_page"]("calltaker")
    await _open(page, case_no)
    await page.wait_for_selector('#case-actions button[data-action="return_visit"]')
    assert await _buttons(page) == offered
    await page.click('#case-actions button[data-action="return_visit"]')
    # The form is built after the click: wait for it (reading at once raced it: []).
    await page.wait_for_selector(
        '#action-form select[name="satisfaction"] option', state="attached"
    )
    options = await page.eval_on_selector_all(
        '#action-form select[name="satisfaction"] option', "os => os.map(o => o.value)"
    )
    assert options == ["satisfied", "basically_satisfied", "dissatisfied"]
    await page.select_option('#action-form select[name="satisfaction"]', "dissatisfied")
    await page.fill('#action-form textarea[name="comment"]', "垃圾又堆起来了")
    await page.click("#action-submit")
    case = await _case(client, case_no, "shiftleader", satisfaction="dissatisfied")
    await page.wait_for_selector("#case-actions button[data-action]", state="detached")
    assert await _buttons(page) == []  # one visit per closing: nothing more for her

    # The shift leader is offered reopen (重办); its form asks for the required reason.
    assert "reopen" in case["allowed_actions"]
    leader = await centre["new_page"]("shiftleader")
    await _open(leader, case_no)
    await leader.wait_for_selector('#case-actions button[data-action="reopen"]')
    assert await _buttons(leader) == case["allowed_actions"]
    await leader.click('#case-actions button[data-action="reopen"]')
    reason = leader.locator('#action-form textarea[name="reason"]')
    assert await reason.get_attribute("required") is not None
    await reason.fill("回访不满意, 重新派遣")
    await shoot(leader, "reopen-form")
    await leader.click("#action-submit")
    await leader.wait_for_selector("#case-sub .status.filed")
    case = await _case(client, case_no, "shiftleader", status="filed")
    assert case["timeline"][-1]["type"] == "Reopened"
    await leader.wait_for_selector('#case-actions button[data-action="dispatch"]')
    assert await _buttons(leader) == case["allowed_actions"]
    await shoot(leader, "reopened")
