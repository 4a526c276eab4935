"""Standard addresses (标准地址库): ``GET /v1/places?q=`` search-as-you-type and
``GET /v1/places/{id}``.

For the hotline's address box and the inspector's "where" field: type a road, a house number,
a POI name, or their pinyin initials ("zhbl" → 中华北路) or full pinyin; each answer carries
its point and grid, so picking one locates the report (send its ``lat``/``lon`` — or its
``id`` as ``place_id`` — and its ``label`` as ``address``). Roads come first, then addresses
and POIs. The list is imported with ``gridctl places import`` (``core/places.py``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query

from core import places
from gateways.http.deps import get_pool
from gateways.http.errors import ApiError
from gateways.http.identity import current_principal

#: Any signed-in user (the hotline, inspectors, the centre) may search addresses.
router = APIRouter(
    prefix="/v1", tags=["places 标准地址"], dependencies=[Depends(current_principal)]
)


@router.get("/places")
async def search_places(
    q: str = Query(min_length=1, max_length=100, description="what was typed so far"),
    limit: int = Query(default=10, ge=1, le=places.MAX_RESULTS),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, Any]:
    """Places whose address or POI name, or their pinyin (initials), start with ``q``
    (contain it, for 3+ characters, where the server has pg_trgm)."""
    async with pool.acquire() as conn:
        items = await places.search(conn, q, limit)
    return {"q": q, "items": items, "count": len(items)}


@router.get("/places/{place_id}", responses={404: {"description": "no such place"}})
async def get_place(
    place_id: str = Path(max_length=60), pool: asyncpg.Pool = Depends(get_pool)
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        item = await places.get(conn, place_id)
    if item is None:
        raise ApiError(404, "not_found", f"no place {place_id}")
    return item
