"""Tests for the jurisdiction tree (core/jurisdiction.py) and the sample cities.

The sample cities are what every other test and the demo run against, so they are tested as
data too: counts, codes that embed their ancestors, grids that tile without gaps or overlaps,
and a full set of departments at every district.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from core.jurisdiction import (
    FUNCTIONS,
    Jurisdiction,
    JurisdictionError,
    UnknownCode,
    UnknownLevel,
)

REPO = Path(__file__).resolve().parents[2]

CITIES = REPO / "deploy" / "cities"
GUIYANG_DISTRICTS = {"520102", "520103", "520111", "520115"}


@pytest.fixture(scope="module")
def guiyang() -> Jurisdiction:
    return Jurisdiction.load(CITIES / "guiyang")


@pytest.fixture(scope="module")
def changsha() -> Jurisdiction:
    return Jurisdiction.load(CITIES / "changsha-mini" / "city.json")


# Module-level copies for hypothesis strategies (fixtures cannot feed @given arguments).
_GUIYANG = Jurisdiction.load(CITIES / "guiyang")
_CHANGSHA = Jurisdiction.load(CITIES / "changsha-mini")
_ALL_GRIDS = [(_GUIYANG, code) for code in _GUIYANG.grids] + [
    (_CHANGSHA, code) for code in _CHANGSHA.grids
]


# --------------------------------------------------------------------------- sample cities


def test_guiyang_counts(guiyang: Jurisdiction) -> None:
    assert (guiyang.city_code, guiyang.name_zh, guiyang.name_en) == ("520100", "贵阳市", "Guiyang")
    assert guiyang.version >= 1
    assert [lv.key for lv in guiyang.levels] == ["city", "district", "community", "grid"]
    districts = guiyang.children("520100")
    assert set(districts) == GUIYANG_DISTRICTS
    communities = [c for d in districts for c in guiyang.children(d)]
    assert all(len(guiyang.children(d)) >= 3 for d in districts)
    assert len(communities) >= 12
    assert len(guiyang.grids) >= 66
    assert len(guiyang.nodes) == 1 + len(districts) + len(communities)
    assert all(guiyang.node(c).level == "community" for c in communities)
    assert sum(len(guiyang.children(c)) for c in communities) == len(guiyang.grids)
    assert guiyang.node("520102").name_zh == "南明区"
    assert guiyang.node("520115").name_zh == "观山湖区"


def test_changsha_counts(changsha: Jurisdiction) -> None:
    assert changsha.city_code == "430100"
    assert [lv.key for lv in changsha.levels] == ["city", "district", "street", "community", "grid"]
    by_level: dict[str, int] = {}
    for node in changsha.nodes.values():
        by_level[node.level] = by_level.get(node.level, 0) + 1
    assert by_level == {"city": 1, "district": 2, "street": 4, "community": 8}
    assert len(changsha.grids) == 16
    assert all(
        len(changsha.children(c)) == 2 for c, n in changsha.nodes.items() if n.level != "city"
    )


@pytest.mark.parametrize("city", [_GUIYANG, _CHANGSHA], ids=["guiyang", "changsha"])
def test_grid_records(city: Jurisdiction) -> None:
    for code, grid in city.grids.items():
        assert 300 <= grid.households <= 500
        assert grid.team.inspector == f"insp-{code}"
        assert grid.team.instructor == f"inst-{code}"
        assert grid.team.police == f"pol-{code}"
        assert code.startswith(grid.parent) and len(code) == len(grid.parent) + 3
        assert grid.polygon[0] != grid.polygon[-1]  # open ring
        assert grid.name_zh and grid.name_en


def test_guiyang_codes_and_area(guiyang: Jurisdiction) -> None:
    assert all(len(code) == 12 and code.isdigit() for code in guiyang.grids)
    min_lon, min_lat, max_lon, max_lat = guiyang.bounds()
    assert 106.55 <= min_lon < max_lon <= 106.80
    assert 26.40 <= min_lat < max_lat <= 26.70


def _assert_reading_order(city: Jurisdiction, parent: str) -> None:
    """Children of ``parent`` in code order read like text on a north-up map: a later one is
    in a lower row, or in the same row further east. Rows are told apart by latitude, with a
    tolerance of a third of the smallest child's height (the lattice jitter is 20 %)."""
    shapes = [
        shapely.unary_union([city.grid(g).geometry for g in city.grids_under(child)])
        for child in city.children(parent)
    ]
    tol = min(s.bounds[3] - s.bounds[1] for s in shapes) / 3
    centres = [(s.centroid.y, s.centroid.x) for s in shapes]
    for i, (lat_a, lon_a) in enumerate(centres):
        for lat_b, lon_b in centres[i + 1 :]:
            lower_row = lat_b < lat_a - tol
            same_row_east = abs(lat_b - lat_a) <= tol and lon_b > lon_a
            assert lower_row or same_row_east, parent


@pytest.mark.parametrize("city", [_GUIYANG, _CHANGSHA], ids=["guiyang", "changsha"])
def test_codes_numbered_west_east_north_south(city: Jurisdiction) -> None:
    # Below the city only: district codes are GB/T 2260 codes, not positions.
    for code in city.nodes:
        if code != city.city_code:
            _assert_reading_order(city, code)


@pytest.mark.parametrize("city", [_GUIYANG, _CHANGSHA], ids=["guiyang", "changsha"])
def test_grids_tile_without_gaps_or_overlaps(city: Jurisdiction) -> None:
    shapes = [g.geometry for g in city.grids.values()]
    union = shapely.unary_union(shapes)
    assert union.area == pytest.approx(sum(s.area for s in shapes), rel=1e-9)
    # One piece, no holes: the districts sit side by side and cover a contiguous area.
    assert union.geom_type == "Polygon"
    assert len(union.interiors) == 0
    for code, node in city.nodes.items():
        if node.level != city.levels[0].key:
            part = shapely.unary_union([city.grid(g).geometry for g in city.grids_under(code)])
            assert part.geom_type == "Polygon", code


@pytest.mark.parametrize("city", [_GUIYANG, _CHANGSHA], ids=["guiyang", "changsha"])
def test_every_centroid_locates_back(city: Jurisdiction) -> None:
    for code, grid in city.grids.items():
        lat, lon = grid.centroid
        found = city.locate(lat, lon)
        assert found is not None and found.code == code
        assert city.in_city(lat, lon)


@given(
    pick=st.sampled_from(_ALL_GRIDS),
    triangle=st.sampled_from([(0, 1, 2), (0, 2, 3)]),
    weights=st.tuples(*[st.floats(0.01, 1.0) for _ in range(3)]),
)
def test_random_points_inside_a_grid_locate_to_it(
    pick: tuple[Jurisdiction, str], triangle: tuple[int, int, int], weights: tuple[float, ...]
) -> None:
    """A convex combination of three corners of a (convex) quad lies inside it."""
    city, code = pick
    ring = city.grid(code).polygon
    total = sum(weights)
    lon = sum(w * ring[i][0] for w, i in zip(weights, triangle, strict=True)) / total
    lat = sum(w * ring[i][1] for w, i in zip(weights, triangle, strict=True)) / total
    found = city.locate(lat, lon)
    assert found is not None and found.code == code


def test_locate_agrees_with_brute_force(guiyang: Jurisdiction) -> None:
    """The STRtree answer equals a scan of every polygon, for points all over the bounds."""
    rng = random.Random(7)
    min_lon, min_lat, max_lon, max_lat = guiyang.bounds()
    for _ in range(3000):
        lat = rng.uniform(min_lat - 0.05, max_lat + 0.05)
        lon = rng.uniform(min_lon - 0.05, max_lon + 0.05)
        point = shapely.Point(lon, lat)
        expected = sorted(c for c, g in guiyang.grids.items() if g.geometry.intersects(point))
        found = guiyang.locate(lat, lon)
        if not expected:
            assert found is None
        else:
            assert found is not None and found.code in expected


def test_locate_on_shared_edge_is_deterministic(guiyang: Jurisdiction) -> None:
    a, b = "520102001001", "520102001002"  # west→east neighbours share an edge
    ring_a = guiyang.grid(a).polygon
    (lon1, lat1), (lon2, lat2) = ring_a[1], ring_a[2]  # NE and SE corners: the east edge
    lat, lon = (lat1 + lat2) / 2, (lon1 + lon2) / 2
    found = guiyang.locate(lat, lon)
    assert found is not None and found.code in {a, b}
    assert all(guiyang.locate(lat, lon) == found for _ in range(5))


def test_in_grid_agrees_with_the_polygon_and_takes_a_shared_edge_for_both(
    guiyang: Jurisdiction,
) -> None:
    """The on-site check's question: inside this grid, its edge included — so an inspector
    standing on the line between two grids is in both (locate gives the point to one)."""
    rng = random.Random(11)
    min_lon, min_lat, max_lon, max_lat = guiyang.bounds()
    codes = sorted(guiyang.grids)
    for _ in range(2000):
        code = rng.choice(codes)
        lat, lon = rng.uniform(min_lat, max_lat), rng.uniform(min_lon, max_lon)
        expected = guiyang.grid(code).geometry.intersects(shapely.Point(lon, lat))
        assert guiyang.in_grid(code, lat, lon) is expected
    a, b = "520102001001", "520102001002"
    (lon1, lat1), (lon2, lat2) = guiyang.grid(a).polygon[1], guiyang.grid(a).polygon[2]
    on_edge = ((lat1 + lat2) / 2, (lon1 + lon2) / 2)
    assert guiyang.in_grid(a, *on_edge) and guiyang.in_grid(b, *on_edge)
    assert not guiyang.in_grid(a, float("nan"), lon1)
    with pytest.raises(UnknownCode):
        guiyang.in_grid("no-such-grid", lat1, lon1)


def test_points_outside_the_city(guiyang: Jurisdiction, changsha: Jurisdiction) -> None:
    beijing = (39.9042, 116.4074)
    assert guiyang.locate(*beijing) is None
    assert not guiyang.in_city(*beijing)
    assert changsha.locate(26.58, 106.70) is None  # Guiyang is not in Changsha
    assert not changsha.in_city(26.58, 106.70)
    min_lon, min_lat, max_lon, max_lat = guiyang.bounds()
    mid_lat = (min_lat + max_lat) / 2
    one_km_east = max_lon + 1000 / (111_320 * 0.895)  # cos(26.55°) ≈ 0.895
    assert guiyang.locate(mid_lat, one_km_east) is None
    assert guiyang.in_city(mid_lat, one_km_east)  # within the 2 km margin
    assert not guiyang.in_city(mid_lat, max_lon + 0.05)  # ≈ 5 km out
    assert not guiyang.in_city(max_lat + 0.03, (min_lon + max_lon) / 2)  # ≈ 3.3 km north
    assert guiyang.in_city(mid_lat, one_km_east + 0.02, margin_m=5000)
    assert guiyang.locate(float("nan"), 106.7) is None
    assert not guiyang.in_city(float("nan"), 106.7)


# --------------------------------------------------------------------------- tree walks


def test_guiyang_tree_walks(guiyang: Jurisdiction) -> None:
    grid = "520102003005"
    assert [n.code for n in guiyang.ancestors(grid)] == ["520102003", "520102", "520100"]
    assert [n.level for n in guiyang.ancestors(grid)] == ["community", "district", "city"]
    assert guiyang.ancestors("520100") == []
    assert guiyang.ancestor_at(grid, "district").code == "520102"
    assert guiyang.ancestor_at("520102", "district").code == "520102"
    assert guiyang.ancestor_at(grid, "city").code == "520100"
    assert guiyang.partition_of(grid) == "520102"
    assert guiyang.partition_of("520102003") == "520102"
    assert guiyang.partition_of("520102") == "520102"
    assert guiyang.partition_of("520100") == "520100"
    assert guiyang.command_levels() == ["community", "district", "city"]
    assert guiyang.level_above("grid") == "community"
    assert guiyang.level_above("community") == "district"
    assert guiyang.level_above("district") == "city"
    assert guiyang.level_above("city") is None
    assert guiyang.command_node(grid, "community").code == "520102003"
    assert guiyang.command_node(grid, "district").code == "520102"
    assert guiyang.command_node("520102003", "city").code == "520100"
    assert guiyang.level_of(grid) == "grid"
    assert guiyang.level_of("520102") == "district"
    assert guiyang.children(grid) == []
    assert guiyang.children("520102003") == [f"520102003{i:03d}" for i in range(1, 7)]
    assert guiyang.grids_under(grid) == [grid]
    assert len(guiyang.grids_under("520100")) == len(guiyang.grids)
    assert guiyang.grids_under("520102003") == guiyang.children("520102003")
    assert guiyang.contains("520102", grid)
    assert guiyang.contains("520100", grid)
    assert guiyang.contains(grid, grid)
    assert not guiyang.contains("520103", grid)
    assert not guiyang.contains(grid, "520102")
    for code in guiyang.grids:
        assert guiyang.partition_of(code) in GUIYANG_DISTRICTS
        assert guiyang.partition_of(code) == code[:6]


def test_changsha_tree_walks(changsha: Jurisdiction) -> None:
    grid = "430103002001001"
    assert [n.level for n in changsha.ancestors(grid)] == [
        "community",
        "street",
        "district",
        "city",
    ]
    assert [n.code for n in changsha.ancestors(grid)] == [
        "430103002001",
        "430103002",
        "430103",
        "430100",
    ]
    assert changsha.command_levels() == ["community", "street", "district", "city"]
    assert changsha.level_above("community") == "street"
    assert changsha.level_above("street") == "district"
    assert changsha.level_above("city") is None
    assert changsha.partition_of(grid) == "430103"
    assert changsha.partition_of("430103002") == "430103"
    assert changsha.command_node(grid, "street").code == "430103002"
    assert changsha.command_node(grid, "community").code == "430103002001"
    assert changsha.ancestor_at(grid, "district").code == "430103"
    assert changsha.contains("430103002", grid)
    assert not changsha.contains("430103001", grid)
    assert len(changsha.grids_under("430102")) == 8


def test_lookup_errors(guiyang: Jurisdiction) -> None:
    with pytest.raises(UnknownCode, match="999999") as info:
        guiyang.grid("999999")
    assert "999999" in str(info.value)
    assert isinstance(info.value, KeyError)
    for call in (
        lambda: guiyang.node("nope"),
        lambda: guiyang.department("nope"),
        lambda: guiyang.ancestors("nope"),
        lambda: guiyang.partition_of("nope"),
        lambda: guiyang.children("nope"),
        lambda: guiyang.grids_under("nope"),
        lambda: guiyang.contains("520100", "nope"),
        lambda: guiyang.departments_at("nope"),
        lambda: guiyang.find_department("sanitation", "nope"),
    ):
        with pytest.raises(UnknownCode, match="nope"):
            call()
    with pytest.raises(UnknownCode, match="'520102001001'"):
        guiyang.node("520102001001")  # a grid is not a node
    with pytest.raises(UnknownLevel, match="street"):
        guiyang.level_above("street")
    with pytest.raises(UnknownLevel, match="street"):
        guiyang.command_node("520102001001", "street")
    with pytest.raises(ValueError, match="not a command level"):
        guiyang.command_node("520102001001", "grid")
    with pytest.raises(ValueError, match="grid level"):
        guiyang.ancestor_at("520102001001", "grid")
    with pytest.raises(ValueError, match="not below"):
        guiyang.ancestor_at("520102", "community")
    with pytest.raises(ValueError, match="unknown function"):
        guiyang.find_department("plumbing", "520102")


# --------------------------------------------------------------------------- departments


def test_every_district_and_city_has_every_function(
    guiyang: Jurisdiction, changsha: Jurisdiction
) -> None:
    for city in (guiyang, changsha):
        districts = [c for c, n in city.nodes.items() if n.level == "district"]
        for node in [city.city_code, *districts]:
            for function in FUNCTIONS:
                dept = city.find_department(function, node)
                assert dept is not None, (node, function)
                assert dept.node == node and function in dept.functions
                assert dept.code == f"D-{node}-{function}"
    assert guiyang.find_department("sanitation", "520102").name_zh == "南明区环卫局"  # type: ignore[union-attr]


def test_community_units(guiyang: Jurisdiction, changsha: Jurisdiction) -> None:
    for city in (guiyang, changsha):
        for code, node in city.nodes.items():
            if node.level != "community":
                continue
            units = {d.code: d for d in city.departments_at(code)}
            station = units[f"D-{code}-station"]
            assert station.functions == [
                "community_service",
                "civil_affairs",
                "mediation",
                "sanitation",
            ]
            assert station.name_zh.endswith("网格工作站")
            assert units[f"D-{code}-public_security"].functions == ["public_security"]
            assert city.find_department("community_service", code) == station
            assert city.find_department("water", code) is None  # no walking up
    streets = [c for c, n in changsha.nodes.items() if n.level == "street"]
    assert streets and all(changsha.departments_at(s) for s in streets)


def test_functions_match_the_category_catalogue() -> None:
    catalogue = pytest.importorskip("core.catalogue")
    assert set(FUNCTIONS) == set(catalogue.DEPARTMENT_FUNCTIONS)


# --------------------------------------------------------------------------- GeoJSON


def test_to_geojson(guiyang: Jurisdiction) -> None:
    collection = guiyang.to_geojson()
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == len(guiyang.grids)
    feature = next(f for f in collection["features"] if f["id"] == "520103002004")
    props = feature["properties"]
    assert props["code"] == "520103002004"
    assert props["parent"] == "520103002"
    assert (props["community"], props["district"], props["city"]) == (
        "520103002",
        "520103",
        "520100",
    )
    assert {"name_zh", "name_en"} <= set(props)
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    assert shapely.Polygon(ring).exterior.is_ccw
    part = guiyang.to_geojson(under="520111")
    assert {f["properties"]["district"] for f in part["features"]} == {"520111"}
    assert len(part["features"]) == len(guiyang.grids_under("520111"))
    json.dumps(collection)  # serialisable as is


# --------------------------------------------------------------------------- loading


def test_load_folder_file_and_dict(tmp_path: Path) -> None:
    data = json.loads((CITIES / "changsha-mini" / "city.json").read_text(encoding="utf-8"))
    a = Jurisdiction.load(CITIES / "changsha-mini")
    b = Jurisdiction.load(str(CITIES / "changsha-mini" / "city.json"))
    c = Jurisdiction.from_dict(data)
    assert a.grids == b.grids == c.grids
    assert a.departments == c.departments
    with pytest.raises(JurisdictionError, match="cannot read"):
        Jurisdiction.load(tmp_path / "missing")


def test_generated_files_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    """The committed JSON is exactly what generate.py writes (CI catches hand edits)."""
    spec = importlib.util.spec_from_file_location("generate_cities", CITIES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    assert module.main(["--check"]) == 0, capsys.readouterr().out


# --------------------------------------------------------------------------- invalid configs


def _square(lon: float, lat: float, size: float = 0.01) -> list[list[float]]:
    return [[lon, lat], [lon + size, lat], [lon + size, lat - size], [lon, lat - size]]


def _grid(code: str, parent: str, polygon: list[list[float]]) -> dict[str, Any]:
    return {
        "code": code,
        "name_zh": "网格",
        "name_en": "Grid",
        "parent": parent,
        "polygon": polygon,
        "team": {
            "inspector": f"insp-{code}",
            "instructor": f"inst-{code}",
            "police": f"pol-{code}",
        },
        "households": 400,
    }


def _tiny() -> dict[str, Any]:
    """A minimal valid city: default levels, one district, one community, two grids."""
    return {
        "version": 1,
        "city": {"code": "C", "name_zh": "市", "name_en": "City"},
        "nodes": [
            {"code": "D1", "name_zh": "区", "name_en": "D", "level": "district", "parent": "C"},
            {"code": "M1", "name_zh": "社区", "name_en": "M", "level": "community", "parent": "D1"},
        ],
        "grids": [
            _grid("G1", "M1", _square(106.0, 26.0)),
            _grid("G2", "M1", _square(106.01, 26.0)),
        ],
        "departments": [
            {"code": "X1", "name_zh": "局", "name_en": "B", "node": "D1", "functions": ["water"]}
        ],
    }


def _load(tmp_path: Path, data: dict[str, Any]) -> Jurisdiction:
    folder = tmp_path / "city"
    folder.mkdir(exist_ok=True)
    (folder / "city.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return Jurisdiction.load(folder)


def test_tiny_city_is_valid(tmp_path: Path) -> None:
    city = _load(tmp_path, _tiny())
    assert [lv.key for lv in city.levels] == ["city", "district", "community", "grid"]  # default
    assert city.partition_of("G1") == "D1"
    assert city.locate(25.995, 106.005).code == "G1"  # type: ignore[union-attr]
    assert city.locate(25.995, 106.015).code == "G2"  # type: ignore[union-attr]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *head, last = path.split(".")
        target: Any = data
        for key in head:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return mutate


def _append(key: str, record: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda data: data[key].append(record)


BAD_CONFIGS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("node unknown parent", _set("nodes.1.parent", "D9"), "node 'M1' has unknown parent 'D9'"),
    ("grid unknown parent", _set("grids.0.parent", "M9"), "grid 'G1' has unknown parent 'M9'"),
    (
        "duplicate node",
        _append(
            "nodes",
            {"code": "D1", "name_zh": "区", "name_en": "D", "level": "district", "parent": "C"},
        ),
        "duplicate code 'D1'",
    ),
    ("duplicate grid", _set("grids.1.code", "G1"), "duplicate code 'G1'"),
    ("grid reuses node code", _set("grids.1.code", "M1"), "duplicate code 'M1'"),
    ("grid reuses city code", _set("grids.1.code", "C"), "duplicate code 'C'"),
    (
        "grid under district",
        _set("grids.0.parent", "D1"),
        "grid 'G1' has parent 'D1' at level 'district'; a grid's parent must be at level "
        "'community'",
    ),
    (
        "self-intersecting polygon",
        _set("grids.0.polygon", [[106.0, 26.0], [106.01, 25.99], [106.01, 26.0], [106.0, 25.99]]),
        "grid 'G1' polygon is invalid: Self-intersection",
    ),
    (
        "too few points",
        _set("grids.0.polygon", [[106.0, 26.0], [106.01, 26.0]]),
        "at least 3 distinct",
    ),
    (
        "zero-area polygon",
        _set("grids.0.polygon", [[106.0, 26.0], [106.01, 26.0], [106.02, 26.0]]),
        "grid 'G1' polygon is invalid",
    ),
    (
        "lat/lon swapped",
        _set("grids.0.polygon", [[26.0, 106.0], [26.0, 106.01], [26.01, 106.0]]),
        "is not a [lon, lat] pair",
    ),
    (
        "overlapping grids",
        _set("grids.1.polygon", _square(106.005, 26.0)),
        "grids 'G1' and 'G2' overlap",
    ),
    (
        "grid inside grid",
        _set("grids.1.polygon", _square(106.002, 25.998, 0.005)),
        "grids 'G1' and 'G2' overlap",
    ),
    (
        "department unknown node",
        _set("departments.0.node", "D9"),
        "department 'X1' is at unknown node 'D9'",
    ),
    ("department at grid", _set("departments.0.node", "G1"), "department 'X1' is at grid 'G1'"),
    (
        "unknown function",
        _set("departments.0.functions", ["plumbing"]),
        "departments[0] (X1).functions: unknown function 'plumbing'",
    ),
    (
        "two departments, one function",
        _append(
            "departments",
            {"code": "X2", "name_zh": "局", "name_en": "B", "node": "D1", "functions": ["water"]},
        ),
        "departments 'X1' and 'X2' at node 'D1' both have function 'water'",
    ),
    ("unknown level", _set("nodes.1.level", "estate"), "node 'M1' has unknown level 'estate'"),
    (
        "node parent at wrong level",
        _set("nodes.1.parent", "C"),
        "node 'M1' at level 'community' has parent 'C' at level 'city'; expected a parent at "
        "level 'district'",
    ),
    ("node at grid level", _set("nodes.1.level", "grid"), "list it under 'grids'"),
    ("second root", _set("nodes.0.level", "city"), "the root is declared once"),
    ("node without parent", _set("nodes.0.parent", None), "node 'D1' has no parent"),
    (
        "duplicate level key",
        _set(
            "levels",
            [
                {"key": "city", "name_zh": "市", "name_en": "C", "command": True},
                {"key": "city", "name_zh": "市", "name_en": "C", "command": True},
                {"key": "grid", "name_zh": "网格", "name_en": "G", "command": False},
            ],
        ),
        "level key 'city' is defined more than once",
    ),
    (
        "grid level commands",
        _set(
            "levels",
            [
                {"key": "city", "name_zh": "市", "name_en": "C", "command": True},
                {"key": "district", "name_zh": "区", "name_en": "D", "command": True},
                {"key": "community", "name_zh": "社区", "name_en": "M", "command": True},
                {"key": "grid", "name_zh": "网格", "name_en": "G", "command": True},
            ],
        ),
        "the grid level 'grid' cannot be a command level",
    ),
    (
        "unknown key in record",
        _set("grids.0.colour", "red"),
        "grids[0] (G1).colour: Extra inputs are not permitted",
    ),
    (
        "households as string",
        _set("grids.0.households", "400"),
        "grids[0] (G1).households: Input should be a valid integer",
    ),
    ("negative households", _set("grids.0.households", -1), "greater than or equal to 0"),
    (
        "missing team member",
        _set("grids.0.team", {"inspector": "a", "instructor": "b"}),
        "grids[0] (G1).team.police: Field required",
    ),
    ("code with a dot", _set("nodes.0.code", "D.1"), "must be 1-64 characters"),
    ("no grids", _set("grids", []), "no grids"),
    ("version zero", _set("version", 0), "version: Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [pytest.param(m, msg, id=name) for name, m, msg in BAD_CONFIGS],
)
def test_bad_config_is_refused(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = copy.deepcopy(_tiny())
    mutate(data)
    with pytest.raises(JurisdictionError) as info:
        _load(tmp_path, data)
    assert message in str(info.value), str(info.value)
    assert str(tmp_path) in str(info.value)  # names the file
    assert info.value.problems


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    data = _tiny()
    data["grids"][0]["parent"] = "M9"
    data["departments"][0]["node"] = "D9"
    data["grids"][1]["polygon"] = _square(106.005, 26.0)
    with pytest.raises(JurisdictionError) as info:
        _load(tmp_path, data)
    assert len(info.value.problems) == 3
    assert "3 problems" in str(info.value)


def test_invalid_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "city.json").write_text('{"version": 1,\n  "city": }', encoding="utf-8")
    with pytest.raises(JurisdictionError, match="invalid JSON at line 2"):
        Jurisdiction.load(tmp_path)


def test_gbt2260_codes_must_embed_ancestors(tmp_path: Path) -> None:
    data = json.loads((CITIES / "guiyang" / "city.json").read_text(encoding="utf-8"))
    assert data["code_scheme"] == "gbt2260"
    bad = copy.deepcopy(data)
    grid = next(g for g in bad["grids"] if g["code"] == "520102001001")
    grid["code"] = "520103001099"  # lives in 520102001 but claims 520103001
    with pytest.raises(JurisdictionError, match="does not embed its parent"):
        _load(tmp_path, bad)
    bad = copy.deepcopy(data)
    district = next(n for n in bad["nodes"] if n["code"] == "520102")
    district["code"] = "530102"
    for node in bad["nodes"]:
        if node["parent"] == "520102":
            node["parent"] = "530102"
    for dept in bad["departments"]:
        if dept["node"] == "520102":
            dept["node"] = "530102"
    with pytest.raises(JurisdictionError, match="expected it to start with '5201'"):
        _load(tmp_path, bad)
