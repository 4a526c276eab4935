"""``GET /v1/cases/nearby``: open cases of the same category near a point (duplicate check).

The inspector's and the hotline's report forms ask it before submitting, the dispatcher's
case panel when filing: each answer is a case with its ``distance_m``; the one action offered
is the registry's ``mark_duplicate`` ("same problem → link as duplicate",
``POST /v1/cases/{new case}/actions/mark_duplicate`` with ``of_case_no``). Only cases the
caller may see are listed (their jurisdiction). The query lives in ``projections/nearby.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query

from core.clock import Clock
from core.refdata import Reference
from core.vocabulary import STATUS_LABELS, Status
from gateways.http.access import CASE_READERS, case_filter
from gateways.http.deps import ReadConnection, get_clock, get_reads, get_reference
from gateways.http.errors import ApiError
from gateways.http.identity import Principal, require
from projections import nearby as model

router = APIRouter(prefix="/v1", tags=["cases 案件"])
reader = require(*CASE_READERS, scopes=("cases:read",))


@router.get("/cases/nearby", responses={422: {"description": "unknown category"}})
async def nearby_cases(
    lat: float = Query(ge=-90, le=90, allow_inf_nan=False),
    lon: float = Query(ge=-180, le=180, allow_inf_nan=False),
    category: str = Query(min_length=1, max_length=40),
    radius_m: float = Query(
        default=model.DEFAULT_RADIUS_M, gt=0, le=model.MAX_RADIUS_M, allow_inf_nan=False
    ),
    days: int = Query(default=model.DEFAULT_DAYS, ge=1, le=365),
    exclude: str | None = Query(default=None, max_length=40, description="a case number"),
    limit: int = Query(default=20, ge=1, le=model.MAX_RESULTS),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(reader),
) -> dict[str, Any]:
    """Open cases of ``category`` within ``radius_m`` (default 100 m) reported in the last
    ``days`` (default 30), nearest first; link one with ``mark_duplicate``."""
    if category not in ref.catalogue:
        raise ApiError(422, "unknown_category", f"unknown category {category}",
                       field="category")
    params: list[Any] = []
    where = case_filter(principal, ref.jurisdiction, params)
    async with reads() as conn:
        items = await model.nearby(
            conn, lat=lat, lon=lon, category=category, radius_m=radius_m,
            since=clock.now() - timedelta(days=days), exclude=exclude, where=where,
            params=params, limit=limit,
        )
    for item in items:
        item["status_zh"] = STATUS_LABELS.get(Status(item["status"]), item["status"])
    return {
        "items": items,
        "count": len(items),
        "radius_m": radius_m,
        "days": days,
        "action": "mark_duplicate",
    }
