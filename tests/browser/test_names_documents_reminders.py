"""Issues 16 and 18, the pages finished last, on one running system with a generated history
(headless Chromium; screenshots in test-artifacts/):

* the call-taker's return-visit list (1440×900): category names (code on hover), previous /
  next page through the API's pages;
* the public status page (360×640): the shared catalogue's words and its language switch;
* the centre's 综合评价 tab (1440×900): the evaluation report downloads as Excel and PDF, the
  household figures' definitions beside the case metrics, the coverage tab in English;
* the auditor page (1440×900): every changed field labelled, the household read log filtered
  by household, readers by name and households by number and address;
* the inspector's phone (360×640): a reminder of an overdue household visit in 通知.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import openpyxl
import pytest

from tests.browser.conftest import layout_problems, shoot
from tests.conftest import auth_headers, demo_password, eventually
from tests.intake_support import sign_in_page

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 360, "height": 640}


async def _context(centre: dict[str, Any], viewport: dict[str, int], lang: str = "zh-Hans",
                   phone: bool = False) -> tuple[Any, Any, list[str]]:
    extra = {"device_scale_factor": 2, "is_mobile": True, "has_touch": True} if phone else {}
    context = await centre["browser"].new_context(viewport=viewport, locale="zh-CN",
                                                  accept_downloads=True, **extra)
    await context.add_init_script(  # the first page's language; a choice made later stays
        f"if (!localStorage.getItem('gd.lang')) localStorage.setItem('gd.lang', '{lang}')")
    page = await context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, errors


@pytest.mark.parametrize("centre", [{"history": 260, "seed": 7}], indirect=True)
async def test_pages_of_names_documents_and_reminders(centre: dict[str, Any]) -> None:
    client, runtime, base = centre["client"], centre["runtime"], centre["base"]
    taker = await auth_headers(client, "call_taker")
    due = (await client.get("/v1/return-visits?page=1&page_size=4", headers=taker)).json()
    assert due["total"] > 4, due["total"]  # more than a page of the list (4 a page here)
    errors_seen: list[list[str]] = []

    # --- the hotline's return visits: names, pages ------------------------------------------
    ctx, page, errors = await _context(centre, DESKTOP)
    errors_seen.append(errors)
    await sign_in_page(page, base, "/hotline/?page_size=4", "calltaker")
    await page.click("#tabs button[data-tab=visits]")
    first = due["items"][0]
    card = f"#visits .item[data-case-no='{first['case_no']}']"
    await page.wait_for_selector(card)
    name = page.locator(f"{card} .cat-name")
    assert await name.get_attribute("title") == f"类别 {first['category']}"
    shown = await name.text_content() or ""
    assert shown and shown != first["category"]  # the name, the code on hover
    pages = due["pages"]
    assert await page.text_content("#visits-page") == f"第 1 / {pages} 页 · 共 {due['total']} 件"
    assert await page.is_disabled("#visits-prev") and not await page.is_disabled("#visits-next")
    await shoot(page, "hotline-return-visits-1440")
    await page.click("#visits-next")
    await page.wait_for_selector("body[data-visits-page='2']")
    second = (await client.get("/v1/return-visits?page=2&page_size=4", headers=taker)).json()
    await page.wait_for_selector(f"#visits .item[data-case-no='{second['items'][0]['case_no']}']")
    assert not await page.is_disabled("#visits-prev")
    await page.click("#visits-prev")
    await page.wait_for_selector("body[data-visits-page='1']")
    assert await layout_problems(page) == []
    await ctx.close()

    # --- the public status page: catalogue and language switch (phone) ----------------------
    case_no = first["case_no"]
    ctx, page, errors = await _context(centre, PHONE, phone=True)
    errors_seen.append(errors)
    await page.goto(base + "/status/")
    await page.wait_for_selector("body[data-ready='1']")
    assert await page.text_content("h1") == "工单查询"
    await page.fill("#case-no", case_no)
    await page.fill("#phone4", "0000")
    await page.click("#submit")
    await page.wait_for_selector("#result:not([hidden])")
    assert await page.text_content("#status-text") == "已办结"
    await page.select_option("select.lang-picker", "en")
    assert await page.text_content("h1") == "Check a case"
    assert await page.text_content("#status-text") == "Completed"
    assert "Progress" in (await page.text_content("#result") or "")
    category = await page.text_content("#result dd") or ""
    assert category and not any("\u4e00" <= ch <= "\u9fff" for ch in category), category
    assert await page.evaluate("document.documentElement.lang") == "en"
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    await shoot(page, "status-en-360")
    await page.reload()
    await page.wait_for_selector("body[data-ready='1']")
    assert await page.text_content("#submit") == "Check"  # remembered
    await page.select_option("select.lang-picker", "zh-Hans")
    await ctx.close()

    # --- the centre: evaluation downloads, definitions, the coverage tab in English ---------
    page = await centre["new_page"]("dispatcher")
    await page.set_viewport_size(DESKTOP)
    await page.click("#tab-metrics")
    await page.wait_for_selector("#metric-cards .mcard")
    assert await page.text_content("#m-evaluation-xlsx") == "评价报告 Excel"
    async with page.expect_download() as got:
        await page.click("#m-evaluation-xlsx")
    xlsx = await (await got.value).path()
    book = openpyxl.load_workbook(io.BytesIO(open(xlsx, "rb").read()))  # noqa: SIM115
    assert any("网格" in "".join(str(c.value or "") for c in row)
               for sheet in book.worksheets for row in sheet.iter_rows(max_row=4))
    async with page.expect_download() as got:
        await page.click("#m-evaluation-pdf")
    pdf = await (await got.value).path()
    assert open(pdf, "rb").read(5) == b"%PDF-"  # noqa: SIM115
    assert await page.text_content("#m-evaluation-pdf") == "评价报告 PDF"
    await shoot(page, "centre-evaluation-downloads-1440")
    await page.click("#definitions summary")
    definitions = await page.text_content("#definition-list") or ""
    assert "走访覆盖率" in definitions and "逾期未访户" in definitions and "结案率" in definitions
    await page.locator("dt.def-group").scroll_into_view_if_needed()
    await shoot(page, "centre-definitions-1440")
    await page.select_option("select.lang-picker", "en")
    assert await page.text_content("#tab-visits") == "Visit coverage"
    await page.click("#tab-visits")
    await page.wait_for_selector("#visits-view[data-loaded='1']")
    cards = await page.text_content("#v-cards") or ""
    assert "Visits due" in cards and "应走访" not in cards
    await page.select_option("select.lang-picker", "zh-Hans")
    await page.wait_for_function(
        "document.querySelector('#v-cards').textContent.includes('应走访')")

    # --- households for the read log and the reminder ---------------------------------------
    inspector = await auth_headers(client, "inspector")
    r = await client.post("/v1/households",
                          headers={**inspector, "Idempotency-Key": "pages-household-01"},
                          json={"grid": "520102001001", "address": "新华路 66 号 3 单元 101",
                                "members": [{"name": "刘德芳", "relation": "户主"}],
                                "flags": [{"flag": "elderly_alone", "reason": "独居"}]})
    assert r.status_code == 201, r.text
    household_no = r.json()["household_no"]
    leader = await auth_headers(client, "shift_leader")
    assert (await client.get(f"/v1/households/{household_no}", headers=leader)).status_code == 200

    # --- the auditor: labelled fields, the household read log -------------------------------
    ctx, page, errors = await _context(centre, DESKTOP)
    errors_seen.append(errors)
    await page.goto(base + "/audit")
    await page.fill("#signin-username", "auditor")
    await page.fill("#signin-password", demo_password("auditor"))
    await page.click("#signin-submit")
    await page.wait_for_selector("#app", state="visible")
    await page.fill("#find-q", case_no)
    await page.click("#find-go")
    await page.wait_for_selector("#case", state="visible")
    steps = int(await page.get_attribute("#slider", "max") or "1")
    for step in range(1, steps + 1):
        await page.fill("#slider", str(step))
        labels = await page.eval_on_selector_all(
            "#changes td[title]", "ts => ts.map(t => [t.title, t.textContent])")
        raw = [key for key, text in labels if text == key]
        assert not raw, (step, raw)  # every changed field by its label
    await page.fill("#hh-reads-household", household_no)
    await page.click("#hh-reads-go")
    await page.wait_for_selector("#hh-reads-view", state="visible")
    await page.wait_for_selector("#hh-reads tr[data-reader]")
    rows = await page.eval_on_selector_all(
        "#hh-reads tr[data-reader]", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    readers = {row[1] for row in rows}
    assert any("值班长" in row[2] for row in rows), rows
    assert all("新华路 66 号" in row[4] and household_no in row[4] for row in rows), rows
    assert not any(reader.startswith("insp-") for reader in readers), readers  # names first
    assert await layout_problems(page) == []
    await shoot(page, "audit-household-reads-1440")
    await page.fill("#hh-reads-household", "")
    await page.fill("#hh-reads-reader", "shiftleader")
    await page.click("#hh-reads-go")
    await page.wait_for_function(
        "[...document.querySelectorAll('#hh-reads tr[data-reader]')]"
        ".every(r => r.dataset.reader === 'shiftleader')")
    await ctx.close()

    # --- the inspector's phone: the overdue visit reminder ----------------------------------
    async with runtime.pool.acquire() as conn:
        due_at = await conn.fetchval(
            "SELECT due_at FROM household_register WHERE household_no = $1", household_no)
    sent = await runtime.watcher.remind(due_at + timedelta(minutes=1))
    assert [(n["kind"], n["case_no"]) for n in sent] == [("visit_overdue", household_no)]
    ctx, page, errors = await _context(centre, PHONE, phone=True)
    errors_seen.append(errors)
    await sign_in_page(page, base, "/inspector/", "inspector-520102001001")
    await page.click("#tabs button[data-tab=notes]")
    notice = page.locator("#notes .notice.visit_overdue")
    await notice.wait_for()
    assert "走访逾期" in (await notice.text_content() or "")
    assert household_no in (await notice.text_content() or "")
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    await shoot(page, "inspector-visit-reminder-360")
    await ctx.close()

    async def none_left() -> bool:
        return not any(errors_seen)

    assert await eventually(none_left, timeout=1), errors_seen
