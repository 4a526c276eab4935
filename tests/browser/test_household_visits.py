"""六必访 in the inspector's phone app at 360×640 (issue 18): this week's due visits, overdue
first; a visit recorded offline waits on the phone, is sent when the network returns, is
recorded once, and its need becomes a case whose number the household shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import auth_headers, eventually
from tests.intake_support import PHONE, chromium_missing, shot, sign_in_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]
GRID = "520102001001"
INSPECTOR = "inspector-520102001001"


async def test_visit_offline_then_online(
    system: dict[str, Any], app_url: str, browser: Any
) -> None:
    client, clock = system["client"], system["clock"]
    # The phone's clock is the real one: the server's clock agrees.
    clock.set(datetime.now(UTC) - timedelta(days=9))
    inspector = await auth_headers(client, "inspector")
    numbers = []
    for i, address in enumerate(["新华路 8 号 2 单元 301", "新华路 10 号 1 单元 102"]):
        r = await client.post("/v1/households", headers={**inspector,
                                                          "Idempotency-Key": f"ui-hh-000{i}"},
                              json={"grid": GRID, "address": address,
                                    "members": [{"name": "王秀英", "relation": "户主"}],
                                    "flags": [{"flag": "elderly_alone", "reason": "独居"}]})
        assert r.status_code == 201, r.text
        numbers.append(r.json()["household_no"])
        clock.advance(days=3)  # the first is overdue by now, the second due soon
    clock.set(datetime.now(UTC))

    context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                        has_touch=True, locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in_page(page, app_url, "/inspector/", INSPECTOR)
    await page.click("#tabs button[data-tab=grid]")
    await page.wait_for_selector("#visit-worklist .visit-row")
    rows = await page.eval_on_selector_all("#visit-worklist .visit-row",
                                           "els => els.map(e => e.dataset.household)")
    assert rows == numbers  # overdue first
    assert await page.locator("#visit-worklist .visit-row").first.get_attribute(
        "class") == "visit-row light-red"
    await shot(page, "households-1-worklist")

    # Offline: record the overdue household's visit with a need.
    await context.set_offline(True)
    first = page.locator(f".visit-row[data-household='{numbers[0]}']")
    await first.locator("button.primary").click()
    await first.locator("textarea").fill("老人精神尚可；楼道灯坏了，夜间行走不便")
    await first.locator("select").select_option("SJ0101")
    await first.locator("input[aria-label='诉求内容']").fill("楼道灯损坏，需维修")
    # The list is re-drawn meanwhile (a refresh, a send): the open form stays, as typed.
    typed = await first.locator("textarea").element_handle()
    await page.evaluate("window.GDVisits.refresh()")
    kept = await typed.evaluate("el => el.isConnected && el.value")
    assert kept == "老人精神尚可；楼道灯坏了，夜间行走不便"
    await shot(page, "households-2-visit-form", top=False)
    await first.locator("button[type=submit]").click()
    await page.wait_for_selector(f".visit-row[data-household='{numbers[0]}'] .badge")
    await shot(page, "households-3-queued-offline")

    # Online again: sent once, the need became a case, the household shows its number.
    await context.set_offline(False)
    await page.evaluate("window.GDVisits.flush()")

    async def visited() -> Any:
        r = await client.get(f"/v1/households/{numbers[0]}", headers=inspector)
        body = r.json()
        return body if body["visits"] == 1 and body["cases"] else None

    household = await eventually(visited, timeout=20)
    case_no = household["cases"][0]["case_no"]
    assert household["light"] == "green"
    await page.evaluate("window.GDVisits.flush()")  # a second send changes nothing
    assert (await client.get(f"/v1/households/{numbers[0]}",
                             headers=inspector)).json()["visits"] == 1

    async def case_made() -> Any:
        r = await client.get(f"/v1/cases/{case_no}", headers=await auth_headers(client,
                                                                                 "dispatcher"))
        return r.status_code == 200

    await eventually(case_made)
    await page.wait_for_selector(f".visit-row[data-household='{numbers[0]}'] .badge",
                                 state="detached")
    await shot(page, "households-4-sent")
    # The household's details show its flags with reasons and the case with its status.
    await first.locator("button.detail-btn").click()
    await first.locator(f".visit-detail li:has-text('{case_no}')").wait_for()
    assert "独居" in await first.locator(".visit-detail").text_content()
    await shot(page, "households-5-detail", top=False)
    assert not errors, errors
