"""The inspector's phone app in headless Chromium at 360×640: a report submitted while offline
waits in the IndexedDB queue (also across a reload: the service worker serves the app shell),
is sent when the network returns, and is filed exactly once — even when the phone sends it
again. Refused photos and bad input get a clear message and lose nothing already queued."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import eventually
from tests.intake_support import (
    PHONE,
    chromium_missing,
    png,
    shot,
    sign_in_page,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]
GRID = "520102001001"
INSPECTOR = "inspector-520102001001"


async def test_offline_report_is_filed_exactly_once(
    system: dict[str, Any], app_url: str, browser: Any, tmp_path: Any
) -> None:
    runtime = system["runtime"]
    lat, lon = runtime.ref.jurisdiction.grid(GRID).centroid
    context = await browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        geolocation={"latitude": lat, "longitude": lon},
        permissions=["geolocation"],
        locale="zh-CN",
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in_page(page, app_url, "/inspector/", INSPECTOR)
    await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    # Reload once so the service worker controls the page (and has the shell cached).
    await page.reload()
    await page.wait_for_selector("body[data-ready='1']")
    await page.wait_for_function("navigator.serviceWorker.controller !== null")

    # A wrong file type is refused on the phone with a clear message.
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    await page.set_input_files("#photo-slot input[data-role=gallery]", str(bad))
    await page.wait_for_selector("#photo-slot .error:has-text('不支持')")

    # --- offline: fill in and submit -------------------------------------------------------
    await context.set_offline(True)
    await page.wait_for_selector(".net.off")
    await page.fill(".catpicker input", "垃圾")
    await page.click(".catpicker .results li:has-text('暴露垃圾')")
    await page.click("#gps-btn")
    await page.wait_for_selector(f"#grid-line:has-text('{GRID}')")
    big = tmp_path / "camera.png"
    big.write_bytes(png(2400, 1800, (90, 140, 60)))  # a "camera" photo, downscaled on the phone
    await page.set_input_files("#photo-slot input[data-role=gallery]", str(big))
    await page.wait_for_selector("#photo-slot .thumb")
    await page.fill("#description", "新华路口垃圾堆放，约 2 立方米 (garbage pile at the crossing)")
    await page.fill("#address", "新华路 12 号")
    await shot(page, "inspector-1-report-form")
    await page.click("#submit-report")
    await page.wait_for_selector("#queue-list .item[data-state=queued]")
    await shot(page, "inspector-2-queued-offline")

    # Still offline, the app reopens from the service worker's cache and the queue is there.
    await page.reload()
    await page.wait_for_selector("body[data-ready='1']")
    await page.click("#tabs button[data-tab=queue]")
    await page.wait_for_selector("#queue-list .item[data-state=queued]")
    assert await _cases(runtime) == 0  # nothing reached the server

    # --- back online: sent, then filed ------------------------------------------------------
    await context.set_offline(False)
    await page.wait_for_selector("#queue-list .item[data-state=filed]", timeout=30_000)
    case_no = (await page.text_content("#queue-list .item[data-state=filed] .case-no")) or ""
    case_no = case_no.replace("案件", "").strip()
    assert case_no.startswith("GD-")
    await shot(page, "inspector-3-filed")

    # The phone sends the same item again (a lost response, a second tab…): still one case.
    key = await page.get_attribute("#queue-list .item", "data-key")
    await page.evaluate(
        "async (key) => { await GDInspector.outbox.update(key, {state: 'queued'});"
        " await GDInspector.flush(); }",
        key,
    )
    await page.wait_for_selector("#queue-list .item[data-state=filed]")
    assert await _cases(runtime) == 1
    async with runtime.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM case_queue WHERE case_no = $1", case_no)
        reported = await conn.fetchval(
            "SELECT count(*) FROM case_timeline WHERE case_id = $1 AND type = 'Reported'",
            row["case_id"],
        )
    assert reported == 1
    assert row["grid"] == GRID and row["source"] == "inspector_app"
    assert abs(row["lat"] - lat) < 1e-6 and row["category"] == "SJ0101"
    [photo] = row["photos"]
    assert photo["content_type"] == "image/jpeg"  # downscaled with a canvas on the phone
    assert photo["size"] < 2_000_000

    # --- a refused report keeps its reason; nothing queued is lost ---------------------------
    # (coordinates outside the city, as a phone with a broken GPS fix would queue them)
    await page.evaluate(
        """async (grid) => {
            await GDInspector.outbox.put({key: GD.uuid(), kind: 'report', label: '井盖 · BJ0101',
              payload: {category: 'BJ0101', grid, lat: 39.9, lon: 116.4, source: 'inspector_app',
                        description: '井盖松动 loose manhole cover'},
              photos: [], refs: [], state: 'queued', attempts: 0, case_no: null, error: null,
              created: new Date().toISOString()});
            await GDInspector.flush();
        }""",
        GRID,
    )
    await page.wait_for_selector(
        "#queue-list .item[data-state=rejected] .error:has-text('outside')"
    )
    assert await page.locator("#queue-list .item").count() == 2
    assert await page.locator("#queue-list .item[data-state=filed]").count() == 1
    await shot(page, "inspector-4-refused-kept")
    assert not errors, errors
    await context.close()


async def _cases(runtime: Any) -> int:
    async def count() -> Any:
        async with runtime.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM case_queue")

    value: int = await count()
    if value:
        # let any in-flight duplicate reach the read model before counting for real
        await eventually(lambda: _true(True), timeout=1)
        value = await count()
    return value


async def _true(value: bool) -> bool:
    return value


async def test_offline_backlog_is_sent_as_one_batch(
    system: dict[str, Any], app_url: str, browser: Any
) -> None:
    """Back from a dead zone with several queued reports: one POST /v1/reports/batch carries
    them; good ones are filed once each, a refused one keeps its reason."""
    runtime = system["runtime"]
    lat, lon = runtime.ref.jurisdiction.grid(GRID).centroid
    context = await browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    posts: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await sign_in_page(page, app_url, "/inspector/", INSPECTOR)
    await context.set_offline(True)
    await page.evaluate(
        """async ([grid, lat, lon]) => {
            const item = (text, la, lo) => ({key: GD.uuid(), kind: 'report', label: text,
              payload: {category: 'SJ0101', grid, lat: la, lon: lo, source: 'inspector_app',
                        description: text},
              photos: [], refs: [], state: 'queued', attempts: 0, case_no: null, error: null,
              created: new Date().toISOString()});
            for (const it of [item('垃圾 1', lat, lon), item('垃圾 2', lat, lon),
                              item('坏定位 bad fix', 39.9, 116.4), item('垃圾 3', lat, lon)])
              await GDInspector.outbox.put(it);
        }""",
        [GRID, lat, lon],
    )
    await context.set_offline(False)
    await page.evaluate("GDInspector.flush()")
    await page.click("#tabs button[data-tab=queue]")
    filed = page.locator("#queue-list .item[data-state=filed]")

    async def three_filed() -> bool:
        await page.evaluate("GDInspector.flush()")  # confirm "sent" items now, not in 5 s
        return await filed.count() == 3

    await eventually(three_filed, timeout=30)
    await page.wait_for_selector(
        "#queue-list .item[data-state=rejected] .error:has-text('outside')"
    )
    assert sum(url.endswith("/v1/reports/batch") for url in posts) == 1
    assert not any(url.endswith("/v1/reports") for url in posts)
    assert await _cases(runtime) == 3
    assert not errors, errors
    await context.close()
