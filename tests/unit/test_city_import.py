"""gridctl city import (issue 17 item 3): layers the test writes as GeoJSON and shapefiles —
a clean city that is written and loads back, then overlapping, gapped and miscoded layers
whose findings name the features and their areas, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import shapefile
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient
from typer.testing import CliRunner

from core import city_import
from core.jurisdiction import Jurisdiction
from gateways.cli_city import app

W, S = 106.60, 26.60  # south-west corner
STEP = 0.005  # a grid is STEP × STEP degrees (~500 m × 550 m here)


def box(x0: float, y0: float, nx: int, ny: int) -> list[list[float]]:
    x1, y1 = x0 + nx * STEP, y0 + ny * STEP
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def geojson(path: Path, rows: list[tuple[dict[str, Any], list[list[float]]]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props,
         "geometry": {"type": "Polygon", "coordinates": [ring]}} for props, ring in rows
    ]}, ensure_ascii=False), encoding="utf-8")
    return path


def shp(path: Path, rows: list[tuple[dict[str, Any], list[list[float]]]]) -> Path:
    with shapefile.Writer(str(path), shapeType=shapefile.POLYGON, encoding="gb18030") as w:
        w.field("CODE", "C", size=20)
        w.field("NAME", "C", size=50)
        w.field("PARENT", "C", size=20)
        for props, ring in rows:
            outer = orient(Polygon(ring), sign=-1.0)  # shapefile outer rings run clockwise
            w.poly([[list(c) for c in outer.exterior.coords]])
            w.record(props["code"], props["name"], props.get("parent", ""))
    path.with_suffix(".cpg").write_text("GB18030")
    return path


def layers(tmp: Path, grid_rows: list[tuple[dict[str, Any], list[list[float]]]] | None = None
           ) -> list[str]:
    """Two districts side by side, two communities each (stacked), two grids each."""
    districts = [({"code": f"43010{d}", "name_zh": f"第{d}区"},
                  box(W + (d - 1) * 2 * STEP, S, 2, 2)) for d in (1, 2)]
    communities = []
    grids = []
    for d in (1, 2):
        for c in (1, 2):
            x0, y0 = W + (d - 1) * 2 * STEP, S + (c - 1) * STEP
            code = f"43010{d}00{c}"
            # Communities name no parent: it is inferred from the districts.
            communities.append(({"code": code, "name": f"社区{d}{c}"}, box(x0, y0, 2, 1)))
            for g in (1, 2):
                grids.append(({"code": f"{code}00{g}", "name": f"网格{d}{c}{g}",
                               "parent": code}, box(x0 + (g - 1) * STEP, y0, 1, 1)))
    return [
        "--districts", str(geojson(tmp / "districts.geojson", districts)),
        "--communities", str(geojson(tmp / "communities.geojson", communities)),
        "--grids", str(shp(tmp / "grids.shp", grid_rows if grid_rows is not None else grids)),
        "--code", "430100", "--name-zh", "测试市", "--name-en", "Testville",
    ]


def run(args: list[str]) -> Any:
    return CliRunner().invoke(app, ["import", *args], env={"COLUMNS": "200"})


def test_clean_layers_become_a_city_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "city"
    result = run([*layers(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "社区图层 4 个要素, 网格图层 8 个要素: 0 个错误, 0 个警告" in (
        result.output)
    j = Jurisdiction.load(out)
    assert len(j.grids) == 8 and j.city_code == "430100"
    grid = j.locate(S + 1.5 * STEP, W + 2.5 * STEP)  # district 2, community 2, grid 1
    assert grid is not None and grid.code == "430102002001" and grid.name_zh == "网格221"
    assert j.grid("430102002001").parent == "430102002"
    assert j.nodes["430102002"].parent == "430102"  # inferred by containment
    assert j.departments_at("430102")  # one per function at each district


def test_overlaps_gaps_and_bad_codes_are_reported_with_areas(tmp_path: Path) -> None:
    out = tmp_path / "city"
    clean = run([*layers(tmp_path), "--out", str(tmp_path / "clean")])
    assert clean.exit_code == 0
    grids = city_import.read_layer(tmp_path / "grids.shp", "grid")
    rows = [({"code": g.code, "name": g.name_zh, "parent": g.parent},
             [list(p) for p in g.geometry.exterior.coords]) for g in grids]  # type: ignore
    rows = [r for r in rows if r[0]["code"] != "430101001002"]  # a gap
    wider = box(W + STEP, S + STEP, 1, 1)  # 430101002002 …
    wider[1][0] = wider[2][0] = W + 2.5 * STEP  # … reaching half into district 2's grid
    rows = [(p, wider if p["code"] == "430101002002" else ring) for p, ring in rows]
    rows.append(({"code": "430102001001", "name": "重复", "parent": "430102001"},
                 box(W + 5 * STEP, S, 1, 1)))  # a repeated code, outside every community
    rows.append(({"code": "430199001001", "name": "孤儿", "parent": "430199001"},
                 box(W + 3 * STEP, S + STEP, 1, 1)))  # unknown parent
    report = tmp_path / "findings.csv"
    result = run([*layers(tmp_path, rows), "--out", str(out), "--report", str(report)])
    assert result.exit_code == 1, result.output
    assert not (out / "city.json").exists()
    found = city_import.check({
        "district": city_import.read_layer(tmp_path / "districts.geojson", "district"),
        "community": city_import.read_layer(tmp_path / "communities.geojson", "community"),
        "grid": city_import.read_layer(tmp_path / "grids.shp", "grid"),
    })
    messages = {f.message: f for f in found.findings}
    one_grid = 0.005 * 110_574 * 0.005 * 111_320 * 0.894  # ~ 553 m × 498 m at 26.6° N
    gap = messages["430101001 有空隙: 此部分没有网格覆盖"]
    assert gap.severity == "warning" and abs(gap.area_m2 - one_grid) / one_grid < 0.02  # type: ignore
    overlap = next(f for m, f in messages.items() if "重叠" in m)
    assert "430101002002" in overlap.message and overlap.severity == "error"
    assert abs(overlap.area_m2 - one_grid / 2) / one_grid < 0.02  # type: ignore[operator]
    assert any("有 33% 位于其上级 430101002 之外" in m for m in messages)
    assert any("与某个网格的编码重复" in m for m in messages)
    assert any("上级 430199001 不在上一层 (社区) 中" in m for m in messages)
    written = report.read_text(encoding="utf-8-sig").splitlines()
    assert written[0] == "severity,layer,code,message,area_m2,lat,lon"
    assert len(written) == len(found.findings) + 1
    assert "重叠" in result.output and "未写出" in result.output
