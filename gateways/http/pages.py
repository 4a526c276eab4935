"""Web pages served by the gateway: the command centre at ``/`` and its static assets.

Everything the page needs (our ES modules, CSS, Leaflet, uPlot) is a file under
``gateways/web/static`` — no CDN, so the centre works on an isolated government network. The
page itself is public (it is only HTML and code); every piece of data it shows comes from the
API with the signed-in user's token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
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
async def command_centre_alias() -> RedirectResponse:
    return RedirectResponse("/", status_code=308)


def install(app: FastAPI) -> None:
    """Register the page routes and mount the static files at ``/static``."""
    app.include_router(router)
    STATIC_RULES.setdefault("/static", Rule(None))  # public: code and styles, no data
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
