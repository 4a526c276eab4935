"""The command centre's 走访覆盖 view at 1440×900 (issue 18): coverage per grid and per
community as the server computes it, the sensitive flags' counts withheld from a city-level
supervisor, and the definitions beside the figures; the map's 走访逾期 layer: overdue and
due-soon counts per grid (the grid's name on hover), never an address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateways.households import HouseholdApp, schedules_for
from tests.browser.conftest import shoot
from tests.conftest import auth_headers


async def test_centre_coverage_view(centre: dict[str, Any]) -> None:
    runtime = centre["runtime"]
    app = HouseholdApp(runtime.pool, runtime.ref, schedules_for(centre["settings"].city_dir))
    start = datetime.now(UTC) - timedelta(days=20)
    plan = [("520102001001", ["elderly_alone"], True), ("520102001001", ["hardship"], False),
            ("520102001002", ["elderly_alone", "serious_illness"], False)]
    for i, (grid, flags, visit) in enumerate(plan):
        made = await app.register(f"centre-{i}", {"grid": grid, "address": f"路 {i} 号",
                                                  "flags": [{"flag": f, "reason": "r"}
                                                            for f in flags]},
                                  actor="t", role="system", channel="import", at=start)
        if visit:
            await app.run(made.household.id, "record_visit", {"findings": "好"}, actor="t",
                          role="inspector", channel="t", at=start + timedelta(days=2),
                          command_id=f"centre-visit-{i}")
    client = centre["client"]
    api = (await client.get("/v1/households/coverage?by=grid",
                            headers=await auth_headers(client, "supervisor"))).json()
    page = await centre["new_page"]("supervisor")
    await page.set_viewport_size({"width": 1440, "height": 900})
    await page.click("#tab-visits")
    await page.wait_for_selector("#visits-view[data-loaded='1']")
    assert await page.is_hidden("#queue-view") and await page.is_hidden("#metrics-view")
    rows = await page.eval_on_selector_all(
        "#v-table tbody tr", "rs => rs.map(r => [r.dataset.unit, r.cells[5]"  # coverage, overdue
        ".textContent.trim(), r.cells[6].textContent.trim()])")
    by_unit = {u["unit"]: u for u in api["units"]}
    assert {r[0] for r in rows} == {"520102001001", "520102001002"}
    for unit, _coverage, overdue in rows:
        assert int(overdue) == by_unit[unit]["overdue"]
    assert by_unit["520102001001"]["visits_on_time"] == 1
    headers = await page.eval_on_selector_all("#v-table th", "hs => hs.map(h => h.textContent)")
    assert "孤寡老人" in headers and "重大疾病" not in headers  # city level: withheld
    assert "按期" in await page.text_content("#v-definition-list")
    await page.screenshot(path="test-artifacts/centre-visit-coverage.png")
    await page.select_option("#v-group", "community")
    await page.wait_for_selector("#v-table tbody tr[data-unit='520102001']")
    await page.click("#tab-queue")
    assert await page.is_hidden("#visits-view")

    # The map layer: counts per grid from /v1/households/overdue-map, names on hover only.
    layer = (await client.get("/v1/households/overdue-map",
                              headers=await auth_headers(client, "supervisor"))).json()
    expected = {g["grid"]: g for g in layer["grids"] if g["overdue"] or g["warning"]}
    assert expected, layer
    assert await page.is_hidden(".visits-legend")
    await page.check("#toggle-visits")
    await page.wait_for_selector(".visits-toggle[data-state='shown']")
    assert await page.is_visible(".visits-legend")
    assert "逾期未访户" in await page.text_content(".visits-legend")
    badges = await page.eval_on_selector_all(
        ".visit-badge span[data-grid]", "bs => bs.map(b => [b.dataset.grid, "
        "b.querySelector('.overdue')?.textContent || '0', "
        "b.querySelector('.warning')?.textContent || '0'])")
    assert {b[0]: (int(b[1]), int(b[2])) for b in badges} == {
        g: (c["overdue"], c["warning"]) for g, c in expected.items()}
    total = sum(c["overdue"] for c in expected.values())
    assert await page.get_attribute(".visits-toggle", "data-overdue") == str(total)
    await page.hover(".visit-badge span[data-grid='520102001002']")
    tip = page.locator(".leaflet-tooltip.grid-tip", has_text="逾期未访户")
    await tip.wait_for()
    assert "新华社区第二网格" in await tip.inner_text()
    assert "路 " not in await page.inner_text("#map")  # no address, anywhere on the map
    await shoot(page, "command-centre-visits-layer", readme=True)
    await page.uncheck("#toggle-visits")
    assert await page.locator(".visit-badge").count() == 0
