"""A city's grid layers from GIS files → its city definition (``city.json``).

A city brings three polygon layers — districts (区), communities (社区) and unit grids (网格) —
as GeoJSON FeatureCollections or ESRI shapefiles (pyshp), each feature with ``code``,
``name_zh`` (or ``name`` / ``名称``), optional ``name_en`` and ``parent``. :func:`check`
reports, with their areas in m²:

* **errors** (nothing is written): a missing, malformed or repeated code; a parent that is
  not in the layer above; a child that lies (mostly) outside its parent; an invalid or
  empty polygon; a grid made of several parts; overlapping features of one layer;
* **warnings** (written anyway): gaps — parts of a parent that none of its children cover —
  and a parent left without children.

A missing ``parent`` is inferred: the feature of the layer above that contains the child's
inner point. :func:`city_definition` then builds the ``city.json`` document (levels city →
district → community → grid; one department per function at the city and at each district
unless departments are given), which ``core.jurisdiction.Jurisdiction`` validates again at
load. Areas come from a local equirectangular projection (good to a fraction of a percent at
city scale).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapely import STRtree
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from core.catalogue import DEPARTMENT_FUNCTIONS

LAYERS = ("district", "community", "grid")
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
#: Overlaps and gaps smaller than this (m²) are digitising noise, not reported.
MIN_AREA_M2 = 1.0
#: A child may stick out of its parent by this share of its area (digitising noise).
OUTSIDE_TOLERANCE = 0.01
NAME_KEYS = ("name_zh", "name", "名称", "名称", "NAME")
CODE_KEYS = ("code", "CODE", "编码", "代码", "id")
PARENT_KEYS = ("parent", "PARENT", "上级", "parent_code")
FUNCTION_NAMES = {
    "sanitation": ("环卫局", "Sanitation Bureau"),
    "municipal": ("市政局", "Municipal Works Bureau"),
    "greening": ("园林绿化局", "Landscaping Bureau"),
    "urban_management": ("城管执法局", "Urban Management Bureau"),
    "housing": ("住建局", "Housing Bureau"),
    "water": ("水务局", "Water Bureau"),
    "traffic": ("交通局", "Traffic Bureau"),
    "public_security": ("公安分局", "Public Security Bureau"),
    "market": ("市场监管局", "Market Regulation Bureau"),
    "civil_affairs": ("民政局", "Civil Affairs Bureau"),
    "mediation": ("司法局", "Justice Bureau"),
    "emergency": ("应急管理局", "Emergency Management Bureau"),
    "environment": ("生态环境局", "Ecology and Environment Bureau"),
    "community_service": ("社区服务中心", "Community Service Centre"),
}


#: The layers in words (findings are read by people).
LAYER_NAMES = {"district": "区县", "community": "社区", "grid": "网格"}


class LayerError(ValueError):
    """A layer file that cannot be read at all."""


@dataclass
class Feature:
    layer: str
    index: int  # 1-based position in its file
    code: str | None
    name_zh: str | None
    name_en: str | None
    parent: str | None
    geometry: BaseGeometry | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    severity: str  # "error" | "warning"
    layer: str
    code: str | None
    message: str
    area_m2: float | None = None
    at: tuple[float, float] | None = None  # (lat, lon) of a point inside the problem

    def row(self) -> dict[str, Any]:
        return {
            "severity": self.severity, "layer": self.layer, "code": self.code,
            "message": self.message,
            "area_m2": None if self.area_m2 is None else round(self.area_m2, 1),
            "lat": None if self.at is None else round(self.at[0], 6),
            "lon": None if self.at is None else round(self.at[1], 6),
        }


@dataclass
class Report:
    features: dict[str, list[Feature]]
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


# --------------------------------------------------------------------------- reading


def _first(props: dict[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = props.get(key)
        if value not in (None, ""):
            return str(value).strip()
    return None


def read_layer(path: Path, layer: str) -> list[Feature]:
    """The features of a GeoJSON (``.geojson`` / ``.json``) or shapefile (``.shp``)."""
    suffix = path.suffix.lower()
    if suffix == ".shp":
        raw = _shapefile(path)
    elif suffix in (".geojson", ".json"):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LayerError(f"{path}: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("features"), list):
            raise LayerError(f"{path}: 不是 GeoJSON FeatureCollection")
        raw = [(f.get("properties") or {}, f.get("geometry")) for f in document["features"]]
    else:
        raise LayerError(f"{path}: 请使用 .geojson 或 .shp 文件")
    features = []
    for index, (props, geometry) in enumerate(raw, 1):
        props = dict(props or {})
        try:
            geom = shape(geometry) if geometry else None
        except (ValueError, TypeError, AttributeError):
            geom = None
        features.append(Feature(
            layer=layer, index=index, code=_first(props, CODE_KEYS),
            name_zh=_first(props, NAME_KEYS), name_en=_first(props, ("name_en", "NAME_EN")),
            parent=_first(props, PARENT_KEYS), geometry=geom, extra=props,
        ))
    return features


def _shapefile(path: Path) -> list[tuple[dict[str, Any], Any]]:
    import shapefile

    cpg = path.with_suffix(".cpg")
    encodings = [cpg.read_text().strip()] if cpg.exists() else []
    for encoding in [*encodings, "utf-8", "gb18030"]:
        try:
            with shapefile.Reader(str(path), encoding=encoding) as reader:
                return [(sr.record.as_dict(), sr.shape.__geo_interface__)
                        for sr in reader.iterShapeRecords()]
        except UnicodeDecodeError:
            continue
        except (shapefile.ShapefileException, OSError) as exc:
            raise LayerError(f"{path}: {exc}") from exc
    raise LayerError(f"{path}: 属性表编码无法识别 (请添加 .cpg 文件)")


# --------------------------------------------------------------------------- checking


def area_m2(geometry: BaseGeometry) -> float:
    """Area in m² by a local equirectangular projection around the geometry's centre."""
    if geometry.is_empty:
        return 0.0
    lat = geometry.centroid.y
    kx = 111_320.0 * math.cos(math.radians(lat))
    ky = 110_574.0
    return float(geometry.area * kx * ky)


def _point(geometry: BaseGeometry) -> tuple[float, float]:
    p = geometry.representative_point()
    return (p.y, p.x)


def check(layers: dict[str, list[Feature]]) -> Report:
    """Every problem of the layers (see the module docstring); infers missing parents."""
    findings: list[Finding] = []
    seen: dict[str, str] = {}
    for layer in LAYERS:
        for f in layers.get(layer, []):
            where = f.code or f"第 {f.index} 个要素"
            if not f.code or not _CODE.match(f.code):
                findings.append(Finding("error", layer, f.code,
                                        f"第 {f.index} 个要素: 编码缺失或格式错误"))
            elif f.code in seen:
                other = LAYER_NAMES[seen[f.code]]
                findings.append(Finding("error", layer, f.code,
                                        f"编码 {f.code} 与某个{other}的编码重复"))
            else:
                seen[f.code] = layer
            if not f.name_zh:
                findings.append(Finding("error", layer, f.code, f"{where}: 没有名称"))
            findings += _geometry_problems(f)
    for upper, lower in itertools.pairwise(LAYERS):
        findings += _parents(layers.get(upper, []), layers.get(lower, []), lower)
    for layer in LAYERS:
        findings += _overlaps(layers.get(layer, []), layer)
    for upper, lower in itertools.pairwise(LAYERS):
        findings += _gaps(layers.get(upper, []), layers.get(lower, []), upper)
    return Report(layers, findings)


def _geometry_problems(f: Feature) -> list[Finding]:
    where = f.code or f"第 {f.index} 个要素"
    g = f.geometry
    if g is None or g.is_empty or not isinstance(g, Polygon | MultiPolygon):
        f.geometry = None
        return [Finding("error", f.layer, f.code, f"{where}: 没有多边形")]
    if not g.is_valid:
        from shapely.validation import explain_validity

        reason = explain_validity(g)
        f.geometry = None
        return [Finding("error", f.layer, f.code, f"{where}: 多边形无效 ({reason})")]
    if f.layer == "grid" and isinstance(g, MultiPolygon):
        if len(g.geoms) > 1:
            return [Finding("error", f.layer, f.code,
                            f"{where}: 网格须为单个多边形, 此网格有 {len(g.geoms)} 块",
                            area_m2(g), _point(g))]
        f.geometry = g.geoms[0]
    if isinstance(f.geometry, Polygon) and f.layer == "grid" and f.geometry.interiors:
        return [Finding("error", f.layer, f.code, f"{where}: 网格不能有空洞",
                        area_m2(g), _point(g))]
    return []


def _parents(uppers: list[Feature], lowers: list[Feature], layer: str) -> list[Finding]:
    findings: list[Finding] = []
    by_code = {u.code: u for u in uppers if u.code and u.geometry is not None}
    above = [u for u in uppers if u.geometry is not None]
    tree = STRtree([u.geometry for u in above]) if above else None
    for f in lowers:
        if f.geometry is None:
            continue
        inner = f.geometry.representative_point()
        if f.parent is None and tree is not None:
            hits = [above[i] for i in tree.query(inner, predicate="within")]
            if hits:
                f.parent = hits[0].code
        if f.parent is None or f.parent not in by_code:
            findings.append(Finding(
                "error", layer, f.code,
                f"{f.code}: 上级 {f.parent or '(未填, 且上一层没有要素包含它)'} "
                f"不在上一层 ({LAYER_NAMES[LAYERS[LAYERS.index(layer) - 1]]}) 中", None,
                _point(f.geometry)))
            continue
        outside = f.geometry.difference(by_code[f.parent].geometry)
        share = outside.area / f.geometry.area if f.geometry.area else 0
        if share > OUTSIDE_TOLERANCE:
            findings.append(Finding(
                "error", layer, f.code,
                f"{f.code}: 有 {share:.0%} 位于其上级 {f.parent} 之外",
                area_m2(outside), _point(outside)))
    return findings


def _overlaps(features: list[Feature], layer: str) -> list[Finding]:
    shaped = [f for f in features if f.geometry is not None]
    if len(shaped) < 2:
        return []
    tree = STRtree([f.geometry for f in shaped])
    findings = []
    for i, f in enumerate(shaped):
        for j in tree.query(f.geometry, predicate="intersects"):
            if j <= i:
                continue
            other = shaped[j]
            common = f.geometry.intersection(other.geometry)  # type: ignore[union-attr]
            area = area_m2(common)
            if area >= MIN_AREA_M2:
                findings.append(Finding(
                    "error", layer, f.code,
                    f"{f.code} 与 {other.code} 重叠", area, _point(common)))
    return findings


def _gaps(uppers: list[Feature], lowers: list[Feature], layer: str) -> list[Finding]:
    findings = []
    children: dict[str, list[BaseGeometry]] = {}
    for f in lowers:
        if f.geometry is not None and f.parent:
            children.setdefault(f.parent, []).append(f.geometry)
    child_layer = LAYERS[LAYERS.index(layer) + 1]
    for u in uppers:
        if u.geometry is None or not u.code:
            continue
        parts = children.get(u.code)
        if not parts:
            findings.append(Finding("warning", layer, u.code,
                                    f"{u.code} 下没有{LAYER_NAMES[child_layer]}",
                                    area_m2(u.geometry), _point(u.geometry)))
            continue
        gap = u.geometry.difference(unary_union(parts))
        for piece in getattr(gap, "geoms", [gap]):
            area = area_m2(piece)
            if area >= MIN_AREA_M2 and not piece.is_empty:
                findings.append(Finding(
                    "warning", layer, u.code,
                    f"{u.code} 有空隙: 此部分没有{LAYER_NAMES[child_layer]}覆盖", area,
                    _point(piece)))
    return findings


# --------------------------------------------------------------------------- writing


def _ring(polygon: BaseGeometry) -> list[list[float]]:
    assert isinstance(polygon, Polygon)
    coords = list(polygon.exterior.coords)[:-1]
    return [[round(x, 7), round(y, 7)] for x, y in coords]


def default_departments(city_code: str, city_name: str, districts: Iterable[Feature]
                        ) -> list[dict[str, Any]]:
    """One department per function at the city and at each district."""
    out = []
    for code, name in [(city_code, city_name), *((d.code or "", d.name_zh or "")
                                                 for d in districts)]:
        for function in sorted(DEPARTMENT_FUNCTIONS):
            zh, en = FUNCTION_NAMES[function]
            out.append({"code": f"D-{code}-{function}", "name_zh": f"{name}{zh}",
                        "name_en": f"{code} {en}", "node": code, "functions": [function]})
    return out


def city_definition(
    report: Report, *, city_code: str, name_zh: str, name_en: str, version: int = 1,
    departments: list[dict[str, Any]] | None = None, note: str | None = None,
) -> dict[str, Any]:
    """The ``city.json`` document of checked layers (call only without errors)."""
    if report.errors:
        raise ValueError(f"{len(report.errors)} 个错误: 未写出任何内容")
    districts = report.features.get("district", [])
    communities = report.features.get("community", [])
    nodes = [{"code": d.code, "name_zh": d.name_zh, "name_en": d.name_en or d.code,
              "level": "district", "parent": city_code} for d in districts]
    nodes += [{"code": c.code, "name_zh": c.name_zh, "name_en": c.name_en or c.code,
               "level": "community", "parent": c.parent} for c in communities]
    grids = []
    for g in report.features.get("grid", []):
        households = g.extra.get("households")
        grids.append({
            "code": g.code, "name_zh": g.name_zh, "name_en": g.name_en or g.code,
            "parent": g.parent, "polygon": _ring(g.geometry),  # type: ignore[arg-type]
            "team": {"inspector": f"insp-{g.code}", "instructor": f"inst-{g.code}",
                     "police": f"pol-{g.code}"},
            "households": int(str(households)) if str(households or "").isdigit() else 0,
        })
    return {
        "version": version,
        "note": note or "imported with gridctl city import",
        "city": {"code": city_code, "name_zh": name_zh, "name_en": name_en},
        "levels": [
            {"key": "city", "name_zh": "市", "name_en": "City", "command": True},
            {"key": "district", "name_zh": "区", "name_en": "District", "command": True},
            {"key": "community", "name_zh": "社区", "name_en": "Community", "command": True},
            {"key": "grid", "name_zh": "网格", "name_en": "Grid", "command": False},
        ],
        "nodes": nodes,
        "grids": grids,
        "departments": departments
        if departments is not None else default_departments(city_code, name_zh, districts),
    }


__all__ = [
    "LAYERS",
    "LAYER_NAMES",
    "Feature",
    "Finding",
    "LayerError",
    "Report",
    "area_m2",
    "check",
    "city_definition",
    "read_layer",
]
