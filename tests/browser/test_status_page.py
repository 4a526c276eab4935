"""The public 工单查询 page (/status/) in headless Chromium at a phone's size (360×640) and a
desktop's (1366×768): no sign-in, the reporter's case found by number + phone digits, the
progress shown, nothing wider than the screen, a wrong number told plainly. Screenshots in
test-artifacts/ (status-360.png, status-1366.png)."""

from __future__ import annotations

from typing import Any

import pytest

from projections import reporter_status
from tests.browser.conftest import shoot
from tests.conftest import auth_headers, eventually

pytestmark = pytest.mark.browser


async def test_reporter_looks_up_a_case_on_a_phone_and_a_desktop(site: dict[str, Any]) -> None:
    client = site["client"]
    caller = await auth_headers(client, "call_taker")
    r = await client.post("/v1/reports", headers=caller, json={
        "category": "SJ0101", "grid": "520102001001", "source": "hotline",
        "description": "楼道里堆满了杂物", "reporter": {"name": "王五", "phone": "13700005678"},
    })
    assert r.status_code == 202, r.text
    case_no = r.json()["case_no"]

    async def known() -> bool:
        # The read model itself, not the public endpoint: each lookup there spends the case
        # number's rate-limit budget, and on a busy machine the polls alone used it up, so
        # the page's own lookup below was refused (429) and never showed the case.
        async with site["runtime"].pool.acquire() as conn:
            return await reporter_status.lookup(conn, case_no, "5678") is not None

    await eventually(known)
    page = await site["browser"].new_page(viewport={"width": 360, "height": 640})
    try:
        await page.goto(site["base"] + "/status/")
        await page.wait_for_selector("body[data-ready='1']")
        assert await page.evaluate("document.documentElement.lang") == "zh-Hans"
        await page.fill("#case-no", "GD-0000-0000-0000")
        await page.fill("#phone4", "5678")
        await page.click("#submit")
        await page.wait_for_selector("#error:not(:empty)")
        assert "没有找到该工单" in await page.text_content("#error")
        await page.fill("#case-no", case_no.lower())
        await page.click("#submit")
        await page.wait_for_selector("#result:not([hidden])")
        assert await page.text_content("#status-text") == "已受理, 等待立案"
        text = await page.text_content("#result")
        assert case_no in text and "已受理" in text and "王五" not in text
        widths = await page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths  # nothing sideways on a phone
        await shoot(page, "status-360")
        await page.set_viewport_size({"width": 1366, "height": 768})
        left, width = await page.evaluate(
            "[document.querySelector('main').getBoundingClientRect().left,"
            " document.querySelector('main').getBoundingClientRect().width]")
        assert width <= 600 and abs(left - (1366 - width) / 2) < 2  # a readable, centred column
        await shoot(page, "status-1366")
    finally:
        await page.close()
