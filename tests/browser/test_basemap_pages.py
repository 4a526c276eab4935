"""The base map with no network (issue 17): the command centre draws the sample city's own
street and landmark layer under the grids (no request leaves the box), street names appear as
one zooms in, the 部件 toggle shows the components around, and the case panel shows the 核查
evidence — distance from the case and photo time — with both points pinned. The inspector
page (360×640) and the department card draw the same base map.

Screenshots: test-artifacts/basemap-*.png (docs/screenshots/ with GRID_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from typing import Any

from core import components
from tests.browser.conftest import ARTIFACTS, ROOT
from tests.conftest import auth_headers, demo_password, user_headers
from tests.intake_support import on_site, sign_in_page
from tests.integration.test_lifecycle import _sign_in, act, case_where

OWN = "520102001001"  # inspector-520102001001's grid
METRE = 1 / 111_195


async def _offline(context: Any, base: str, outside: list[str]) -> None:
    """Every request that would leave the box is refused (and remembered)."""

    async def route(r: Any) -> None:
        if r.request.url.startswith(base):
            await r.continue_()
        else:
            outside.append(r.request.url)
            await r.abort()

    await context.route("**/*", route)


async def _shot(page: Any, name: str, docs: str | None = None, **kw: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), **kw)
    if docs and os.environ.get("GRID_UPDATE_SCREENSHOTS"):
        shutil.copy(path, ROOT / "docs" / "screenshots" / docs)


async def test_centre_map_base_layer_components_and_evidence(centre: dict[str, Any]) -> None:
    runtime, client, base = centre["runtime"], centre["client"], centre["base"]
    j = runtime.ref.jurisdiction
    async with runtime.pool.acquire() as conn:
        loaded = await components.load_city(
            conn, j, runtime.ref.catalogue, centre["settings"].city_dir
        )
    assert loaded > 1000

    # A case checked on site: 30 m from the case, photo taken now.
    system = {"client": client, "runtime": runtime}
    await _sign_in(client)
    inspector = await auth_headers(client, "inspector")
    dispatcher = await auth_headers(client)
    lat, lon = j.grid(OWN).centroid
    async with runtime.pool.acquire() as conn:  # a bin of the grid: the report names it
        near, _ = await components.in_bbox(conn, lon - 0.02, lat - 0.02, lon + 0.02, lat + 0.02,
                                           kinds=["垃圾箱"], limit=50)
    bin_code = next(c["code"] for c in near if c["grid"] == OWN)
    report = await client.post(
        "/v1/reports", json={"category": "SJ0101", "description": "路边垃圾堆积",
                             "lat": lat, "lon": lon, "component": bin_code}, headers=inspector)
    assert report.status_code == 202, report.text
    case_no = report.json()["case_no"]
    await case_where(client, case_no, status="reported")
    await act(client, case_no, "file", dispatcher)
    await act(client, case_no, "dispatch", dispatcher)
    case = await case_where(client, case_no, status="dispatched")
    handler = await user_headers(system, role="handler", department=case["department"])
    await act(client, case_no, "accept", handler)
    await act(client, case_no, "report_result", handler, note="已清运")
    await case_where(client, case_no, status="awaiting_verification")
    evidence = await on_site(client, case_no, inspector)
    await act(client, case_no, "verify_pass", inspector, note="现场已清理",
              **{**evidence, "lat": lat + 30 * METRE,
                 "photo_taken_at": datetime.now(UTC).isoformat()})
    await case_where(client, case_no, status="verified")

    page = await centre["new_page"]()
    outside: list[str] = []
    await _offline(page.context, base, outside)
    await page.set_viewport_size({"width": 1440, "height": 900})
    await page.reload()
    await page.wait_for_selector("#live.on")
    await page.wait_for_selector("#map[data-basemap='vector']")
    roads = page.locator("#map .leaflet-gd-base-pane path")
    assert await roads.count() > 100  # streets and their casings, drawn under the grids
    grids = page.locator("#map .leaflet-overlay-pane path[data-grid]")
    assert await grids.count() == len(j.grids)
    await _shot(page, "basemap-centre", "command-centre-basemap.png")

    # A GCJ-02 source: the map's CRS (through gcoord) shifts WGS-84 points onto its tiles and
    # reads clicks back as WGS-84.
    gcj = await page.evaluate("""() => {
      const el = document.createElement("div");
      el.style.cssText = "width:400px;height:300px";
      document.body.append(el);
      const m = L.map(el, GDBasemap.mapOptions({ crs: "gcj02", min_zoom: 3, max_zoom: 18 }));
      m.setView([26.58, 106.7], 15);
      const back = m.options.crs.unproject(m.options.crs.project(L.latLng(26.58, 106.7)));
      const plain = L.CRS.EPSG3857.project(L.latLng(26.58, 106.7));
      const shifted = m.options.crs.project(L.latLng(26.58, 106.7));
      const code = m.options.crs.code;
      m.remove(); el.remove();
      const shift = Math.hypot(shifted.x - plain.x, shifted.y - plain.y);
      return { code, back: [back.lat, back.lng], shift };
    }""")
    assert gcj["code"] == "GCJ02"
    assert abs(gcj["back"][0] - 26.58) < 1e-5 and abs(gcj["back"][1] - 106.7) < 1e-5
    assert 100 < gcj["shift"] < 1000  # Web-Mercator metres: a few hundred on the ground

    # Zooming in: street names, then the components toggle.
    await page.check("#toggle-components")
    toggle = page.locator(".components-toggle")
    await page.wait_for_selector(".components-toggle[data-state='zoom-in']")
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    # Into the report's grid at street zoom (the map itself, not eight clicks whose animations
    # a loaded box could interleave with a refit), again if anything moved it back meanwhile.
    for attempt in range(3):
        await page.evaluate(
            "([lat, lon]) => document.querySelector('#map').gdMap.setView([lat, lon], 16, "
            "{animate: false})", [lat, lon])
        try:
            await page.wait_for_function(
                "() => document.querySelectorAll('#map .leaflet-gd-components-pane path').length"
                " > 5 && document.querySelector('.components-toggle').dataset.state === 'shown'",
                timeout=10_000,
            )
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    assert await toggle.get_attribute("data-state") == "shown"
    await page.wait_for_selector("#map:not([data-moving]) .gd-road-label", state="attached")
    await _shot(page, "basemap-centre-zoomed", "command-centre-components.png")

    # The case panel: distance and photo time, large, and the two pins.
    row = page.locator(f'#queue-body tr[data-case-no="{case_no}"]')
    if not await row.count():
        await page.goto(f"{base}/#case={case_no}")
    else:
        await row.click()
    panel = page.locator("#case-evidence")
    await panel.wait_for()
    assert "30 米" in await panel.locator("[data-fact=distance]").inner_text()
    assert "限 200 米" in await panel.locator("[data-fact=distance]").inner_text()
    taken = await panel.locator("[data-fact=photo-time]").inner_text()
    assert "现场照片拍摄时间" in taken and "核查前" in taken
    await page.wait_for_selector("#case-component-kind:has-text('垃圾箱')")
    assert bin_code in await page.locator("#case-component").inner_text()
    await page.wait_for_selector("#case-map[data-basemap='vector']")
    pins = page.locator("#case-map .leaflet-tooltip")
    assert sorted(await pins.all_inner_texts()) == sorted(["案件位置", "核查位置"])
    await page.wait_for_selector("#map:not([data-moving])")
    await _shot(page, "basemap-case-evidence", "case-panel-evidence.png")
    assert outside == []

    # The auditor page: the same evidence (shared/evidence.js) from the event store's history,
    # over the same base map, with the address and both pins.
    audit = await centre["browser"].new_context(
        viewport={"width": 1440, "height": 900}, locale="zh-CN"
    )
    auditor = await audit.new_page()
    audit_errors: list[str] = []
    auditor.on("pageerror", lambda e: audit_errors.append(str(e)))
    audit_outside: list[str] = []
    await _offline(audit, base, audit_outside)
    await auditor.goto(f"{base}/audit")
    await auditor.fill("#signin-username", "auditor")
    await auditor.fill("#signin-password", demo_password("auditor"))
    await auditor.click("#signin-submit")
    await auditor.wait_for_selector("#app:not([hidden])")
    await auditor.fill("#find-q", case_no)
    await auditor.click("#find-go")
    facts = auditor.locator("#case-where #case-evidence")
    await facts.wait_for()
    distance = await facts.locator("[data-fact=distance]").inner_text()
    assert "30 米" in distance and "限 200 米" in distance
    assert "核查前" in await facts.locator("[data-fact=photo-time]").inner_text()
    await auditor.wait_for_selector("#case-where #case-component-kind:has-text('垃圾箱')")
    await auditor.wait_for_selector("#case-where #case-map[data-basemap='vector']")
    audit_pins = auditor.locator("#case-where #case-map .leaflet-tooltip")
    assert sorted(await audit_pins.all_inner_texts()) == sorted(["案件位置", "核查位置"])
    await auditor.locator("#case-where").scroll_into_view_if_needed()
    await _shot(auditor, "basemap-audit-evidence", "audit-evidence.png")
    assert audit_outside == [] and audit_errors == []
    await audit.close()

    # The hotline (1440×900): a 部件 category asks for the component's code; a known code is
    # looked up (kind shown) and locates the call; the report names it.
    desk = await centre["browser"].new_context(
        viewport={"width": 1440, "height": 900}, locale="zh-CN"
    )
    hotline = await desk.new_page()
    desk_errors: list[str] = []
    hotline.on("pageerror", lambda e: desk_errors.append(str(e)))
    desk_outside: list[str] = []
    await _offline(desk, base, desk_outside)
    await sign_in_page(hotline, base, "/hotline/", "calltaker")
    assert await hotline.locator("#component-field").is_hidden()
    await hotline.fill("#caller-name", "王先生")
    await hotline.fill("#caller-phone", "13800000017")
    bin_category = (await client.get(f"/v1/components/{bin_code}",
                                     headers=dispatcher)).json()["category"]
    await hotline.fill(".catpicker input", bin_category)
    await hotline.click(f".catpicker .results li:has-text('{bin_category}')")
    await hotline.fill("#component", "12345")
    await hotline.fill("#description", "垃圾箱破损，垃圾满地")
    await hotline.click("#submit-call")
    assert "16 位数字" in (await hotline.text_content("#call-error") or "")
    await hotline.fill("#component", "9999999999999999")  # 16 digits, no such component
    await hotline.wait_for_selector("#component-found:has-text('没有这个部件编码')")
    await hotline.fill("#component", bin_code)
    await hotline.wait_for_selector("#component-found:has-text('垃圾箱')")
    assert "不属于所选类别" not in (await hotline.text_content("#component-found") or "")
    assert await hotline.input_value("#grid-select") == OWN  # located at the component
    await _shot(hotline, "basemap-hotline-component", "hotline-component.png")
    await hotline.click("#submit-call")
    await hotline.wait_for_selector("#registered .case-no")
    call_case = ((await hotline.text_content("#registered .case-no")) or "").strip()
    called = await case_where(client, call_case)
    first = next(e for e in called["timeline"] if e["type"] == "Reported")
    assert first["data"]["component"] == bin_code and called["grid"] == OWN
    assert desk_outside == [] and desk_errors == []
    await desk.close()

    # The inspector's phone: the same base map under the grids.
    context = await centre["browser"].new_context(
        viewport={"width": 360, "height": 640}, locale="zh-CN"
    )
    phone = await context.new_page()
    phone_errors: list[str] = []
    phone.on("pageerror", lambda e: phone_errors.append(str(e)))
    phone_outside: list[str] = []
    await _offline(context, base, phone_outside)
    await sign_in_page(phone, base, "/inspector/", "inspector-520102001001")
    await phone.wait_for_selector("#map[data-basemap='vector']")
    assert await phone.locator("#map .leaflet-gd-base-pane path").count() > 10
    await _shot(phone, "basemap-inspector", "inspector-basemap.png")
    # A 部件 category offers the component's code (from its plate); the report records it.
    assert await phone.locator("#component-field").is_hidden()
    async with runtime.pool.acquire() as conn:
        lamps, _ = await components.in_bbox(conn, lon - 0.03, lat - 0.03, lon + 0.03, lat + 0.03,
                                            kinds=["路灯"], limit=200)
    lamp = next(c for c in lamps if c["grid"] == OWN)
    await phone.fill(".catpicker input", "BJ0105")
    await phone.click(".catpicker .results li:has-text('BJ0105')")
    await phone.fill("#component", "12345")
    await phone.fill("#description", "路灯不亮")
    await phone.click("#submit-report")
    assert "16 位数字" in (await phone.text_content("#report-error") or "")
    await phone.fill("#component", lamp["code"])
    await phone.click("#submit-report")
    await phone.wait_for_selector("#queue-list .item[data-state=filed] .case-no")
    lamp_case = ((await phone.text_content("#queue-list .item .case-no")) or "").split()[-1]
    filed = await case_where(client, lamp_case)
    reported = next(e for e in filed["timeline"] if e["type"] == "Reported")
    assert reported["data"]["component"] == lamp["code"]
    assert phone_outside == [] and phone_errors == []
    await context.close()
