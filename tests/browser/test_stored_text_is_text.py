"""Stored text is rendered as text on every page, and the pages work under their
Content-Security-Policy (issue 15).

A report whose description, reporter name and address carry ``<script>`` and HTML with event
handlers, filed with such a note (the dispatcher's answer), is opened on the command centre
(queue, case panel, timeline), on the auditor page (timeline, slider) and on the department
worklist. Nothing runs: no dialog, no marker the payloads set, no element they would have
created — and the text appears literally. Every page loads without a CSP violation (Leaflet,
uPlot and our modules are our own files; no inline script anywhere).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.conftest import (
    auth_headers,
    demo_password,
    eventually,
)
from tests.intake_support import sign_in_page

pytestmark = pytest.mark.browser

SCRIPT = "<script>window.__xss='script'</script>"
IMG = "<img src=x onerror=\"window.__xss='img'\">"
SVG = "<svg onload=\"window.__xss='svg'\"></svg>"
DESCRIPTION = f"井盖破损 {SCRIPT}{IMG}<b class=\"xss\">bold</b>"
REPORTER = f"张{SVG}"
ADDRESS = f"中华路 {IMG}"
NOTE = f"符合立案条件 {SCRIPT}<iframe src=\"javascript:window.__xss='iframe'\"></iframe>"
#: What a payload would have created, had it been parsed as HTML.
INJECTED = "img[src='x'], svg[onload], b.xss, iframe, script:not([src])"


async def _hostile_case(site: dict[str, Any]) -> dict[str, Any]:
    client = site["client"]
    caller = await auth_headers(client, "call_taker")
    dispatcher = await auth_headers(client, "dispatcher")
    r = await client.post("/v1/reports", headers=caller, json={
        "category": "SJ0101", "grid": "520102001001", "source": "hotline",
        "description": DESCRIPTION, "address": ADDRESS,
        "reporter": {"name": REPORTER, "phone": "13600000006", "type": "citizen"},
    })
    assert r.status_code == 202, r.text
    case_no = str(r.json()["case_no"])

    async def case(version: int) -> dict[str, Any] | None:
        got = await client.get(f"/v1/cases/{case_no}", headers=dispatcher)
        body: dict[str, Any] = got.json() if got.status_code == 200 else {}
        return body if body.get("version") == version else None

    await eventually(lambda: case(1))
    for verb, args in (("file", {"note": NOTE}), ("dispatch", {})):
        got = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args,
                                headers=dispatcher)
        assert got.status_code == 200, got.text
    return dict(await eventually(lambda: case(3)))


async def _page(site: dict[str, Any]) -> Any:
    context = await site["browser"].new_context(viewport={"width": 1500, "height": 1000},
                                                locale="zh-CN")
    page = await context.new_page()
    page.set_default_timeout(20_000)
    page.problems = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.problems.append(f"error: {e}"))
    page.on("dialog", lambda d: page.problems.append(f"dialog: {d.message}"))

    def console(msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Refused to" in msg.text:
            page.problems.append(f"csp: {msg.text}")

    page.on("console", console)
    return page


async def _sign_in(page: Any, username: str) -> None:
    await page.fill("#signin-username", username)
    await page.fill("#signin-password", demo_password(username))
    await page.click("#signin-submit")


async def _nothing_ran(page: Any, where: str) -> None:
    assert await page.evaluate("window.__xss") is None, where
    injected = await page.evaluate(
        "sel => [...document.querySelectorAll(sel)].map(e => e.outerHTML.slice(0, 80))",
        INJECTED,
    )
    assert not injected, (where, injected)
    assert not page.problems, (where, page.problems)


async def test_hostile_text_is_shown_as_text_on_every_page(site: dict[str, Any]) -> None:
    case = await _hostile_case(site)
    case_no = case["case_no"]

    # Command centre (dispatcher): queue row, case panel with description and timeline.
    page = await _page(site)
    await page.goto(site["base"] + "/")
    await _sign_in(page, "dispatcher")
    await page.wait_for_selector("#signin", state="hidden")
    row = page.locator(f'#queue-body tr[data-case-no="{case_no}"]')
    await row.wait_for()
    await row.click()
    panel = page.locator("#case-panel")
    await page.wait_for_function(
        "t => document.querySelector('#case-panel').textContent.includes(t)", arg=SCRIPT)
    text = await panel.text_content() or ""
    assert "<b class=\"xss\">bold</b>" in text and IMG in text, text[:500]
    await page.click("#tab-metrics")  # uPlot charts under the policy
    await page.wait_for_selector("#metric-cards")
    await page.screenshot(path=str(ARTIFACTS / "stored-text-centre.png"))
    await _nothing_ran(page, "command centre")

    # Auditor page: every field, unmasked, and the notes of the timeline.
    page = await _page(site)
    await page.goto(site["base"] + "/audit")
    await _sign_in(page, "auditor")
    await page.wait_for_selector("#app", state="visible")
    await page.fill("#find-q", case_no)
    await page.click("#find-go")
    await page.wait_for_selector("#case", state="visible")
    for step in ("1", "2"):
        await page.fill("#slider", step)
        await _nothing_ran(page, f"auditor page, step {step}")
    whole = await page.text_content("body") or ""
    assert SCRIPT in whole, whole[:500]
    await page.screenshot(path=str(ARTIFACTS / "stored-text-audit.png"), full_page=True)
    await _nothing_ran(page, "auditor page")

    # Department worklist: the demo handler of the department the case went to.
    handler = f"handler-{case['department']}"
    page = await _page(site)
    await sign_in_page(page, site["base"], "/department/", handler)
    await page.wait_for_selector(f'[data-case-no="{case_no}"]')
    assert SCRIPT in (await page.text_content(f'[data-case-no="{case_no}"]') or "")
    await _nothing_ran(page, "department page")
    for path in ("/inspector/", "/hotline/"):
        page = await _page(site)
        await page.goto(site["base"] + path)
        await page.wait_for_load_state("load")
        await _nothing_ran(page, path)
