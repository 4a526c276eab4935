"""工单查询: a reporter checks their case's progress (public, no sign-in).

* ``POST /v1/public/case-status`` ``{"case_no": "GD-…", "phone_last4": "1234"}`` → the
  reporter's view (``projections/reporter_status.py``: status in plain words, category name,
  when it moved — nothing personal, nothing internal), or 404 ``not_found`` for a wrong number
  *or* wrong digits alike. POST, so the digits stay out of URLs and access logs.
* ``GET /status/`` — the public page (``gateways/web_status/``) that asks for both.
* Open311: ``GET /open311/v2/requests/{id}.json?phone_last4=1234`` adds the same progress
  (:func:`open311_progress`, called by ``gateways/http/open311.py``).

Lookups are rate-limited like sign-ins (per client address, and per case number like per
username: guessing one case's four digits), and a failed lookup is logged as a security event
(``status.lookup_failed``), so 10,000 guesses are neither quick nor quiet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from core.logging import get_logger
from core.refdata import Reference
from gateways.http import security
from gateways.http.deps import ReadConnection, get_reads, get_reference
from gateways.http.errors import ApiError
from gateways.http.identity import public
from gateways.http.ratelimit import client_ip, hit_ip, hit_username
from projections import reporter_status as rs

router = APIRouter(tags=["工单查询 reporter status"], dependencies=[Depends(public)])
security_log = get_logger("security")
ROOT = Path(__file__).resolve().parent.parent / "web_status"
_PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": security.PAGE_POLICY,
    "Cache-Control": "no-cache",
}


class StatusQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    case_no: str = Field(min_length=4, max_length=40,
                         description="工单编号, e.g. GD-7K3Q-M9XA-2BCD")
    phone_last4: str = Field(pattern=r"^\d{4}$", description="上报时所留手机号的后四位")


def _limit(request: Request, case_no: str) -> None:
    hit_ip(request, "signin")
    # Per case number, from the per-username sign-in budget: guessing one case's digits.
    hit_username(request, "case-status:" + rs.normalise_case_no(case_no))


async def checked_lookup(
    request: Request, conn: Any, ref: Reference, case_no: str, last4: str, via: str,
) -> dict[str, Any] | None:
    """Rate-limited lookup; the reporter's view with the category's name, or None (logged)."""
    _limit(request, case_no)
    found = await rs.lookup(conn, case_no, last4)
    if found is None:
        security_log.warning("status.lookup_failed", case_no=case_no[:40], ip=client_ip(request),
                             via=via)
        return None
    category = ref.catalogue.get(found["category"]) if found["category"] in ref.catalogue \
        else None
    found["category_name"] = category.name_zh if category else "其他"
    found["category_name_en"] = category.name_en if category else "Other"  # the page in English
    del found["category"]
    return found


@router.post("/v1/public/case-status", responses={404: {"description": "no such case"},
                                                    429: {"description": "too many lookups"}})
async def case_status(
    query: StatusQuery,
    request: Request,
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
) -> dict[str, Any]:
    """工单查询: the progress of a case, for its reporter (case number + phone's last four)."""
    async with reads() as conn:
        found = await checked_lookup(request, conn, ref, query.case_no, query.phone_last4,
                                     "api")
    if found is None:
        raise ApiError(404, "not_found", "没有找到该工单: 请核对工单编号和手机号后四位")
    return found


async def open311_progress(
    request: Request, conn: Any, ref: Reference, case_no: str, last4: str,
) -> list[dict[str, Any]] | None:
    """The Open311 hook: the reporter's progress list, or None when the digits do not match."""
    found = await checked_lookup(request, conn, ref, case_no, last4, "open311")
    return None if found is None else found["progress"]


@router.get("/status", include_in_schema=False)
async def status_redirect() -> Response:
    return RedirectResponse("/status/", status_code=308)


@router.get("/status/", include_in_schema=False)
async def status_page() -> Response:
    """工单查询 page."""
    return FileResponse(ROOT / "index.html", media_type="text/html; charset=utf-8",
                        headers=_PAGE_HEADERS)


@router.get("/status/status.js", include_in_schema=False)
async def status_script() -> Response:
    return FileResponse(ROOT / "status.js", media_type="text/javascript; charset=utf-8",
                        headers=_PAGE_HEADERS)
