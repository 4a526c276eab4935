"""The auditor page (/audit) in headless Chromium against the whole running system: sign in as
the demo auditor, find a case, replay its timeline with the slider (state at each step equal
to the API's state at that version), the integrity status, zh / en labels, and an export
downloaded from the page that the standalone verifier accepts."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.conftest import (
    auth_headers,
    demo_password,
    eventually,
    user_headers,
)

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]


async def _drive_case(site: dict[str, Any]) -> str:
    client = site["client"]
    caller = await auth_headers(client, "call_taker")
    dispatcher = await auth_headers(client, "dispatcher")
    r = await client.post("/v1/reports", headers=caller, json={
        "category": "SJ0101", "grid": "520102001001", "source": "hotline",
        "description": "垃圾暴露，影响通行 (exposed garbage)",
        "reporter": {"name": "赵六", "phone": "13600000006", "type": "citizen"},
    })
    assert r.status_code == 202, r.text
    case_no = str(r.json()["case_no"])

    async def case(version: int) -> dict[str, Any] | None:
        got = await client.get(f"/v1/cases/{case_no}", headers=dispatcher)
        body: dict[str, Any] = got.json() if got.status_code == 200 else {}
        return body if body.get("version") == version else None

    await eventually(lambda: case(1))
    for verb, args in (("file", {"note": "符合立案条件"}), ("dispatch", {})):
        got = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args,
                                headers=dispatcher)
        assert got.status_code == 200, got.text
    dispatched = await eventually(lambda: case(3))
    handler = await user_headers({"runtime": site["runtime"]}, role="handler",
                                 department=dispatched["department"])
    for verb, args in (("accept", {}), ("report_result", {"note": "已清运完毕"})):
        got = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args,
                                headers=handler)
        assert got.status_code == 200, got.text
    await eventually(lambda: case(5))
    auditor = await auth_headers(client, "auditor")

    async def sealed() -> bool:
        got = (await client.get(f"/v1/audit/cases/{case_no}/verify", headers=auditor)).json()
        return bool(got["ok"] and got["sealed"] == got["events"] == 5)

    await eventually(sealed, timeout=20)
    return case_no


async def test_auditor_page_replays_verifies_and_exports(site: dict[str, Any],
                                                         tmp_path: Path) -> None:
    case_no = await _drive_case(site)
    context = await site["browser"].new_context(
        viewport={"width": 1500, "height": 1000}, locale="zh-CN", accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(site["base"] + "/audit")
    assert await page.text_content("[data-i18n='audit.signin']") == "审计员登录"
    await page.fill("#signin-username", "auditor")
    await page.fill("#signin-password", demo_password("auditor"))
    await page.click("#signin-submit")
    await page.wait_for_selector("#app", state="visible")

    # Find by reporter name: one result opens the case.
    await page.fill("#find-reporter", "赵六")
    await page.click("#find-go")
    await page.wait_for_selector(f"#results tr[data-case='{case_no}']")
    await page.wait_for_selector("#case", state="visible")
    assert (await page.text_content("#case-no")) == case_no
    badge = page.locator("#integrity")
    assert await badge.get_attribute("data-ok") == "true"
    assert "完整性已验证" in (await badge.text_content() or "")
    assert await page.locator("#timeline li").count() == 5
    # The last step is shown first: status after ResultReported.
    assert await page.input_value("#slider") == "5"
    # Labelled fields with translated values; the stored code is on hover.
    status = page.locator("#state dd[data-field=status]")
    assert await status.text_content() == "待核查"
    assert await status.get_attribute("title") == "awaiting_verification"
    assert await page.text_content("#state dt[title=status]") == "状态"

    # The slider replays: step 2 is the filed case, equal to the API's state at version 2.
    auditor = await auth_headers(site["client"], "auditor")
    for step in (1, 2, 3):
        await page.fill("#slider", str(step))
        api_state = (await site["client"].get(
            f"/v1/audit/cases/{case_no}/state", params={"version": step}, headers=auditor
        )).json()["state"]
        shown = page.locator("#state dd[data-field=status]")
        assert await shown.get_attribute("title") == api_state["status"], step
        dept = page.locator("#state dd[data-field=department]")
        assert (await dept.get_attribute("title") or None) == api_state["department"], step
        if api_state["department"]:  # by name, with the code after it
            name = site["runtime"].ref.jurisdiction.departments[api_state["department"]]
            assert await dept.text_content() == f"{name.name_zh} ({api_state['department']})"
        assert (await page.text_content("#step-label") or "").startswith(f"步骤 {step} / 5")
    await page.screenshot(path=str(ARTIFACTS / "auditor-page-zh.png"), full_page=True)
    await page.fill("#slider", "2")
    await page.click("#play")
    await page.wait_for_function("() => document.querySelector('#slider').value === '5'")
    await page.wait_for_function("() => document.querySelector('#play').textContent === '▶'")

    # English labels.
    await page.select_option("#lang-slot select", "en")
    assert await page.text_content("[data-i18n='audit.timeline']") == "Timeline"
    assert "Integrity verified" in (await badge.text_content() or "")
    await page.fill("#slider", "3")
    assert "Dispatched" in (await page.text_content("#event") or "")
    shot = ARTIFACTS / "auditor-page.png"
    await page.screenshot(path=str(shot), full_page=True)

    # Export the case from the page; the standalone verifier accepts the download.
    async with page.expect_download() as info:
        await page.click("#export-case-jsonl")
    download = await info.value
    target = tmp_path / "case.jsonl"
    await download.save_as(str(target))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "tools" / "verify_export.py"), str(target),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert "5 events of 1 cases" in out.decode()

    # The page's reads were recorded, and the read log shows them.
    await page.click("#reads-box summary")
    await page.wait_for_selector("#reads tbody tr td")
    reads = (await site["client"].get("/v1/audit/reads", params={"case_no": case_no},
                                      headers=auditor)).json()["items"]
    assert any(r["path"].endswith("/history") and r["user_id"] for r in reads)
    assert not errors, errors
    await context.close()
