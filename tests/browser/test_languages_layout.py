"""Every page in each of its languages at the sizes it is meant for (issue 16).

test_command_centre.py checks the signed-in pages in zh-Hans at every size; this adds what it
leaves out, in zh-Hans, zh-Hant and en each: the sign-in pages (centre, audit, department at
1366×768 and 1440×900, the hotline's at 1366×768, the inspector's at 360×640), the public
status page (360×640, 1366×768, 1440×900) and, in zh-Hant and English, the command centre
signed in (queue at 1366×768 and 1440×900, an open case at 1366×768, the evaluation tab at
1366×768 and 1920×1080). And the return-visit loop's last step on the page: the shift
leader's 回访不满意 list, 重办 from the case panel.

For each page: the layout facts (conftest.py LAYOUT_PROBLEMS: no column narrower than its
content's minimum, nothing out of the header, no sideways scroll)
and the language shown: ``<html lang>``, and on pages without stored data no character of
the other Chinese script (from the catalogue's own zh-Hans / zh-Hant entries) and no Chinese
at all in English (the language picker, which names each language in its own script, aside).
Screenshots: test-artifacts/lang-<lang>-<page>-<width>.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import layout_problems, shoot
from tests.conftest import auth_headers, demo_password, user_headers

pytestmark = pytest.mark.browser

LANGS = ("zh-Hans", "zh-Hant", "en")
DESKS = [(1366, 768), (1440, 900)]

#: Characters of the visible text that do not belong to ``lang``: in zh-Hans those only the
#: catalogue's zh-Hant entries use, in zh-Hant those only its zh-Hans entries use, in English
#: any Chinese character. The language picker's own names are left out.
_FOREIGN = """(lang) => {
  const M = window.GD_MESSAGES || {};
  const hans = new Set(), hant = new Set();
  for (const v of Object.values(M)) {
    if (!Array.isArray(v)) continue;
    for (const c of v[0] || "") hans.add(c);
    for (const c of v[1] || "") hant.add(c);
  }
  let text = document.body.innerText;
  for (const o of document.querySelectorAll("select.lang-picker option, .lang-picker")) {
    if (o.tagName === "OPTION") text = text.split(o.textContent).join(" ");
  }
  const cjk = (c) => c >= "\\u4e00" && c <= "\\u9fff";
  const out = new Set();
  for (const c of text) {
    if (!cjk(c)) continue;
    if (lang === "en") out.add(c);
    else if (lang === "zh-Hans" && hant.has(c) && !hans.has(c)) out.add(c);
    else if (lang === "zh-Hant" && hans.has(c) && !hant.has(c)) out.add(c);
  }
  return [...out].join("");
}"""


async def _drawn(page: Any) -> None:
    await page.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    )


async def _check(page: Any, lang: str, where: str, width: int, height: int,
                 script: bool = True) -> None:
    await page.set_viewport_size({"width": width, "height": height})
    await _drawn(page)
    await shoot(page, f"lang-{lang}-{where}-{width}")
    problems = await layout_problems(page)
    assert not problems, (lang, where, width, problems)
    assert await page.evaluate("document.documentElement.lang") == lang, (lang, where)
    if script:
        foreign = await page.evaluate(_FOREIGN, lang)
        assert not foreign, (lang, where, width, f"text of another script: {foreign}")


async def test_pages_in_every_language(centre: dict[str, Any]) -> None:
    client, base, browser = centre["client"], centre["base"], centre["browser"]
    headers = {**await auth_headers(client, "call_taker"), "Idempotency-Key": "lang-layout-1"}
    r = await client.post("/v1/reports", headers=headers, json={
        "category": "SJ0101", "grid": "520102001001", "description": "路口垃圾暴露",
        "source": "hotline", "reporter": {"name": "钱七", "phone": "13500000000"}})
    assert r.status_code == 202, r.text
    # A grid's inspector without an account (the sample city's insp-<grid>) by name, not id.
    people = await client.get("/v1/people", params={"ids": "insp-520102001003,nobody"},
                              headers=await auth_headers(client, "dispatcher"))
    assert [(p["user_id"], p["name"]) for p in people.json()["items"]] == [
        ("insp-520102001003", "新华社区第三网格 网格员")]
    for lang in LANGS:
        context = await browser.new_context(viewport={"width": 1366, "height": 768},
                                            locale="zh-CN")
        await context.add_init_script(f"localStorage.setItem('gd.lang', '{lang}')")
        page = await context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        # The public status page (a phone first) and the sign-in pages.
        await page.goto(f"{base}/status/")
        await page.wait_for_selector("#submit")
        for width, height in [(360, 640), *DESKS]:
            await _check(page, lang, "status", width, height)
        # (The department's and the hotline's sign-in are the intake pages' one form: the
        # narrower desk is enough for the second of them.)
        for path, ready, where, sizes in (
            ("/", "#signin-username", "centre-signin", DESKS),
            ("/audit", "#signin-username", "audit-signin", DESKS),
            ("/department/", "input[name=username]", "department-signin", DESKS),
            ("/hotline/", "input[name=username]", "hotline-signin", DESKS[:1]),
        ):
            await page.goto(base + path)
            await page.wait_for_selector(ready)
            for width, height in sizes:
                await _check(page, lang, where, width, height)
        await page.goto(f"{base}/inspector/")
        await page.wait_for_selector("input[name=username]")
        await _check(page, lang, "inspector-signin", 360, 640)
        if lang != "zh-Hans":  # zh-Hans signed in: test_command_centre.py's layouts
            await page.goto(base + "/")
            await page.fill("#signin-username", "dispatcher")
            await page.fill("#signin-password", demo_password("dispatcher"))
            await page.click("#signin-submit")
            await page.wait_for_selector("#queue-body tr")
            # Place names are stored in zh-Hans: in zh-Hant written in traditional characters
            # (shared/i18n.js hant, OpenCC's table), in English their English names.
            city = await page.text_content("#city-name")
            assert city == {"zh-Hant": "貴陽市", "en": "Guiyang"}[lang], city
            # People's names are stored data (as written in every language): the layout and
            # <html lang> are checked here, the words by the catalogue's tests.
            for width, height in DESKS:
                await _check(page, lang, "centre", width, height, script=False)
            await page.locator("#queue-body tr").first.click()
            await page.wait_for_selector("#case-timeline li")
            await _check(page, lang, "centre-case", 1366, 768, script=False)
            await page.click("#case-close")
            await page.click("#tab-metrics")
            await page.wait_for_selector("#metrics-table th")
            await _check(page, lang, "centre-metrics", 1920, 1080, script=False)
            await _check(page, lang, "centre-metrics", 1366, 768, script=False)
        assert not errors, (lang, errors)
        await context.close()


async def _step(client: Any, case_no: str, verb: str, headers: dict[str, str], status: str,
                **args: Any) -> dict[str, Any]:
    """One action, then its outcome in the read model (a busy worker may answer 202 queued)."""
    from tests.integration.test_lifecycle import case_where

    r = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args, headers=headers)
    assert r.status_code in (200, 202), (verb, r.status_code, r.text)
    case: dict[str, Any] = await case_where(client, case_no, status=status)
    return case


async def test_shift_leader_finds_dissatisfied_visits_and_reopens(centre: dict[str, Any]) -> None:
    """回访不满意 → the centre's chip lists the case for the shift leader (oldest visit first),
    the case panel offers 重办 and 不予重办, and 重办 takes the case off the list."""
    from tests.intake_support import on_site
    from tests.integration.test_lifecycle import (
        CALL_TAKER,
        DISPATCHER,
        INSPECTOR,
        _sign_in,
        case_where,
    )

    client = centre["client"]
    await _sign_in(client)
    r = await client.post("/v1/reports", headers=CALL_TAKER, json={
        "category": "SJ0101", "grid": "520102001001", "description": "垃圾暴露",
        "source": "hotline", "reporter": {"name": "钱七", "phone": "13500000000"}})
    assert r.status_code == 202, r.text
    case_no = str(r.json()["case_no"])
    await case_where(client, case_no, status="reported")
    await _step(client, case_no, "file", DISPATCHER, "filed")
    case = await _step(client, case_no, "dispatch", DISPATCHER, "dispatched")
    handler = await user_headers(centre, role="handler", department=case["department"])
    await _step(client, case_no, "accept", handler, "in_progress")
    await _step(client, case_no, "report_result", handler, "awaiting_verification", note="已清运")
    evidence = await on_site(client, case_no, INSPECTOR)
    await _step(client, case_no, "verify_pass", INSPECTOR, "verified", **evidence)
    await _step(client, case_no, "close", DISPATCHER, "closed")
    await _step(client, case_no, "return_visit", CALL_TAKER, "closed",
                satisfaction="dissatisfied", comment="还是很脏")
    page = await centre["new_page"]("shiftleader")
    chip = page.locator("#reopen-chip")
    await page.wait_for_selector("#reopen-chip:not([hidden])")
    assert (await chip.text_content() or "").split() == ["回访不满意", "1"]
    await chip.click()
    row = page.locator(f'#queue-body tr[data-case-no="{case_no}"]')
    await row.click()
    await page.wait_for_selector('#case-actions button[data-action="reopen"]')
    offered = await page.eval_on_selector_all(
        "#case-actions button[data-action]", "bs => bs.map(b => b.textContent)")
    assert offered == ["重办", "不予重办"], offered
    await _check(page, "zh-Hans", "centre-reopen", 1366, 768, script=False)
    await page.click('#case-actions button[data-action="reopen"]')
    await page.fill('#action-form textarea[name="reason"]', "回访不满意, 重新派遣")
    await page.click("#action-submit")
    await case_where(client, case_no, status="filed")
    await page.click("#case-close")
    await page.click("#reopen-chip")  # the list again: decided, the case is off it
    await page.wait_for_selector("#queue-empty:not([hidden])")
    assert await page.text_content("#reopen-count") == ""
