"""Web pages served by the gateway: the command centre at ``/`` (and its big-screen mode at
``/centre/big``), the API documentation (``/docs`` Swagger UI, ``/redoc`` ReDoc) and their
static assets.

Everything the page needs (our ES modules, CSS, Leaflet, uPlot) is a file under
``gateways/web/static`` — no CDN, so the centre works on an isolated government network. The
page itself is public (it is only HTML and code); every piece of data it shows comes from the
API with the signed-in user's token. FastAPI's own ``/docs`` and ``/redoc`` load their scripts
from a public CDN: ``install`` replaces them with pages that load the vendored copies
(``static/vendor/swagger-ui``, ``static/vendor/redoc``; ``npm run build`` in gateways/web).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from gateways.http.access import STATIC_RULES
from gateways.http.identity import Rule, public

WEB = Path(__file__).resolve().parent.parent / "web"
STATIC = WEB / "static"

router = APIRouter(tags=["pages 页面"], include_in_schema=False)

_NO_CACHE = {"Cache-Control": "no-cache"}


@router.get("/", dependencies=[Depends(public)])
async def command_centre() -> FileResponse:
    """The command centre (指挥中心) page."""
    return FileResponse(STATIC / "centre" / "index.html", headers=_NO_CACHE)


@router.get("/centre", dependencies=[Depends(public)])
async def command_centre_alias(
    screen: str | None = Query(default=None, max_length=10, description="big: the big screen"),
) -> RedirectResponse:
    return RedirectResponse("/centre/big" if screen == "big" else "/", status_code=308)


@router.get("/centre/big", dependencies=[Depends(public)])
async def big_screen() -> FileResponse:
    """The big screen (大屏): counters, the map, the overdue list and rotating metrics; no
    interaction needed (3840×2160 and 1920×1080)."""
    return FileResponse(STATIC / "centre" / "big.html", headers=_NO_CACHE)


@router.get("/docs", dependencies=[Depends(public)])
async def swagger_ui() -> FileResponse:
    """Swagger UI from the vendored bundle."""
    return FileResponse(STATIC / "docs" / "swagger.html", headers=_NO_CACHE)


@router.get("/docs/oauth2-redirect", dependencies=[Depends(public)])
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", dependencies=[Depends(public)])
async def redoc() -> FileResponse:
    """ReDoc from the vendored bundle."""
    return FileResponse(STATIC / "docs" / "redoc.html", headers=_NO_CACHE)


def install(app: FastAPI) -> None:
    """Register the page routes and mount the static files at ``/static``. FastAPI's CDN-backed
    ``/docs`` and ``/redoc`` routes are dropped first: ours serve the same UIs locally."""
    cdn_docs = {"/docs", "/docs/oauth2-redirect", "/redoc"}
    app.router.routes[:] = [
        r for r in app.router.routes if getattr(r, "path", None) not in cdn_docs
    ]
    app.include_router(router)
    STATIC_RULES.setdefault("/static", Rule(None))  # public: code and styles, no data
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
