"""The intake pages: the inspector PWA (``/inspector/``), the department worklist
(``/department/``) and the 12319 call-taker form (``/hotline/``).

Static files from ``gateways/web_intake/`` (no CDN: every script, style, icon and the map
library are served from here). The pages themselves are public — they hold no data; every
data call they make carries the signed-in user's Bearer token.

The inspector's service worker lives at ``/inspector/sw.js`` so that its scope is the app;
it caches the app shell for offline start (the report queue itself is in IndexedDB).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, RedirectResponse, Response

from gateways.http import security
from gateways.http.errors import ApiError
from gateways.http.identity import public

ROOT = Path(__file__).resolve().parent.parent / "web_intake"
STATIC_PREFIX = "/intake-static"

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": security.PAGE_POLICY,  # the one policy of every page
}

router = APIRouter(tags=["pages 页面"], dependencies=[Depends(public)], include_in_schema=False)


def _file(relative: str, cache: str = "no-cache") -> Response:
    path = (ROOT / relative).resolve()
    if not path.is_relative_to(ROOT) or not path.is_file() or path.suffix not in TYPES:
        raise ApiError(404, "not_found", f"no such file {relative}")
    return FileResponse(
        path, media_type=TYPES[path.suffix], headers={**_HEADERS, "Cache-Control": cache}
    )


def _redirect_to(target: str) -> Callable[[], Awaitable[Response]]:
    async def redirect() -> Response:
        return RedirectResponse(target, status_code=308)

    return redirect


for _page in ("inspector", "department", "hotline"):
    router.add_api_route(f"/{_page}", _redirect_to(f"/{_page}/"), methods=["GET"])


@router.get("/inspector/")
async def inspector_page() -> Response:
    """网格员 app: report, queue, my grid (核查, 六必访)."""
    return _file("inspector.html")


@router.get("/inspector/sw.js")
async def inspector_sw() -> Response:
    response = _file("sw.js")
    response.headers["Service-Worker-Allowed"] = "/inspector/"
    return response


@router.get("/inspector/manifest.webmanifest")
async def inspector_manifest() -> Response:
    return _file("manifest.webmanifest")


@router.get("/department/")
async def department_page() -> Response:
    """处置部门 worklist."""
    return _file("department.html")


@router.get("/hotline/")
async def hotline_page() -> Response:
    """12319 受理 form and 回访."""
    return _file("hotline.html")


@router.get(STATIC_PREFIX + "/{path:path}")
async def intake_static(path: str) -> Response:
    return _file(path)
