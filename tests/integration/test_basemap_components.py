"""The base map and the components (部件) against the running system (issue 17): the city's
basemap config in ``GET /v1/jurisdiction``, its offline layer served without a token, and
``gridctl components import`` (progress, rejected rows by reason) into the test's schema,
queried by bounding box."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gateways.cli_components import app as components_cli
from tests.conftest import auth_headers, database_url, eventually

GRID = "520102001001"


async def test_basemap_config_and_offline_layer(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "inspector")
    tree = (await client.get("/v1/jurisdiction", headers=headers)).json()
    assert tree["basemap"] == {
        "kind": "vector", "url": "", "attribution": tree["basemap"]["attribution"],
        "min_zoom": 9, "max_zoom": 18, "crs": "wgs84", "subdomains": "",
        "vector_url": "/v1/basemap/vector.geojson",
    }
    layer = await client.get("/v1/basemap/vector.geojson")  # public, like tiles
    assert layer.status_code == 200, layer.text
    assert layer.headers["content-type"].startswith("application/geo+json")
    features = layer.json()["features"]
    roads = {f["properties"]["name"]: f for f in features if f["properties"]["layer"] == "road"}
    classes = {f["properties"]["class"] for f in roads.values()}
    assert {"trunk", "primary", "secondary", "street"} <= classes
    assert "中华北路" in roads  # the standard-address roads of places.csv
    pois = [f for f in features if f["properties"]["layer"] == "poi"]
    assert len(pois) > 100 and all(f["properties"]["name"] for f in pois)
    j = system["runtime"].ref.jurisdiction
    west, south, east, north = j.bounds()
    for f in features:
        coords = f["geometry"]["coordinates"]
        for lon, lat in coords if f["geometry"]["type"] == "LineString" else [coords]:
            assert west - 0.01 <= lon <= east + 0.01 and south - 0.01 <= lat <= north + 0.01


async def test_components_import_and_bbox_query(system: dict[str, Any], tmp_path: Path) -> None:
    client, runtime, settings = system["client"], system["runtime"], system["settings"]
    lat, lon = runtime.ref.jurisdiction.grid(GRID).centroid
    rows = [
        "code,kind,name,lat,lon",
        f"5201020105000001,,中华北路1号灯,{lat},{lon}",  # kind from the catalogue: 路灯
        f"5201020103000001,井盖,,{lat + 0.0002},{lon}",
        f"5201020302000001,垃圾桶,,{lat},{lon + 0.0002}",
        f"5201020105000001,,,{lat},{lon}",  # duplicate code
        f"52010201050000,,,{lat},{lon}",  # 14 digits
        f"5201030105000009,,,{lat},{lon}",  # 云岩区 code on a 南明区 point
        f"5201029999000001,,,{lat},{lon}",  # unknown class, no kind
        "5201020105000002,,,39.9,116.4",  # outside the city
        f"5201020105000003,,,abc,{lon}",
    ]
    source = tmp_path / "components.csv"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejected.csv"
    env = {"DATABASE_URL": database_url(), "GRID_DB_SCHEMA": settings.db_schema,
           "GRID_CITY": str(settings.city_dir), "COLUMNS": "160"}
    result = await asyncio.to_thread(
        CliRunner().invoke, components_cli,
        ["import", str(source), "--rejects", str(rejects)], env=env,
    )
    assert result.exit_code == 1, result.output  # some rows were rejected
    assert "已导入 3 个部件" in result.output and "拒收 6 行" in result.output
    for reason in ("与第 2 行重复", "不是 16 位数字", "区县码 520103", "不在分类目录中",
                   "不在贵阳市范围内", "lat 不是数字"):
        assert reason in result.output, (reason, result.output)
    assert len(rejects.read_text(encoding="utf-8-sig").splitlines()) == 7

    headers = await auth_headers(client, "dispatcher")
    box = f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}"
    found = await client.get("/v1/components", params={"bbox": box}, headers=headers)
    assert found.status_code == 200, found.text
    items = {c["code"]: c for c in found.json()["items"]}
    assert set(items) == {"5201020105000001", "5201020103000001", "5201020302000001"}
    lamp = items["5201020105000001"]
    assert (lamp["kind"], lamp["category"], lamp["name"]) == ("路灯", "BJ0105", "中华北路1号灯")
    assert lamp["grid"] == GRID and lamp["district"] == "520102"
    assert items["5201020103000001"]["kind"] == "井盖"
    only = await client.get("/v1/components", params={"bbox": box, "kind": "井盖"},
                            headers=headers)
    assert [c["code"] for c in only.json()["items"]] == ["5201020103000001"]
    small = await client.get("/v1/components", params={"bbox": box, "limit": 2}, headers=headers)
    assert small.json()["count"] == 2 and small.json()["truncated"] is True
    elsewhere = f"{lon + 0.01},{lat + 0.01},{lon + 0.02},{lat + 0.02}"
    assert (await client.get("/v1/components", params={"bbox": elsewhere},
                             headers=headers)).json()["items"] == []
    for bad in ("1,2,3", f"{lon},{lat},{lon - 1},{lat}", "100,20,102,22", "a,b,c,d"):
        refused = await client.get("/v1/components", params={"bbox": bad}, headers=headers)
        assert refused.status_code == 422, (bad, refused.text)
    assert (await client.get("/v1/components", params={"bbox": box})).status_code == 401
    one = await client.get("/v1/components/5201020105000001", headers=headers)
    assert one.json() == lamp
    assert (await client.get("/v1/components/5201020105999999",
                             headers=headers)).status_code == 404
    kinds = (await client.get("/v1/components/kinds", headers=headers)).json()["items"]
    assert {k["kind"]: k["n"] for k in kinds} == {"路灯": 1, "井盖": 1, "垃圾桶": 1}

    # A report naming a component: recorded in its event; without a location, at its point.
    inspector = await auth_headers(client, "inspector")
    body = {"category": "BJ0105", "description": "路灯不亮", "component": "5201020105000001"}
    accepted = await client.post("/v1/reports", json=body, headers=inspector)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["grid"] == GRID
    unknown = await client.post("/v1/reports", json={**body, "component": "5201020105999999"},
                                headers=inspector)
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_component"
    malformed = await client.post("/v1/reports", json={**body, "component": "123"},
                                  headers=inspector)
    assert malformed.status_code == 422

    async def case() -> Any:
        r = await client.get(f"/v1/cases/{accepted.json()['case_no']}", headers=headers)
        return r.json() if r.status_code == 200 else None

    shown = await eventually(case)
    assert shown["timeline"][0]["data"]["component"] == "5201020105000001"
    assert (shown["lat"], shown["lon"]) == (lamp["lat"], lamp["lon"])

    # Imported again with --replace: the same rows, nothing doubled.
    again = await asyncio.to_thread(
        CliRunner().invoke, components_cli, ["import", str(source), "--replace"], env=env
    )
    assert again.exit_code == 1 and "部件表共 3 个" in again.output
