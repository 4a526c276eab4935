"""The whole job from the pages, in headless Chromium at 360×640: a 12319 call-taker registers
a call (map pick → grid), the department's handler sees the dispatch arrive live, accepts it
and reports the result with a photo, the grid's inspector verifies it on site (核查), and
after closure the call-taker records the return visit (回访)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.conftest import eventually
from tests.intake_support import (
    PHONE,
    chromium_missing,
    login,
    png,
    shot,
    sign_in_page,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]
GRID = "520102001001"
DEPT = "D-520102-sanitation"


async def phone(browser: Any) -> tuple[Any, Any, list[str]]:
    context = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, errors


async def test_call_dispatch_handle_verify_close_and_return_visit(
    system: dict[str, Any], app_url: str, browser: Any, tmp_path: Any
) -> None:
    client, runtime, clock = system["client"], system["runtime"], system["clock"]
    dispatcher = await login(client, "dispatcher")
    lat, lon = runtime.ref.jurisdiction.grid(GRID).centroid

    # --- 12319: the call-taker registers the call, picking the place on the map ---------------
    hot_ctx, hot, hot_errors = await phone(browser)
    await sign_in_page(hot, app_url, "/hotline/", "calltaker")
    await hot.fill("#caller-name", "王先生")
    await hot.fill("#caller-phone", "13800001234")
    await hot.fill(".catpicker input", "garbage")  # English finds it; the list shows zh-Hans
    await hot.click(".catpicker .results li:has-text('暴露垃圾')")
    await hot.fill("#description", "小区门口垃圾两天没人清运 (garbage not collected for two days)")
    await hot.fill("#address", "新华路 8 号小区门口")
    await hot.locator("#map").scroll_into_view_if_needed()
    x, y = await hot.evaluate(
        "([lat, lon]) => { const m = GD.maps[0].map; m.setView([lat, lon], 16, {animate: false});"
        " const p = m.latLngToContainerPoint([lat, lon]); return [p.x, p.y]; }",
        [lat, lon],
    )
    await hot.click("#map", position={"x": x, "y": y})
    await hot.wait_for_selector(f"#grid-line:has-text('{GRID}')")
    assert await hot.input_value("#grid-select") == GRID
    await shot(hot, "hotline-1-call-form", full_page=True)
    await hot.click("#submit-call")
    await hot.wait_for_selector("#registered .case-no")
    case_no = (await hot.text_content("#registered .case-no")) or ""
    assert case_no.startswith("GD-")
    await shot(hot, "hotline-2-registered", top=False)

    async def case(**expected: Any) -> Any:
        async def probe() -> Any:
            r = await client.get(f"/v1/cases/{case_no}", headers=dispatcher)
            body = r.json() if r.status_code == 200 else {}
            return body if body and all(body.get(k) == v for k, v in expected.items()) else None

        return await eventually(probe, timeout=20)

    created = await case(status="reported")
    assert created["source"] == "hotline" and created["grid"] == GRID
    assert created["reporter_name"] == "王先生" and abs(created["lat"] - lat) < 1e-3

    # --- the handler's page is open when the dispatch arrives (live) -------------------------
    dept_ctx, dept, dept_errors = await phone(browser)
    await sign_in_page(dept, app_url, "/department/", f"handler-{DEPT}")
    await dept.wait_for_selector("#list .empty")
    for verb, args in (
        ("file", {}),
        ("dispatch", {"department": DEPT, "override_reason": "区环卫局 district sanitation"}),
    ):
        r = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args, headers=dispatcher)
        assert r.status_code == 200, r.text
    card = f"#list .item[data-case-no='{case_no}']"
    await dept.wait_for_selector(f"{card}[data-status=dispatched]", timeout=20_000)
    await dept.wait_for_selector("#toasts .toast:has-text('新派遣')")
    await shot(dept, "department-1-new-dispatch")
    await dept.click(f"{card} button:has-text('接单')")
    await dept.wait_for_selector(f"{card}[data-status=in_progress]", timeout=20_000)
    await dept.click(f"{card} button:has-text('处置反馈')")
    await dept.fill(
        f"{card} [data-form=result] textarea", "已清运垃圾并消杀 (cleared and disinfected)"
    )
    fixed = tmp_path / "fixed.png"
    fixed.write_bytes(png(1200, 900, (220, 225, 230)))
    await dept.set_input_files(f"{card} [data-form=result] input[data-role=gallery]", str(fixed))
    await dept.wait_for_selector(f"{card} [data-form=result] .thumb")
    await shot(dept, "department-2-report-result", top=False)
    await dept.click(f"{card} [data-form=result] button:has-text('提交反馈')")
    try:
        await dept.wait_for_selector(f"{card}", state="detached", timeout=20_000)
    except PlaywrightTimeout:  # say what the page says (the form's error, if it showed one)
        shown = await dept.inner_text(card)
        raise AssertionError(f"the card stayed after 提交反馈: {shown!r}") from None
    handled = await case(status="awaiting_verification")
    result = next(e for e in handled["timeline"] if e["type"] == "ResultReported")
    assert result["data"]["photos"][0]["content_type"] == "image/jpeg"

    # --- the inspector verifies on site (核查) ----------------------------------------------
    insp_ctx, insp, insp_errors = await phone(browser)
    await sign_in_page(insp, app_url, "/inspector/", "inspector-520102001001")
    await insp.click("#tabs button[data-tab=grid]")
    task = f"#tasks .task[data-case-no='{case_no}']"
    await insp.wait_for_selector(task)
    await insp.wait_for_selector(f"{task} .panel img.thumb[src^='blob:']")  # the result photo
    await insp.fill(f"{task} textarea", "现场已清理干净 (clean on site)")
    # On site: the phone's GPS at the case's point and a photo of the place (sent with the
    # decision when the action asks for on-site evidence).
    await insp_ctx.grant_permissions(["geolocation"], origin=app_url)
    await insp_ctx.set_geolocation({"latitude": created["lat"], "longitude": created["lon"]})
    site = tmp_path / "site.png"
    site.write_bytes(png(1000, 750, (205, 212, 220)))
    await insp.set_input_files(f"{task} input[data-role=gallery]", str(site))
    await insp.wait_for_selector(f"{task} .picker .thumb")
    await shot(insp, "inspector-5-verification-task")
    await insp.click(f"{task} button:has-text('通过')")
    await insp.click("#tabs button[data-tab=queue]")
    await insp.wait_for_selector("#queue-list .item[data-state=filed]", timeout=20_000)
    verified = await case(status="verified")
    passed = next(e for e in verified["timeline"] if e["type"] == "VerificationPassed")
    assert passed["actor"] == "insp-520102001001"

    # --- closure, then the return visit (回访) ----------------------------------------------
    clock.advance(minutes=20)
    r = await client.post(f"/v1/cases/{case_no}/actions/close", json={}, headers=dispatcher)
    assert r.status_code == 200, r.text
    await case(status="closed")
    await hot.click("#tabs button[data-tab=visits]")
    visit = f"#visits .item[data-case-no='{case_no}']"
    await hot.wait_for_selector(visit, timeout=20_000)
    await hot.click(f"{visit} label:text-is('满意')")
    await hot.fill(f"{visit} textarea", "处理很及时 (quick)")
    await shot(hot, "hotline-3-return-visit")
    await hot.click(f"{visit} button:has-text('保存回访')")
    await hot.wait_for_selector(visit, state="detached")
    done = await case(satisfaction="satisfied")
    assert done["timeline"][-1]["type"] == "ReturnVisited"

    assert not (hot_errors or dept_errors or insp_errors), (hot_errors, dept_errors, insp_errors)
    for ctx in (hot_ctx, dept_ctx, insp_ctx):
        await ctx.close()
