"""The command centre in headless Chromium: a dispatcher runs a shift from the page.

* files and dispatches a case from the case panel (the actions the server allows now);
* a report posted by the API appears in the queue and colours the map without a reload;
* filters and the map drill-down (city → district → community → grid) narrow the queue;
* zh-Hans by default, English chosen and remembered; metrics panel with charts and definitions;
* layout facts (tests/browser/conftest.py LAYOUT_PROBLEMS) of the centre at 1366×768, 1440×900,
  1920×1080 (a case open and closed) and 360×640, the big screen at 1920×1080 and 3840×2160,
  the inspector app and the hotline page at 360×640, the department, hotline and audit pages at
  the three desk sizes;
  screenshots in test-artifacts/ (and the README's with GRID_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Route

from tests.browser.conftest import layout_problems, shoot
from tests.conftest import auth_headers, demo_password, eventually
from tests.intake_support import sign_in_page

pytestmark = pytest.mark.browser


async def _report(client: Any, grid: str, key: str, text: str, category: str = "SJ0101") -> str:
    headers = {**await auth_headers(client, "call_taker"), "Idempotency-Key": key}
    response = await client.post(
        "/v1/reports",
        json={"category": category, "grid": grid, "description": text, "source": "hotline",
              "reporter": {"name": "钱七", "phone": "13500000000", "type": "citizen"}},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["case_no"])


async def _case(client: Any, case_no: str) -> dict[str, Any]:
    r = await client.get(f"/v1/cases/{case_no}", headers=await auth_headers(client, "dispatcher"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_dispatcher_files_and_dispatches_a_case_from_the_page(
    centre: dict[str, Any],
) -> None:
    client, rt = centre["client"], centre["runtime"]
    grid = sorted(rt.ref.jurisdiction.grids)[0]
    case_no = await _report(client, grid, "browser-file-0001", "人行道井盖缺失, 有行人绊倒风险")
    page = await centre["new_page"]("dispatcher")
    row = page.locator(f'#queue-body tr[data-case-no="{case_no}"]')
    await row.wait_for()
    await row.click()
    panel = page.locator("#case-panel")
    await panel.wait_for()
    await page.wait_for_selector("#case-title", state="visible")
    assert (await page.text_content("#case-title")) == case_no
    # File (立案): the button is there because the server says the dispatcher may do it now.
    await page.click('#case-actions button[data-action="file"]')
    await page.fill('#action-form textarea[name="note"]', "符合立案条件")
    await page.click("#action-submit")
    await page.wait_for_selector('#case-sub .status.filed')
    # Dispatch (派遣): the triage proposal is preselected; the dispatcher overrides it, and the
    # server insists on a reason (its message shows in the form), then accepts with one.
    await page.click('#case-actions button[data-action="dispatch"]')
    proposal = (await _case(client, case_no))["proposal"]
    assert await page.input_value("#dispatch-department") == proposal["department"]
    options = await page.eval_on_selector_all(
        "#dispatch-department option", "os => os.map(o => o.value)"
    )
    other = next(o for o in options if o != proposal["department"])
    await page.select_option("#dispatch-department", other)
    await page.click("#action-submit")
    await page.wait_for_selector("#action-error:not([hidden])")
    assert "override_reason" in (await page.text_content("#action-error") or "")
    await page.fill("#dispatch-override", "该路段由市级部门管养 (maintained by the city)")
    await shoot(page, "dispatch-form")
    await page.click("#action-submit")
    await page.wait_for_selector("#case-sub .status.dispatched")
    case = await _case(client, case_no)
    assert case["status"] == "dispatched" and case["department"] == other
    dispatched = case["timeline"][-1]
    assert dispatched["type"] == "Dispatched" and dispatched["data"]["overridden"] is True
    timeline = await page.text_content("#case-timeline")
    assert "派遣" in (timeline or "") and "立案" in (timeline or "")
    # The queue row followed (live stream), without a reload.
    await page.wait_for_selector(
        f'#queue-body tr[data-case-no="{case_no}"][data-status="dispatched"]'
    )
    assert await page.locator('#case-actions button[data-action="dispatch"]').count() == 0
    await shoot(page, "case-dispatched")


async def test_report_by_api_appears_on_map_and_queue_without_reload(
    centre: dict[str, Any],
) -> None:
    client, rt = centre["client"], centre["runtime"]
    j = rt.ref.jurisdiction
    grid = sorted(j.grids)[5]
    district = j.partition_of(grid)
    page = await centre["new_page"]("dispatcher")
    # A case already on screen: its row stays the same element through the live refreshes
    # (rows are patched in place — a rebuilt table swallowed clicks between two refreshes).
    elsewhere = next(g for g in sorted(j.grids) if j.partition_of(g) != district)
    earlier = await _report(client, elsewhere, "browser-live-0000", "路灯不亮 (street light out)")
    await page.wait_for_selector(f'#queue-body tr[data-case-no="{earlier}"]')
    earlier_row = await page.query_selector(f'#queue-body tr[data-case-no="{earlier}"]')
    assert earlier_row is not None
    polygon = page.locator(f'path[data-grid="{grid}"]')
    await polygon.wait_for()
    empty_fill = await polygon.get_attribute("fill")
    district_row = page.locator(f'#children tr[data-code="{district}"] td:nth-child(2)')
    before = int(await district_row.text_content() or "0")
    open_before = int(await page.text_content("#kpi-open") or "0")
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url))
    case_no = await _report(client, grid, "browser-live-0001", "垃圾桶满溢 (bins overflowing)")
    await page.wait_for_selector(f'#queue-body tr[data-case-no="{case_no}"]')
    await page.wait_for_function(
        "([sel, n]) => Number(document.querySelector(sel).textContent) === n",
        arg=[f'#children tr[data-code="{district}"] td:nth-child(2)', before + 1],
    )
    assert await polygon.get_attribute("fill") != empty_fill
    await page.wait_for_function(
        "n => document.querySelector('#kpi-open').textContent === String(n)", arg=open_before + 1
    )
    assert navigations == []  # no reload happened
    assert await earlier_row.evaluate("tr => tr.isConnected && tr.dataset.caseNo") == earlier
    await shoot(page, "live-report")


@pytest.mark.parametrize("centre", [{"history": 600, "seed": 11}], indirect=True)
async def test_filters_drill_down_language_and_metrics(centre: dict[str, Any]) -> None:
    rt = centre["runtime"]
    j = rt.ref.jurisdiction
    page = await centre["new_page"]("dispatcher")
    await page.wait_for_selector("#queue-body tr")
    total = await page.text_content("#queue-count")
    assert total and re.search(r"\d+", total)

    # Drill down: city → district → community → grid, by the children table and the map.
    district = sorted(j.children(j.city_code))[0]
    await page.click(f'#children tr[data-code="{district}"]')
    await page.wait_for_selector(f'#breadcrumb button.current[data-code="{district}"]')
    await page.wait_for_function(
        "codes => [...document.querySelectorAll('#queue-body tr')]"
        ".every(r => codes.includes(r.dataset.grid))",
        arg=j.grids_under(district),
    )
    # A dispatcher clicks a grid on the map before the community's counts have arrived (held
    # here): the click still goes one level down from the community, and the late answer
    # does not take the page back to the community.
    community = j.children(district)[0]
    grid = j.children(community)[0]
    release = asyncio.Event()

    async def hold_community(route: Route) -> None:
        if parse_qs(urlsplit(route.request.url).query).get("node") == [community]:
            await release.wait()
        await route.continue_()

    await page.route("**/v1/map?*", hold_community)
    await page.click(f'#children tr[data-code="{community}"]')
    await page.click(f'path[data-grid="{grid}"]')
    await page.wait_for_selector(f'#breadcrumb button.current[data-code="{grid}"]')
    async with page.expect_response(lambda r: f"node={community}&" in r.url + "&"):
        release.set()
    await page.unroute("**/v1/map?*", hold_community)
    await page.evaluate("() => new Promise(requestAnimationFrame)")
    assert await page.get_attribute("#breadcrumb button.current", "data-code") == grid
    await page.wait_for_function(
        "g => [...document.querySelectorAll('#queue-body tr')].every(r => r.dataset.grid === g)",
        arg=grid,
    )
    await shoot(page, "drill-down-grid")
    # Back up to the city from the breadcrumb.
    await page.click(f'#breadcrumb button[data-code="{j.city_code}"]')
    await page.wait_for_selector(f'#breadcrumb button.current[data-code="{j.city_code}"]')

    # Filters: status, traffic light, search.
    await page.select_option("#f-status", "filed")
    await page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('#queue-body tr')];"
        " return rows.length > 0 && rows.every(r => r.dataset.status === 'filed'); }"
    )
    await page.select_option("#f-status", "")
    await page.click('#light-chips .chip[data-light="red"]')
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#queue-body tr .light')]"
        ".every(l => l.classList.contains('r'))"
    )
    await page.click('#light-chips .chip[data-light=""]')
    first = await page.get_attribute("#queue-body tr:first-child", "data-case-no")
    await page.fill("#f-q", first or "")
    await page.wait_for_function(
        "n => { const rows = document.querySelectorAll('#queue-body tr');"
        " return rows.length === 1 && rows[0].dataset.caseNo === n; }",
        arg=first,
    )
    await page.fill("#f-q", "")
    # The default order is by urgency (overdue first, then the soonest due): ascending
    # deadlines; by report time it turns to newest first.
    assert await page.input_value("#sort") == "due_at"
    await page.select_option("#sort", "reported_at")
    await page.wait_for_selector("#order use[href$='#i-down']")
    await page.select_option("#sort", "due_at")
    await page.wait_for_selector("#order use[href$='#i-up']")

    # English, remembered: after a reload the page is still in English.
    assert await page.evaluate("document.documentElement.lang") == "zh-Hans"
    await page.select_option("#lang-slot select", "en")
    await page.wait_for_function(
        "() => document.querySelector('.brand-title').textContent.includes('Command Centre')"
    )
    assert (await page.text_content("#tab-queue")) == "Queue"
    await page.reload()
    await page.wait_for_selector("#queue-body tr")
    assert (await page.text_content("#tab-queue")) == "Queue"
    assert await page.evaluate("document.documentElement.lang") == "en"

    # Metrics: cards, two charts, the table and the definitions.
    await page.click("#tab-metrics")
    await page.wait_for_selector('#metric-cards .mcard[data-metric="closure_rate"]')
    await page.wait_for_selector("#chart-counts .uplot")
    await page.wait_for_selector("#chart-rates .uplot")
    assert await page.locator("#metrics-table tbody tr").count() > 2
    definitions = await page.text_content("#definition-list")
    assert definitions and "On-time closure rate" in definitions
    await shoot(page, "metrics-en")


@pytest.mark.parametrize("centre", [{"history": 1500, "seed": 3}], indirect=True)
async def test_overview_screenshot(centre: dict[str, Any]) -> None:
    """The README's picture: a shift in progress (a generated 12-day history)."""
    page = await centre["new_page"]("dispatcher")
    await page.wait_for_selector("#queue-body tr")
    # A case waiting for dispatch: the panel shows the dispatcher's actions.
    waiting = page.locator('#queue-body tr[data-status="filed"]')
    target = waiting.first if await waiting.count() else page.locator("#queue-body tr").nth(2)
    await target.click()
    await page.wait_for_selector("#case-timeline li")
    await map_settled(page)  # the map has finished flying to the case's bounds
    path = await shoot(page, "command-centre", readme=True)
    assert path.stat().st_size > 50_000
    await eventually(lambda: _open(page), timeout=5)
    await _layouts(centre, page)


DESKS = [(1366, 768), (1440, 900), (1920, 1080)]


async def _drawn(page: Any) -> None:
    """Wait until the browser has drawn the page at its new size (two animation frames)."""
    await page.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    )


async def _check(page: Any, where: str) -> None:
    await _drawn(page)
    problems = await layout_problems(page)
    await shoot(page, f"layout-{where}")
    assert not problems, (where, problems)
    assert await page.evaluate("document.documentElement.lang") in ("zh-Hans", "en"), where


async def _layouts(centre: dict[str, Any], page: Any) -> None:
    """Every page at the sizes it is meant for: no layout problem, zh-Hans shown."""
    assert await page.evaluate("document.documentElement.lang") == "zh-Hans"
    assert await page.text_content(".brand-title") == "网格化管理指挥中心"
    assert await page.text_content("#tab-queue") == "案件队列"
    # The command centre, a case open (three columns) and closed (two).
    for width, height in DESKS:
        await page.set_viewport_size({"width": width, "height": height})
        await _check(page, f"centre-case-{width}")
    await page.click("#case-close")
    for width, height in DESKS:
        await page.set_viewport_size({"width": width, "height": height})
        await _check(page, f"centre-{width}")
    await page.set_viewport_size({"width": 360, "height": 640})
    await _check(page, "centre-360")
    # The big screen (same tab: the sign-in lives in its sessionStorage).
    await page.set_viewport_size({"width": 1920, "height": 1080})
    await page.goto(centre["base"] + "/centre/big")
    await page.wait_for_selector("#overdue-list li")
    await page.wait_for_selector("#metrics .bm")
    await page.wait_for_selector("#live.on")
    await shoot(page, "big-screen", readme=True)
    await _check(page, "big-1920")
    await page.set_viewport_size({"width": 3840, "height": 2160})
    await _check(page, "big-3840")

    browser, base = centre["browser"], centre["base"]
    # The inspector's phone app.
    phone = await browser.new_context(viewport={"width": 360, "height": 640}, locale="zh-CN")
    inspector = await phone.new_page()
    await sign_in_page(inspector, base, "/inspector/", "inspector-520102001001")
    assert await inspector.text_content("header strong") == "网格员上报"
    await shoot(inspector, "inspector", readme=True)
    await _check(inspector, "inspector-360")
    await phone.close()
    # The department worklist, the call-taker's page and the audit page at the desk sizes.
    desk = await browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    for path, username, name in (("/department/", "handler-D-520102-sanitation", "department"),
                                 ("/hotline/", "calltaker", "hotline")):
        other = await desk.new_page()
        await sign_in_page(other, base, path, username)
        for width, height in DESKS + ([(360, 640)] if name == "hotline" else []):
            await other.set_viewport_size({"width": width, "height": height})
            await _check(other, f"{name}-{width}")
        if name == "hotline":
            await other.set_viewport_size({"width": 1366, "height": 768})
            await shoot(other, "hotline", readme=True)
    audit = await desk.new_page()
    case_no = await page.evaluate("document.querySelector('#overdue-list .no')?.textContent")
    await audit.goto(f"{base}/audit?case={case_no}")
    await audit.fill("#signin-username", "auditor")
    await audit.fill("#signin-password", demo_password("auditor"))
    await audit.click("#signin-submit")
    await audit.wait_for_selector("#signin", state="hidden")
    await audit.goto(f"{base}/audit?case={case_no}")
    await audit.wait_for_selector("#state dd[data-field=status]")
    for width, height in DESKS:
        await audit.set_viewport_size({"width": width, "height": height})
        await _check(audit, f"audit-{width}")
    await shoot(audit, "audit", readme=True)
    await desk.close()


#: The map's view (pane offset, each animated layer's transform and viewBox): equal in two
#: polls 300 ms apart and no zoom / pan animation running means the map has settled.
_MAP_VIEW = """() => {
  const parts = [...document.querySelectorAll(
    '.leaflet-map-pane, .leaflet-zoom-animated, .leaflet-overlay-pane svg')].map(
    (e) => `${e.style.transform}|${e.getAttribute('viewBox') || ''}`);
  const view = parts.join(';');
  const same = view !== '' && window.__gdLastMapView === view;
  window.__gdLastMapView = view;
  return same && !document.querySelector('.leaflet-zoom-anim, .leaflet-pan-anim');
}"""


async def map_settled(page: Any) -> None:
    await page.wait_for_function(_MAP_VIEW, polling=300, timeout=20_000)


async def _open(page: Any) -> bool:
    return int(await page.text_content("#kpi-open") or "0") > 0
