"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) on an intranet (issue 16): in headless
Chromium with every host but 127.0.0.1 refused, both pages draw the API and ask nothing of
another host — no request routed elsewhere, no load refused by their Content-Security-Policy.
ReDoc's footer logo is shown from this host (the vendored bundle asked cdn.redoc.ly for it;
``gateways/web/scripts/vendor.mjs`` points it at ``static/docs/redoc-logo-mini.svg``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import shoot

pytestmark = pytest.mark.browser


async def test_docs_and_redoc_fetch_nothing_from_outside(app_url: str, browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 1366, "height": 768})
    outside: list[str] = []

    async def only_here(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:  # anything else would hang or fail on an intranet
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_here)
    # The pages' Content-Security-Policy refuses other hosts before any request is made: a
    # refused load is an attempt too (Chromium reports it on the console).
    page.on("console", lambda m: outside.append(m.text)
            if "Content Security Policy" in m.text else None)
    try:
        await page.goto(app_url + "/docs")
        await page.wait_for_selector(".swagger-ui .opblock")  # the operations are drawn
        await page.wait_for_load_state("networkidle")
        await shoot(page, "docs-1366")
        await page.goto(app_url + "/redoc")
        await page.wait_for_selector(".menu-content li")
        await page.wait_for_load_state("networkidle")
        assert outside == [], outside
        # The footer logo is shown, so it loaded (the bundle removes it when it fails).
        logo = page.locator('.menu-content img[alt="redocly logo"]')
        await logo.wait_for(timeout=5000)
        assert await logo.evaluate("i => i.complete && i.naturalWidth > 0")
        assert urlsplit(await logo.evaluate("i => i.src")).hostname == "127.0.0.1"
        await logo.scroll_into_view_if_needed()
        await shoot(page, "redoc-1366")
    finally:
        await page.close()
