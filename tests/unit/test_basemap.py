"""The base map (issue 17): the ``basemap`` section of ``city.json`` is checked at load, a
WMTS template is given to the pages in Leaflet's words, the sample city's offline layer is
made from its grids and addresses, and a GCJ-02 source is lined up through gcoord (the vendored
converter, called by ``static/shared/basemap.js``) — never by moving stored points."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.basemap import BaseMap, read_place_rows, render, sample_layer, tile_template
from core.jurisdiction import Jurisdiction, JurisdictionError

ROOT = Path(__file__).resolve().parents[2]
CITY = ROOT / "deploy" / "cities" / "guiyang"
STATIC = ROOT / "gateways" / "web" / "static"


def _city(basemap: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads((CITY / "city.json").read_text(encoding="utf-8"))
    return {**doc, "basemap": basemap}


def test_basemap_section_is_checked_at_load() -> None:
    tianditu = ("http://t{s}.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile"
                "&LAYER=vec&TILEMATRIXSET=w&TileMatrix={TileMatrix}&TileRow={TileRow}"
                "&TileCol={TileCol}&tk=KEY")
    j = Jurisdiction.from_dict(_city({"kind": "wmts", "url": tianditu, "subdomains": "01234567",
                                      "crs": "wgs84", "attribution": "天地图"}))
    assert j.basemap is not None
    shown = j.basemap.public("/v1/basemap/vector.geojson")
    assert "TileMatrix={z}&TileRow={y}&TileCol={x}" in shown["url"]
    assert shown["vector_url"] is None  # no offline layer named
    assert tile_template("/t/{TILEMATRIX}/{tilerow}/{TileCol}.png") == "/t/{z}/{y}/{x}.png"
    bad = [
        {"kind": "xyz", "url": "http://gis/tiles/{z}/{x}.png"},  # no {y}
        {"kind": "xyz", "url": "http://t{s}.gis/{z}/{x}/{y}.png"},  # {s} without subdomains
        {"kind": "xyz", "url": "ftp://gis/{z}/{x}/{y}"},
        {"kind": "vector"},  # no file
        {"kind": "vector", "vector": "../../etc/passwd"},
        {"kind": "xyz", "url": "http://gis/{z}/{x}/{y}", "min_zoom": 15, "max_zoom": 10},
        {"kind": "xyz", "url": "http://gis/{z}/{x}/{y}", "crs": "bd09"},
        {"kind": "xyz", "url": "http://gis/{z}/{x}/{y}", "key": "x"},  # unknown field
    ]
    for section in bad:
        with pytest.raises(JurisdictionError):
            Jurisdiction.from_dict(_city(section))
    sample = Jurisdiction.load(CITY).basemap
    assert sample == BaseMap(kind="vector", vector="basemap.geojson",
                             attribution=sample.attribution if sample else "", min_zoom=9)


def test_sample_layer_follows_the_grids_and_addresses() -> None:
    j = Jurisdiction.load(CITY)
    layer = sample_layer(j, read_place_rows(CITY / "places.csv"))
    shipped = (CITY / "basemap.geojson").read_text(encoding="utf-8")
    assert render(layer) == shipped, "run: gridctl basemap sample --out " + str(CITY)
    import shapely
    from shapely.geometry import LineString, Polygon

    # The main roads run along the grid boundaries (trunk roads: on a district boundary).
    grid_edges = shapely.unary_union([Polygon(g.polygon).boundary for g in j.grids.values()])
    districts: dict[str, list[Any]] = {}
    for code, grid in j.grids.items():
        districts.setdefault(j.partition_of(code), []).append(Polygon(grid.polygon))
    district_edges = shapely.unary_union(
        [shapely.unary_union(p).boundary for p in districts.values()]
    )
    main = [f for f in layer["features"]
            if f["properties"].get("class") in ("trunk", "primary", "secondary")]
    assert len(main) > 20
    for f in main:
        line = LineString(f["geometry"]["coordinates"])
        assert grid_edges.buffer(1e-6).contains(line), f["properties"]
        if f["properties"]["class"] == "trunk":
            middle = line.interpolate(0.5, normalized=True)
            assert district_edges.distance(middle) < 1e-6, f["properties"]
    streets = {f["properties"]["name"] for f in layer["features"]
               if f["properties"].get("class") in ("street", "lane")}
    roads = {r["road"] for r in read_place_rows(CITY / "places.csv")}
    assert streets <= roads and "中华北路" in streets
    names = [f["properties"]["name"] for f in layer["features"]
             if f["properties"]["layer"] == "road"]
    assert len(names) == len(set(names))  # every road named once


NODE = shutil.which("node")
PROBE = """
const vm = require("vm"), fs = require("fs");
const ctx = { console, window: {} };
ctx.window.window = ctx.window;
vm.createContext(ctx);
for (const f of process.argv.slice(1)) {
  const code = fs.readFileSync(f, "utf8").replace("var gcoord=", "window.gcoord=");
  vm.runInContext(`(function (window) {${code}\\n}).call(window, window)`, ctx);
}
const B = ctx.window.GDBasemap;
const out = {};
for (const [name, lon, lat] of [["guiyang", 106.7, 26.58], ["london", -0.1276, 51.5072]]) {
  const shown = B.toDisplay(lon, lat, "gcj02");
  const back = B.toStored(shown[0], shown[1], "gcj02");
  out[name] = { shown, back, wgs: B.toDisplay(lon, lat, "wgs84") };
}
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_gcj02_conversion_through_gcoord() -> None:
    files = [STATIC / "vendor" / "gcoord" / "gcoord.global.prod.js",
             STATIC / "shared" / "basemap.js"]
    done = subprocess.run([NODE, "-e", PROBE, *map(str, files)], capture_output=True, text=True,
                          timeout=20, check=True)
    out = json.loads(done.stdout)
    lon, lat = 106.7, 26.58
    shown = out["guiyang"]["shown"]
    metres = math.hypot((shown[0] - lon) * 111_320 * math.cos(math.radians(lat)),
                        (shown[1] - lat) * 110_540)
    assert 100 < metres < 800  # GCJ-02's offset in China: a few hundred metres
    back = out["guiyang"]["back"]
    assert abs(back[0] - lon) < 1e-5 and abs(back[1] - lat) < 1e-5  # about a metre
    assert out["guiyang"]["wgs"] == [lon, lat]  # a WGS-84 source: unchanged
    assert out["london"]["shown"] == [-0.1276, 51.5072]  # outside China: unchanged
