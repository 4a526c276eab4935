"""Browser tests: the command-centre page in headless Chromium (Debian's package, driven by
Playwright), against the whole system running in-process on real NATS and PostgreSQL and
served by uvicorn on a free port.

Skipped cleanly when /usr/bin/chromium (or Playwright) is missing: ``.ci/run`` installs it.
Screenshots go to ``test-artifacts/`` (gitignored); with ``GRID_UPDATE_SCREENSHOTS=1`` the
README's screenshots are also copied to ``docs/screenshots/<name>.png``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import database_url, demo_password, drop_everything, make_settings, nats_url

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
VIEWPORT = {"width": 1680, "height": 1000}


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def caught_up(runtime: Any) -> bool:
    """Every read model has applied every stored event."""
    heads = {
        p: (await asyncio.to_thread(runtime.stores.get(p).recorder.max_notification_id)) or 0
        for p in runtime.ref.partitions
    }
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT projection, partition, position FROM projection_positions")
    applied = {(r["projection"], r["partition"]): r["position"] for r in rows}
    names = {r["projection"] for r in rows}
    return bool(names) and all(
        applied.get((name, p), 0) == head for name in names for p, head in heads.items()
    )


@pytest.fixture
async def centre(
    request: pytest.FixtureRequest, _runtimes_closed: Any
) -> AsyncIterator[dict[str, Any]]:
    """The running system on a real port, an API client, and a Chromium page factory.

    ``@pytest.mark.parametrize("centre", [{"history": N}], indirect=True)`` first writes a
    generated history of N cases (last 12 days) into the event store."""
    from playwright.async_api import async_playwright

    from gateways.bootstrap import ROLES
    from gateways.http.app import create_app
    from gateways.http.server import make_server
    from tests.conftest import eventually
    from tests.integration.history import History, save

    options: dict[str, Any] = getattr(request, "param", None) or {}
    # Opened in the background meanwhile, not started yet (tests/conftest.py ``_Runtimes``).
    runtime, settings = await _runtimes_closed.take()
    if options.get("history"):
        history = History(runtime.ref, seed=options.get("seed", 5))
        now = datetime.now(UTC)
        history.generate(options["history"], now - timedelta(days=12), 12)
        history.truncate(now)
        await asyncio.to_thread(save, history, runtime.stores)
    runtime.start(ROLES)
    port = _free_port()
    server = make_server(create_app(runtime), "127.0.0.1", port)
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    pages: list[Any] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

        async def new_page(username: str = "dispatcher", lang: str = "zh-Hans") -> Any:
            context = await browser.new_context(viewport=VIEWPORT, locale="zh-CN")
            page = await context.new_page()
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.errors = errors  # type: ignore[attr-defined]
            await page.goto(base + "/")
            await page.evaluate(f"localStorage.setItem('gd.lang', '{lang}')")
            await page.reload()
            await page.fill("#signin-username", username)
            await page.fill("#signin-password", demo_password(username))
            await page.click("#signin-submit")
            await page.wait_for_selector("#signin", state="hidden")
            await page.wait_for_selector("#live.on")
            pages.append(page)
            return page

        try:
            while not server.started:
                await asyncio.sleep(0.02)
            if options.get("history"):
                await eventually(lambda: caught_up(runtime), timeout=120, interval=0.5)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                yield {
                    "runtime": runtime,
                    "client": client,
                    "base": base,
                    "new_page": new_page,
                    "settings": settings,
                    "browser": browser,
                }
            for page in pages:
                assert not page.errors, page.errors
        finally:
            await browser.close()
            server.should_exit = True
            await asyncio.wait_for(serving, timeout=10)
            await _runtimes_closed.retire(runtime, settings)  # closed and dropped meanwhile


async def shoot(page: Any, name: str, readme: bool = False) -> Path:
    """Save a screenshot under test-artifacts/ (and for the README when asked to)."""
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    if readme and os.environ.get("GRID_UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return path


#: Layout facts of a page as it is drawn now, as a list of problems (empty: fine):
#: * the top bar does not overflow: nothing in it sticks out or scrolls;
#: * no visible table column is narrower than its content's minimum: a header label stays on
#:   one line or wraps only between words (an English metric name; a Chinese label is one
#:   word), and a cell that does not ellipsize (class "ellip") is not cut;
#: * a column that ellipsizes is still at least 56 px wide (a few characters of a name);
#: * the map title's breadcrumb buttons stay on one line (not one character per line);
#: * the page is not wider than the window (no sideways scroll of the whole page).
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const visible = (el) => el.offsetParent !== null && el.getBoundingClientRect().width > 0;
  const oneLine = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0);
    return new Set(rects.map((r) => Math.round(r.top))).size <= 1;
  };
  const name = (el) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className}` +
    ` "${(el.textContent || "").trim().slice(0, 20)}"`;
  for (const bar of document.querySelectorAll("header, .topbar, .gd-bar")) {
    if (!visible(bar)) continue;
    if (bar.scrollWidth > bar.clientWidth + 1) {
      problems.push(`header scrolls: ${bar.scrollWidth} > ${bar.clientWidth}`);
    }
    const box = bar.getBoundingClientRect();
    for (const el of bar.querySelectorAll("*")) {
      if (!visible(el)) continue;
      const r = el.getBoundingClientRect();
      if (r.right > box.right + 1 || r.left < box.left - 1) {
        problems.push(`outside the header: ${name(el)}`);
      }
    }
  }
  // A label's minimum is its longest word (a Chinese label is one word): a label may wrap
  // between words (an English metric name), never inside one (之前 as 之 / 前).
  const probe = document.createElement("span");
  probe.style.cssText = "position:absolute;visibility:hidden;white-space:nowrap;left:-9999px";
  document.body.append(probe);
  const widest = (el) => {
    const style = getComputedStyle(el);
    probe.style.font = style.font;
    probe.style.letterSpacing = style.letterSpacing;
    let most = 0;
    for (const word of (el.textContent || "").trim().split(/\\s+/)) {
      probe.textContent = word;
      most = Math.max(most, probe.getBoundingClientRect().width);
    }
    return most;
  };
  for (const th of document.querySelectorAll("table th")) {
    if (!visible(th) || !(th.textContent || "").trim()) continue;
    const px = Math.round(th.getBoundingClientRect().width);
    const style = getComputedStyle(th);
    const room = th.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    if (oneLine(th)) continue;
    if (widest(th) > room + 1) problems.push(`column label wraps (${px} px): ${name(th)}`);
  }
  probe.remove();
  for (const td of document.querySelectorAll("table tbody tr:nth-child(-n+8) td")) {
    if (!visible(td)) continue;
    const width = td.getBoundingClientRect().width;
    if (td.classList.contains("ellip")) {
      if (width < 56) problems.push(`name column only ${Math.round(width)} px: ${name(td)}`);
    } else if (td.scrollWidth > td.clientWidth + 1) {
      problems.push(`cell cut: ${name(td)} ${td.scrollWidth} > ${td.clientWidth}`);
    }
  }
  for (const b of document.querySelectorAll(".crumbs button")) {
    if (visible(b) && !oneLine(b)) problems.push(`map title wraps: ${name(b)}`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) {
    const wide = document.documentElement.scrollWidth;
    problems.push(`page wider than the window: ${wide} > ${window.innerWidth}`);
  }
  return problems;
}"""


async def layout_problems(page: Any) -> list[str]:
    problems: list[str] = await page.evaluate(LAYOUT_PROBLEMS)
    return problems


# --- shared by the intake pages' tests (inspector, department, hotline) ---------------------


@pytest.fixture
async def app_url(system: dict[str, Any]) -> AsyncIterator[str]:
    """The app on a real port (service workers and IndexedDB need an origin)."""
    from gateways.http.app import create_app
    from tests.intake_support import live_server

    async with live_server(create_app(system["runtime"], system["clock"])) as base:
        yield base


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium (Debian's) per test."""
    from playwright.async_api import async_playwright

    from tests.intake_support import CHROMIUM, CHROMIUM_ARGS

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def site() -> AsyncIterator[dict[str, Any]]:
    """The running system on a real port, an API client and a launched Chromium (pages are
    opened by the test: the auditor's and the stored-text tests sign in their own way)."""
    from playwright.async_api import async_playwright

    from gateways.bootstrap import ROLES, Runtime
    from gateways.http.app import create_app
    from gateways.http.server import make_server

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    settings = make_settings()
    runtime = await Runtime.open(settings, nats_url(), database_url())
    runtime.start(ROLES)
    port = _free_port()
    server = make_server(create_app(runtime), "127.0.0.1", port)
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with async_playwright() as pw, httpx.AsyncClient(base_url=base, timeout=30) as c:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield {"runtime": runtime, "client": c, "base": base, "browser": browser}
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=10)
        await runtime.close()
        await drop_everything(settings)
