"""Documents the centre links to (文书下载): the case file (案卷) and supervision order (督办单)
of a case as PDF, the evaluation report (综合评价) of any period as Excel or PDF.

* ``GET /v1/documents/cases/{case_no}/case-file.pdf``
* ``GET /v1/documents/cases/{case_no}/supervision.pdf`` (404 ``not_supervised`` if never)
* ``GET /v1/documents/evaluation.xlsx`` / ``.pdf`` ``?month=2026-11`` or ``?from=…&to=…``
  (default: last month), ``rank_by=<metric>`` (default 按期结案率)

The command centre's staff and auditors may fetch them, each within their jurisdiction (a
case outside it is 404, a district's staff get their district's places); reporter names and
phones are masked as in the case file of the API (``gateways/http/privacy.py``). The same
files come from ``gridctl documents`` (``gateways/cli_documents.py``); data from
``projections/documents.py``, layout from ``gateways/documents.py``.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from core.clock import Clock
from core.photos import PhotoStore
from core.refdata import Reference
from gateways import documents as render
from gateways.http.access import COMMAND_CENTRE, can_see, case_not_found, visible_grids
from gateways.http.deps import ReadConnection, get_clock, get_photos, get_reads, get_reference
from gateways.http.errors import ApiError
from gateways.http.identity import Principal, require
from gateways.http.privacy import mask_case, may_see_personal_data
from projections import documents as docs
from projections import metrics as m

router = APIRouter(prefix="/v1/documents", tags=["documents 文书"])
document_reader = require(*COMMAND_CENTRE, "auditor", scopes=("cases:read",))

PDF = "application/pdf"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _file(body: bytes, media_type: str, name: str) -> Response:
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
    })


async def _case_data(
    which: Literal["file", "supervision"], case_no: str, ref: Reference, reads: ReadConnection,
    principal: Principal,
) -> dict[str, Any]:
    async with reads() as conn:
        data = await (docs.case_file(conn, case_no) if which == "file"
                      else docs.supervision_order(conn, case_no))
    if data is None or not can_see(principal, data["case"], ref.jurisdiction):
        raise case_not_found(case_no)
    render.with_names(ref, data)  # people and departments by name, not code
    if not may_see_personal_data(principal, data["case"], ref.jurisdiction):
        data["case"] = mask_case(principal, data["case"], ref.jurisdiction)
        data["timeline"] = [mask_case(principal, t, ref.jurisdiction) for t in data["timeline"]]
    return data


@router.get("/cases/{case_no}/case-file.pdf", response_class=Response,
            responses={200: {"content": {PDF: {}}}, 404: {"description": "no such case"}})
async def case_file(
    case_no: str = Path(max_length=40),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    photos: PhotoStore = Depends(get_photos),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(document_reader),
) -> Response:
    """案卷 (PDF): the case, its timeline (who did what, when, why) and its photos."""
    data = await _case_data("file", case_no, ref, reads, principal)
    images: dict[str, bytes] = {}
    for p in data["photos"][:30]:
        blob = await photos.get(p["digest"])
        if blob is not None:
            images[p["digest"]] = blob
    body = await asyncio.to_thread(
        render.case_file_pdf, data, render.place_names(ref, data["case"]),
        ref.jurisdiction.name_zh, clock.now(), images,
    )
    return _file(body, PDF, f"case-file-{case_no}.pdf")


@router.get("/cases/{case_no}/supervision.pdf", response_class=Response,
            responses={200: {"content": {PDF: {}}},
                       404: {"description": "no such case, or never supervised"}})
async def supervision_order(
    case_no: str = Path(max_length=40),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(document_reader),
) -> Response:
    """督办单 (PDF) of a supervised case: each order, the case and where it stands."""
    data = await _case_data("supervision", case_no, ref, reads, principal)
    if not data["orders"]:
        raise ApiError(404, "not_supervised", f"case {case_no} has no supervision order")
    body = await asyncio.to_thread(
        render.supervision_pdf, data, render.place_names(ref, data["case"]),
        ref.jurisdiction.name_zh, clock.now(),
    )
    return _file(body, PDF, f"supervision-{case_no}.pdf")


def period(clock: Clock, month: str | None, day_from: date | None,
           day_to: date | None) -> tuple[date, date]:
    """The report's days: a month (``2026-11``), a from/to range, or last month."""
    if month:
        try:
            start = date.fromisoformat(f"{month}-01")
            end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        except (ValueError, OverflowError) as exc:
            raise ApiError(422, "invalid_period", "month is YYYY-MM") from exc
        return start, end
    if day_from or day_to:
        end = day_to or clock.now().astimezone(m.METRIC_TZ).date()
        start = day_from or end.replace(day=1)
        if start > end or (end - start).days > 731:
            raise ApiError(422, "invalid_period", "from after to, or longer than two years")
        return start, end
    this_month = clock.now().astimezone(m.METRIC_TZ).date().replace(day=1)
    end = this_month - timedelta(days=1)
    return end.replace(day=1), end


@router.get("/evaluation.{fmt}", response_class=Response,
            responses={200: {"content": {XLSX: {}, PDF: {}}}})
async def evaluation(
    fmt: Literal["xlsx", "pdf"],
    month: str | None = Query(default=None, max_length=7, pattern=r"^\d{4}-\d{2}$",
                              description="the month, YYYY-MM (default: last month)"),
    day_from: date | None = Query(default=None, alias="from"),
    day_to: date | None = Query(default=None, alias="to"),
    rank_by: str = Query(default=docs.RANK_BY_DEFAULT, max_length=40,
                         description="the metric the rankings sort by"),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(document_reader),
) -> Response:
    """综合评价 of a period: rankings of districts, departments, communities and grids by the
    published metrics (``GET /v1/metrics/definitions``), as Excel or PDF."""
    if rank_by not in m.METRICS:
        raise ApiError(422, "unknown_metric", f"unknown metric {rank_by}", metrics=list(m.METRICS))
    start, end = period(clock, month, day_from, day_to)
    grids = visible_grids(principal, ref.jurisdiction)
    async with reads() as conn:
        report = await docs.evaluation(conn, ref.jurisdiction, start, end, rank_by, grids)
    make = render.evaluation_xlsx if fmt == "xlsx" else render.evaluation_pdf
    body = await asyncio.to_thread(make, report, clock.now())
    return _file(body, XLSX if fmt == "xlsx" else PDF, f"evaluation-{start}-{end}.{fmt}")
