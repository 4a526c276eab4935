"""部件 (city components) as a point layer: ``GET /v1/components?bbox=`` for the map,
``GET /v1/components/kinds`` for its legend and ``GET /v1/components/{code}``.

Imported with ``gridctl components import`` (``core/components.py``); a report may name the
component it concerns (``component`` on ``POST /v1/reports``)."""

from __future__ import annotations

import math
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query

from core import components
from gateways.http.deps import get_pool
from gateways.http.errors import ApiError
from gateways.http.identity import current_principal

#: Any signed-in user (the centre's map, the intake pages) may read the component layer.
router = APIRouter(
    prefix="/v1", tags=["components 部件"], dependencies=[Depends(current_principal)]
)
#: Widest box one query may ask for (degrees): a city's few districts, not the country.
MAX_SPAN = 1.0


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise ApiError(
            422, "invalid_bbox", "bbox is west,south,east,north in degrees (WGS-84)"
        ) from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise ApiError(422, "invalid_bbox", "bbox values must be finite numbers")
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ApiError(422, "invalid_bbox", "bbox needs west < east and south < north")
    if east - west > MAX_SPAN or north - south > MAX_SPAN:
        raise ApiError(422, "invalid_bbox", f"bbox spans more than {MAX_SPAN} degrees")
    return west, south, east, north


@router.get("/components")
async def components_in_box(
    bbox: str = Query(max_length=100, description="west,south,east,north (WGS-84 degrees)"),
    kind: list[str] = Query(default=[], max_length=20, description="only these kinds"),
    limit: int = Query(default=2000, ge=1, le=components.MAX_RESULTS),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, Any]:
    """Components inside the box, by code; ``truncated`` when there were more than ``limit``
    (zoom in)."""
    west, south, east, north = parse_bbox(bbox)
    async with pool.acquire() as conn:
        items, truncated = await components.in_bbox(
            conn, west, south, east, north, kinds=[k[:60] for k in kind], limit=limit
        )
    return {"items": items, "count": len(items), "truncated": truncated}


@router.get("/components/kinds")
async def component_kinds(pool: asyncpg.Pool = Depends(get_pool)) -> dict[str, Any]:
    """Every kind with its catalogue class and how many there are."""
    async with pool.acquire() as conn:
        return {"items": await components.kinds(conn)}


@router.get("/components/{code}", responses={404: {"description": "no such component"}})
async def get_component(
    code: str = Path(pattern=r"^\d{16}$"), pool: asyncpg.Pool = Depends(get_pool)
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        item = await components.get(conn, code)
    if item is None:
        raise ApiError(404, "not_found", f"no component {code}")
    return item
