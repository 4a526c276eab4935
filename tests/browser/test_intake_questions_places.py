"""Issue 17 on the intake pages, in headless Chromium: the 12319 call-taker (1366×768) picks
a standard address by its pinyin initials ("zhbl" → 中华北路12号, which fills ``place_id`` and
the grid) and must answer 积水内涝's required question (water depth) before the call is
accepted; the inspector (360×640) whose GPS fix lies in a neighbour's grid gets the explicit
choice and files the report in his own grid keeping the fix (``fix_outside_grid``)."""

from __future__ import annotations

from typing import Any

import pytest

from core import places
from tests.conftest import eventually
from tests.intake_support import PHONE, chromium_missing, login, shot, sign_in_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]
GRID = "520102001001"  # inspector-520102001001's only grid
NEIGHBOUR = "520102001002"
DESKTOP = {"width": 1366, "height": 768}


async def test_questions_places_and_the_outside_grid_choice(
    system: dict[str, Any], app_url: str, browser: Any
) -> None:
    client, runtime = system["client"], system["runtime"]
    j = runtime.ref.jurisdiction
    lat, lon = j.grid(GRID).centroid
    rows = [places.check({"road": "中华北路", "number": n, "lat": lat + d, "lon": lon}, j)
            for n, d in (("12", 0.0), ("14", 0.0003))]
    async with runtime.pool.acquire() as conn:
        await places.store(conn, rows + places.roads(rows, j))
    dispatcher = await login(client, "dispatcher")

    async def case(case_no: str) -> Any:
        async def probe() -> Any:
            r = await client.get(f"/v1/cases/{case_no}", headers=dispatcher)
            return r.json() if r.status_code == 200 else None

        return await eventually(probe, timeout=20)

    # --- 12319 at 1366×768: address by pinyin initials, the required question ---------------
    ctx = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
    hot = await ctx.new_page()
    errors: list[str] = []
    hot.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in_page(hot, app_url, "/hotline/", "calltaker")
    await hot.fill("#caller-name", "李女士")
    await hot.fill("#caller-phone", "13800005678")
    await hot.fill(".catpicker input", "SJ0404")
    await hot.click(".catpicker .results li:has-text('SJ0404')")
    await hot.wait_for_selector(".question[data-code=depth_cm][data-required='1']")
    await hot.fill("#description", "路口积水 (water on the crossing)")
    await hot.fill("#address", "zhbl")
    await hot.wait_for_selector(".results.places li:has-text('中华北路12号')")
    await shot(hot, "intake-places-hotline")
    await hot.click(".results.places li:has-text('中华北路12号')")
    assert await hot.input_value("#address") == "中华北路12号"
    assert await hot.input_value("#grid-select") == GRID  # the place located the call
    await hot.click("#submit-call")  # the required water depth is missing: refused here
    await hot.wait_for_selector("#call-error:has-text('积水深度')")
    assert not await hot.locator("#registered").count()
    await hot.fill("#q-depth_cm", "35")
    await hot.click("#q-traffic_blocked label:has-text('是')")
    await shot(hot, "intake-questions-hotline", full_page=True)
    await hot.click("#submit-call")
    await hot.wait_for_selector("#registered .case-no")
    called = await case((await hot.text_content("#registered .case-no")) or "")
    assert called["answers"] == {"depth_cm": 35, "traffic_blocked": True}
    assert called["address"] == "中华北路12号" and called["grid"] == GRID
    assert called["lat"] == pytest.approx(lat, abs=1e-6)
    # A second call about the same place: the open case is shown under the form.
    await hot.fill(".catpicker input", "SJ0404")
    await hot.click(".catpicker .results li:has-text('SJ0404')")
    await hot.fill("#address", "zhbl")
    await hot.click(".results.places li:has-text('中华北路12号')")
    await hot.wait_for_selector(f".nearby:not([hidden]) li[data-case-no='{called['case_no']}']")
    await shot(hot, "intake-nearby-hotline", full_page=True)
    await ctx.close()

    # --- inspector at 360×640: a fix in the neighbour's grid -> the explicit choice ----------
    there = j.grid(NEIGHBOUR).centroid
    ctx = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    await ctx.grant_permissions(["geolocation"], origin=app_url)
    await ctx.set_geolocation({"latitude": there[0], "longitude": there[1]})
    insp = await ctx.new_page()
    insp.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in_page(insp, app_url, "/inspector/", f"inspector-{GRID}")
    await insp.click("#gps-btn")
    choice = "#fix-choice:not([hidden])"
    await insp.wait_for_selector(f"{choice} button[data-choice=keep_grid][data-grid='{GRID}']")
    assert not await insp.locator(f"{choice} [data-choice=report_there]").count()  # not his
    await shot(insp, "intake-outside-grid-choice-inspector", full_page=True)
    await insp.click(f"{choice} button[data-choice=keep_grid]")
    assert await insp.input_value("#grid-select") == GRID
    assert await insp.locator("#fix-choice").is_hidden()
    await insp.fill(".catpicker input", "SJ0404")
    await insp.click(".catpicker .results li:has-text('SJ0404')")
    await insp.fill("#q-depth_cm", "20")
    await insp.fill("#description", "邻网格路口积水")
    await insp.fill("#address", "zhbl")
    await insp.wait_for_selector(".results.places li:has-text('中华北路14号')")
    await shot(insp, "intake-places-inspector", full_page=True)
    await insp.click(".results.places li:has-text('中华北路14号')")
    await shot(insp, "intake-questions-inspector", full_page=True)
    await insp.click("#submit-report")
    await insp.wait_for_selector("#queue-list .item[data-state=filed] .case-no", timeout=20_000)
    case_no = ((await insp.text_content("#queue-list .item .case-no")) or "").split()[-1]
    filed = await case(case_no)
    assert filed["grid"] == GRID and filed["answers"] == {"depth_cm": 20}
    assert filed["address"] == "中华北路14号"
    assert (filed["lat"], filed["lon"]) == (pytest.approx(there[0]), pytest.approx(there[1]))
    reported = next(e for e in filed["timeline"] if e["type"] == "Reported")
    assert reported["data"].get("located_grid") == NEIGHBOUR
    await ctx.close()
    assert not errors, errors
