"""Every page in each of its languages at the sizes it is meant for (issue 16).

test_command_centre.py checks the signed-in pages in zh-Hans at every size; this adds what it
leaves out: the sign-in pages (centre, audit, department, hotline at 1366×768 and 1440×900,
the inspector's at 360×640), the public status page (360×640, 1366×768, 1440×900) and the
command centre signed in (queue, an open case, the evaluation tab) in zh-Hant and English —
in zh-Hans, zh-Hant and en each. For each: the layout facts (conftest.py LAYOUT_PROBLEMS: no
column narrower than its content's minimum, nothing out of the header, no sideways scroll)
and the language shown: ``<html lang>``, and on pages without stored data no character of
the other Chinese script (from the catalogue's own zh-Hans / zh-Hant entries) and no Chinese
at all in English (the language picker, which names each language in its own script, aside).
Screenshots: test-artifacts/lang-<lang>-<page>-<width>.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import layout_problems, shoot
from tests.conftest import auth_headers, demo_password

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
        for path, ready, where in (("/", "#signin-username", "centre-signin"),
                                   ("/audit", "#signin-username", "audit-signin"),
                                   ("/department/", "input[name=username]", "department-signin"),
                                   ("/hotline/", "input[name=username]", "hotline-signin")):
            await page.goto(base + path)
            await page.wait_for_selector(ready)
            for width, height in DESKS:
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
            # People's and places' names are stored data (Chinese in every language): the
            # layout and <html lang> are checked here, the words by the catalogue's tests.
            for width, height in (*DESKS, (1920, 1080)):
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
