"""底图 (base map): where a city's map background comes from, and the sample city's own
street and landmark layer for a box with no tile server.

A city names its tile source in the ``basemap`` section of its ``city.json``::

    "basemap": {
      "kind": "xyz",                                    # xyz | wmts | vector
      "url": "http://gis.example.gov.cn/tiles/{z}/{x}/{y}.png",
      "attribution": "© 市测绘院",
      "min_zoom": 8, "max_zoom": 18,
      "crs": "wgs84",                                   # wgs84 (= CGCS2000 here) | gcj02
      "subdomains": "",                                 # "01234567" for {s} in the URL
      "vector": "basemap.geojson"                       # optional: local streets / POIs
    }

``xyz`` and ``wmts`` are Web-Mercator tile templates (``{z} {x} {y}``; a WMTS template may
write ``{TileMatrix} {TileRow} {TileCol}`` instead — 天地图's ``…/vec_w/wmts?…&tk=<key>`` is
one). ``vector`` draws a GeoJSON file from the city folder (``vector`` names it) and needs no
server at all; with ``xyz``/``wmts`` that file is the fallback drawn under the tiles while
they do not load. Coordinates are always stored as WGS-84 / CGCS2000; a ``gcj02`` source is
lined up by the pages (``static/shared/basemap.js`` projects through ``gcoord``), never by
changing stored points.

:func:`sample_layer` makes the offline layer from the city's grids and its standard
addresses (``places.csv``): roads along the grid and community boundaries (named, classed
trunk / primary / secondary), the address roads through their house numbers, and the POIs of
the address list as landmarks, and local streets (支路) crossing each four-cornered grid.
``gridctl basemap sample`` writes it.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The file name of the sample city's offline layer.
SAMPLE_FILE = "basemap.geojson"
#: Largest vector file served (the pages draw it whole).
MAX_VECTOR_BYTES = 8 * 1024 * 1024


class BaseMap(BaseModel):
    """The ``basemap`` section of ``city.json`` (checked at load like the rest of the file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["xyz", "wmts", "vector"]
    url: Annotated[str, Field(max_length=2000)] = ""
    attribution: Annotated[str, Field(max_length=300)] = ""
    min_zoom: Annotated[int, Field(ge=0, le=22)] = 8
    max_zoom: Annotated[int, Field(ge=0, le=22)] = 18
    crs: Literal["wgs84", "gcj02"] = "wgs84"
    subdomains: Annotated[str, Field(max_length=20)] = ""
    vector: Annotated[str | None, Field(max_length=100, pattern=r"^[\w.-]+\.(geo)?json$")] = None

    @model_validator(mode="after")
    def _consistent(self) -> BaseMap:
        if self.min_zoom > self.max_zoom:
            raise ValueError(f"min_zoom {self.min_zoom} is above max_zoom {self.max_zoom}")
        if self.kind == "vector" and not self.vector:
            raise ValueError("a vector base map names its GeoJSON file in 'vector'")
        if self.kind in ("xyz", "wmts"):
            template = tile_template(self.url)
            missing = [p for p in ("{z}", "{x}", "{y}") if p not in template]
            if not template.startswith(("http://", "https://", "/")) or missing:
                raise ValueError(
                    f"a {self.kind} url is an http(s) template with {{z}} {{x}} {{y}} "
                    "(WMTS: {TileMatrix} {TileCol} {TileRow})"
                )
            if "{s}" in template and not self.subdomains:
                raise ValueError("the url has {s}: give its subdomains (e.g. \"01234567\")")
        return self

    def public(self, vector_url: str | None) -> dict[str, Any]:
        """What the pages are given (``GET /v1/jurisdiction``: ``basemap``)."""
        return {
            "kind": self.kind,
            "url": tile_template(self.url) if self.kind != "vector" else "",
            "attribution": self.attribution,
            "min_zoom": self.min_zoom,
            "max_zoom": self.max_zoom,
            "crs": self.crs,
            "subdomains": self.subdomains,
            "vector_url": vector_url if self.vector else None,
        }


def tile_template(url: str) -> str:
    """A WMTS KVP/REST template in Leaflet's words: ``{TileMatrix}`` → ``{z}``,
    ``{TileCol}`` → ``{x}``, ``{TileRow}`` → ``{y}`` (any case)."""
    out = url
    for wmts, xyz in (("{tilematrix}", "{z}"), ("{tilecol}", "{x}"), ("{tilerow}", "{y}")):
        while (at := out.lower().find(wmts)) >= 0:
            out = out[:at] + xyz + out[at + len(wmts):]
    return out


def vector_path(basemap: BaseMap | None, city_dir: Path) -> Path | None:
    """The city's vector file, if it names one."""
    if basemap is None or not basemap.vector:
        return None
    return city_dir / basemap.vector


# --------------------------------------------------------------------------- sample layer

Point = tuple[float, float]  # (lon, lat)

#: Names for the roads along grid boundaries (none of them used by the sample addresses).
ARTERIAL_BASES = (
    "黔中", "筑城", "甲秀", "阳明", "梦草", "蟠桃", "南岳", "翠微", "栖霞", "百花", "红枫",
    "青岩", "扶风", "东山", "西湖", "螺蛳", "相宝", "狮峰", "双峰", "紫林", "桃源", "朝阳",
    "宏福", "博爱", "新添", "麒麟", "龙洞", "贵乌", "黔春", "金朱", "白云", "北站", "二桥",
    "三桥", "五里", "太平", "大营", "小关", "望城", "松柏", "杉木", "茶店", "顺海", "樱花",
)
TURN_LIMIT = math.radians(40)


def _snap(p: Iterable[float]) -> Point:
    x, y = p
    return (round(x, 6), round(y, 6))


def _boundary_segments(rings: Iterable[list[Point]]) -> dict[tuple[Point, Point], int]:
    """Each boundary edge (unordered, noded where lattices of different sizes meet) → how
    many polygons share it."""
    import shapely
    from shapely.geometry import LineString, MultiLineString

    lines: list[Any] = []
    for ring in rings:
        closed = [*ring, ring[0]]
        lines.extend(LineString([a, b]) for a, b in itertools.pairwise(closed))
    noded = shapely.unary_union(lines)  # splits overlapping collinear edges at every vertex
    parts = noded.geoms if isinstance(noded, MultiLineString) else [noded]
    out: dict[tuple[Point, Point], int] = {}
    for part in parts:
        coords = [_snap(c) for c in part.coords]
        for a, b in itertools.pairwise(coords):
            if a != b:
                out[(min(a, b), max(a, b))] = 1
    return out


def _strokes(segments: Iterable[tuple[Point, Point]]) -> list[list[Point]]:
    """Chain segments into long roads: at every node continue with the straightest unused
    segment (turning less than ``TURN_LIMIT``) — the lattice's rows and columns become
    streets crossing the city instead of one road per grid edge."""
    at: dict[Point, list[tuple[Point, Point]]] = defaultdict(list)
    segs = sorted(set(segments))
    for seg in segs:
        at[seg[0]].append(seg)
        at[seg[1]].append(seg)
    used: set[tuple[Point, Point]] = set()

    def heading(a: Point, b: Point) -> float:
        return math.atan2(b[1] - a[1], (b[0] - a[0]) * math.cos(math.radians(a[1])))

    def extend(path: list[Point]) -> None:
        while True:
            a, b = path[-2], path[-1]
            h = heading(a, b)
            best, best_turn = None, TURN_LIMIT
            for seg in at[b]:
                if seg in used:
                    continue
                c = seg[1] if seg[0] == b else seg[0]
                turn = abs((heading(b, c) - h + math.pi) % (2 * math.pi) - math.pi)
                if turn < best_turn:
                    best, best_turn = seg, turn
            if best is None:
                return
            used.add(best)
            path.append(best[1] if best[0] == b else best[0])

    out = []
    for seg in segs:
        if seg in used:
            continue
        used.add(seg)
        path = [seg[0], seg[1]]
        extend(path)
        path.reverse()
        extend(path)
        out.append(path)
    return out


def _length_m(path: list[Point]) -> float:
    total = 0.0
    for (x1, y1), (x2, y2) in itertools.pairwise(path):
        dx = (x2 - x1) * 111_320 * math.cos(math.radians((y1 + y2) / 2))
        total += math.hypot(dx, (y2 - y1) * 110_540)
    return total


def _road(name: str, cls: str, path: list[Point]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"layer": "road", "class": cls, "name": name},
        "geometry": {"type": "LineString", "coordinates": [list(p) for p in path]},
    }


def _arterials(j: Any) -> list[dict[str, Any]]:
    """Roads along the grid boundaries: district and city boundaries are trunk roads (大道),
    community boundaries primary roads (路), the other grid edges secondary streets (街)."""
    grid_rings = [list(g.polygon) for g in j.grids.values()]
    by_community: dict[str, list[list[Point]]] = defaultdict(list)
    by_district: dict[str, list[list[Point]]] = defaultdict(list)
    for code, grid in j.grids.items():
        by_community[grid.parent].append(list(grid.polygon))
        by_district[j.partition_of(code)].append(list(grid.polygon))
    import shapely
    from shapely.geometry import Polygon

    def outlines(groups: Mapping[str, list[list[Point]]]) -> Any:
        shapes = [shapely.unary_union([Polygon(r) for r in rings]).boundary
                  for rings in groups.values()]
        return shapely.unary_union(shapes)

    district_lines = outlines(by_district)
    community_lines = outlines(by_community)
    segments = _boundary_segments(grid_rings)
    rng = random.Random(j.city_code)
    bases = list(ARTERIAL_BASES)
    rng.shuffle(bases)
    names = iter([*bases, *(f"{b}{n}" for n in "二三四五六七八九" for b in bases)])
    features = []
    for path in sorted(_strokes(segments), key=lambda p: -_length_m(p)):
        if _length_m(path) < 400:
            continue
        mid = shapely.LineString(path).interpolate(0.5, normalized=True)
        if district_lines.distance(mid) < 1e-6:
            cls, suffix = "trunk", "大道"
        elif community_lines.distance(mid) < 1e-6:
            cls, suffix = "primary", "路"
        else:
            cls, suffix = "secondary", "街"
        features.append(_road(f"{next(names)}{suffix}", cls, path))
    return features


def _lerp(a: Point, b: Point, t: float) -> Point:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _minor_streets(j: Any, taken: set[str]) -> list[dict[str, Any]]:
    """Local streets (支路) inside the grids: each four-cornered grid crossed at a third and two
    thirds both ways. Neighbouring grids cut their shared edge at the same points, so the
    pieces join into streets that run on across the grid lines (named lanes, 巷)."""
    segments: set[tuple[Point, Point]] = set()
    for grid in j.grids.values():
        ring: list[Point] = [(float(p[0]), float(p[1])) for p in grid.polygon]
        if len(ring) != 4:
            continue  # an imported grid of any shape: no local streets drawn
        nw, ne, se, sw = ring
        for t in (1 / 3, 2 / 3):
            across = (_lerp(nw, sw, t), _lerp(ne, se, t))  # west → east
            down = (_lerp(nw, ne, t), _lerp(sw, se, t))  # north → south
            for a, b in (across, down):
                a, b = _snap(a), _snap(b)
                segments.add((min(a, b), max(a, b)))
    rng = random.Random(f"{j.city_code}-minor")
    bases = list(ARTERIAL_BASES)
    rng.shuffle(bases)
    names = (f"{b}{n}巷" for n in "一二三四五六七八九十" for b in bases)
    features = []
    for path in sorted(_strokes(segments), key=lambda p: -_length_m(p)):
        name = next(n for n in names if n not in taken)
        features.append(_road(name, "minor", path))
    return features


def _address_roads(rows: list[Mapping[str, str]]) -> list[dict[str, Any]]:
    """The address roads' centre lines: through the middle of each pair of neighbouring house
    numbers (odd on one side, even on the other), from the first number to the last."""
    by_road: dict[str, list[tuple[int, Point]]] = defaultdict(list)
    for row in rows:
        if row.get("building") or not row.get("road") or not str(row.get("number", "")).isdigit():
            continue
        by_road[row["road"]].append((int(row["number"]), (float(row["lon"]), float(row["lat"]))))
    features = []
    for road, numbered in sorted(by_road.items()):
        numbered.sort()
        points = [p for _, p in numbered]
        if len(points) < 4:
            continue
        middles = [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
                   for a, b in itertools.pairwise(points)]
        # Half a number's spacing beyond the first and last house.
        (x0, y0), (x1, y1) = middles[0], middles[1]
        (xa, ya), (xb, yb) = middles[-2], middles[-1]
        start = (x0 - (x1 - x0), y0 - (y1 - y0))
        end = (xb + (xb - xa), yb + (yb - ya))
        path = [_snap(start), _snap(middles[0]), _snap(middles[-1]), _snap(end)]
        cls = "lane" if road.endswith("巷") else "street"
        features.append(_road(road, cls, path))
    return features


#: The kind of a landmark from the end of its name (the sample generator's POI kinds).
POI_KINDS = (
    ("社区卫生服务站", "health"), ("医院", "health"), ("药店", "health"),
    ("小学", "school"), ("中学", "school"), ("幼儿园", "school"),
    ("派出所", "police"), ("社区服务中心", "service"), ("银行网点", "service"),
    ("公园", "park"), ("超市", "shop"), ("农贸市场", "shop"), ("菜场", "shop"),
    ("酒店", "shop"), ("加油站", "transport"), ("停车场", "transport"),
)


def poi_kind(name: str) -> str:
    for suffix, kind in POI_KINDS:
        if name.endswith(suffix):
            return kind
    return "other"


def _landmarks(rows: list[Mapping[str, str]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    features = []
    for row in rows:
        name = row.get("poi") or ""
        if not name or name in seen:
            continue
        seen.add(name)
        features.append({
            "type": "Feature",
            "properties": {"layer": "poi", "kind": poi_kind(name), "name": name},
            "geometry": {"type": "Point",
                         "coordinates": [round(float(row["lon"]), 6), round(float(row["lat"]), 6)]},
        })
    return features


def sample_layer(j: Any, place_rows: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """The offline street and landmark layer of a city from its grids and addresses."""
    rows = list(place_rows)
    roads = [*_arterials(j), *_address_roads(rows)]
    taken = {f["properties"]["name"] for f in roads} | {r.get("road") or "" for r in rows}
    features = [*_minor_streets(j, taken), *roads, *_landmarks(rows)]
    return {
        "type": "FeatureCollection",
        "name": f"{j.name_zh} 离线底图 (generated)",
        "note": "Generated by `gridctl basemap sample` from the city's grids and places.csv; "
        "roads follow grid and community boundaries and the standard-address roads.",
        "features": features,
    }


def read_place_rows(path: Path) -> Iterator[dict[str, str]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield from csv.DictReader(handle)


def render(layer: Mapping[str, Any]) -> str:
    """One feature per line (diffable, like ``city.json``)."""
    head = {k: v for k, v in layer.items() if k != "features"}
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "features": [']
    body = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in layer["features"]]
    lines.append(",\n".join(body))
    lines.append("]}")
    return "\n".join(lines) + "\n"


__all__ = [
    "MAX_VECTOR_BYTES",
    "SAMPLE_FILE",
    "BaseMap",
    "poi_kind",
    "read_place_rows",
    "render",
    "sample_layer",
    "tile_template",
    "vector_path",
]
