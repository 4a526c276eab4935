"""The nearby-duplicates query's geometry (projections/nearby.py): distances and the box."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from projections.nearby import OPEN, box, distance_m
from projections.queue import DDL


def test_distances() -> None:
    assert distance_m(26.58, 106.65, 26.58, 106.65) == 0
    # One minute of latitude is one nautical mile (1852 m) to within half a percent.
    assert abs(distance_m(26.0, 106.0, 26.0 + 1 / 60, 106.0) - 1852) < 10
    # A degree of longitude shrinks with the cosine of the latitude.
    assert distance_m(60.0, 10.0, 60.0, 11.0) < 0.51 * distance_m(0.0, 10.0, 0.0, 11.0)


@given(
    lat=st.floats(-80, 80), lon=st.floats(-179, 179), radius=st.floats(1, 2000),
    bearing=st.floats(0, 1), fraction=st.floats(0, 0.999),
)
def test_every_point_within_the_radius_lies_in_the_box(
    lat: float, lon: float, radius: float, bearing: float, fraction: float
) -> None:
    south, north, west, east = box(lat, lon, radius)
    # A point at ``fraction`` of the radius in some direction (small-distance approximation).
    import math

    angle = bearing * 2 * math.pi
    dlat = math.degrees(fraction * radius * math.cos(angle) / 6_371_008.8)
    dlon = math.degrees(fraction * radius * math.sin(angle) / 6_371_008.8
                        / math.cos(math.radians(lat)))
    p_lat, p_lon = lat + dlat, lon + dlon
    if distance_m(lat, lon, p_lat, p_lon) <= radius:
        assert south <= p_lat <= north and west <= p_lon <= east


def test_the_queue_table_carries_the_partial_index_the_query_needs() -> None:
    assert "case_queue_nearby_idx" in DDL and f"WHERE {OPEN} AND lat IS NOT NULL" in DDL
    assert OPEN == "status NOT IN ('closed', 'merged', 'rejected')"
