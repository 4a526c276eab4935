"""Distances on the WGS-84 / CGCS2000 sphere (metres): the one formula for "how far" —
nearby duplicates (``projections/nearby.py``) and the on-site check of 核查 (verification,
``aggregates/actions/closing.py``)."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean radius


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in metres between two points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """(south, north, west, east) of a box that holds every point within ``radius_m``."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    coslat = max(math.cos(math.radians(lat)), 1e-6)
    dlon = math.degrees(radius_m / (EARTH_RADIUS_M * coslat))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


__all__ = ["EARTH_RADIUS_M", "box", "distance_m"]
