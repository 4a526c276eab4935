"""Nearby open cases of a category (附近的同类案件): the duplicate check of intake and filing.

When an inspector or a call-taker reports, or a dispatcher files, the open cases of the same
category within ``radius_m`` (default 100 m) reported in the last ``days`` are shown, so a
second report of the same pothole becomes "same problem → link as duplicate" (the registry's
``mark_duplicate`` action) instead of a second work order.

A read-model query on ``case_queue``: a partial B-tree index over open cases by
``(category, lat, lon)`` (``INDEX_DDL``, created with the queue's table) turns the question
into one latitude range of one category, filtered by longitude inside the index; the exact
great-circle distance is computed here for the few rows of that box. No PostGIS or
earthdistance needed (the embedded PostgreSQL has neither). Measured with a million cases in
``benchmarks/nearby.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from core.geo import box, distance_m
from core.vocabulary import TERMINAL

#: Default search radius (metres) and window (days).
DEFAULT_RADIUS_M = 100.0
DEFAULT_DAYS = 30
MAX_RADIUS_M = 2000.0
MAX_RESULTS = 50

#: The open cases (the index's predicate; queries repeat it word for word so the planner
#: can use the partial index).
OPEN = "status NOT IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(TERMINAL)))
INDEX_DDL = (
    "CREATE INDEX IF NOT EXISTS case_queue_nearby_idx ON case_queue (category, lat, lon) "
    f"INCLUDE (reported_at) WHERE {OPEN} AND lat IS NOT NULL;\n"
)
COLUMNS = (
    "case_no, status, category, grid, community, district, department, description, "
    "address, lat, lon, reported_at, priority"
)


async def nearby(
    conn: asyncpg.Connection,
    *,
    lat: float,
    lon: float,
    category: str,
    radius_m: float = DEFAULT_RADIUS_M,
    since: datetime,
    exclude: str | None = None,
    where: str = "TRUE",
    params: list[Any] | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Open cases of ``category`` within ``radius_m`` of (lat, lon) reported since ``since``,
    nearest first, each with ``distance_m``. ``where`` / ``params`` add a condition (the
    caller's jurisdiction, ``gateways.http.access.case_filter``); ``exclude`` a case number."""
    args: list[Any] = list(params or [])
    south, north, west, east = box(lat, lon, radius_m)
    args += [category, south, north, west, east, since, exclude or ""]
    n = len(args)
    sql = (
        f"SELECT {COLUMNS} FROM case_queue WHERE {OPEN} AND lat IS NOT NULL "
        f"AND category = ${n - 6} AND lat BETWEEN ${n - 5} AND ${n - 4} "
        f"AND lon BETWEEN ${n - 3} AND ${n - 2} AND reported_at >= ${n - 1} "
        f"AND case_no <> ${n} AND ({where})"
    )
    rows = await conn.fetch(sql, *args)
    found = []
    for row in rows:
        item = dict(row)
        item["distance_m"] = round(distance_m(lat, lon, item["lat"], item["lon"]), 1)
        if item["distance_m"] <= radius_m:
            found.append(item)
    found.sort(key=lambda r: (r["distance_m"], r["case_no"]))
    return found[:limit]


__all__ = ["DEFAULT_DAYS", "DEFAULT_RADIUS_M", "INDEX_DDL", "OPEN", "box", "distance_m", "nearby"]
