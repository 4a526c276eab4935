"""Standard addresses against the running system: ``gridctl places import`` (progress, the
rejected rows' report) into the test's schema, ``GET /v1/places`` (exact, prefix, pinyin
initials, full pinyin, POI names, roads first) and a report that picks a place."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gateways.cli_places import app as places_cli
from tests.conftest import auth_headers, database_url, eventually

GRID = "520102001001"


async def test_import_search_and_report_with_a_place(
    system: dict[str, Any], tmp_path: Path
) -> None:
    client, runtime, settings = system["client"], system["runtime"], system["settings"]
    lat, lon = runtime.ref.jurisdiction.grid(GRID).centroid
    rows = [
        "road,number,building,poi,lat,lon",
        f"中华北路,12,,,{lat},{lon}",
        f"中华北路,14,2栋,,{lat + 0.0003},{lon}",
        f"中华北路,83,,贵州省人民医院,{lat + 0.0006},{lon}",
        f"中山西路,1,,,{lat},{lon + 0.0004}",
        f"北京路,5,,,{lat - 0.0004},{lon}",
        f",,,,{lat},{lon}",
        "中华北路,99,,,39.9,116.4",
    ]
    source = tmp_path / "addresses.csv"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejected.csv"
    env = {"DATABASE_URL": database_url(), "GRID_DB_SCHEMA": settings.db_schema,
           "GRID_CITY": str(settings.city_dir), "COLUMNS": "160"}
    result = await asyncio.to_thread(
        CliRunner().invoke, places_cli,
        ["import", str(source), "--rejects", str(rejects)], env=env,
    )
    assert result.exit_code == 1, result.output  # some rows were rejected
    assert "已导入 5 个地址和兴趣点" in result.output and "3 条道路" in result.output
    assert "拒收 2 行" in result.output and "不在贵阳市范围内" in result.output
    assert "既无道路也无兴趣点名称" in result.output
    written = rejects.read_text(encoding="utf-8-sig").splitlines()
    assert written[0] == "line,reason,row" and len(written) == 3

    headers = await auth_headers(client, "call_taker")

    async def search(q: str) -> list[dict[str, Any]]:
        answer = await client.get("/v1/places", params={"q": q}, headers=headers)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])

    found = await search("中华北路")
    assert [p["label"] for p in found][:1] == ["中华北路"]  # the road first
    assert {p["label"] for p in found} == {
        "中华北路", "中华北路12号", "中华北路14号2栋", "贵州省人民医院（中华北路83号）"
    }
    assert [p["label"] for p in await search("中华北路1")] == ["中华北路12号", "中华北路14号2栋"]
    assert [p["label"] for p in await search("中华北路 １２")] == ["中华北路12号"]  # full width
    initials = await search("zhbl")
    assert initials[0]["label"] == "中华北路" and len(initials) == 4
    assert {p["label"] for p in await search("zh")} >= {"中华北路", "中山西路"}
    assert [p["label"] for p in await search("zhonghuabeilu12")] == ["中华北路12号"]
    hospital = await search("贵州省人民")
    assert [p["kind"] for p in hospital] == ["poi"] and hospital[0]["grid"] == GRID
    assert [p["label"] for p in await search("gzsrmyy")] == ["贵州省人民医院（中华北路83号）"]
    assert await search("南京路") == []
    async with runtime.pool.acquire() as conn:  # substrings where the server has pg_trgm
        trgm = await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
    if trgm:
        assert [p["label"] for p in await search("人民医院")] == ["贵州省人民医院（中华北路83号）"]
    assert (await client.get("/v1/places", params={"q": ""}, headers=headers)).status_code == 422
    assert (await client.get("/v1/places", params={"q": "x"})).status_code == 401

    # A report that picks the hospital: its label is the address, its point the location.
    place = hospital[0]
    one = await client.get(f"/v1/places/{place['id']}", headers=headers)
    assert one.json() == place
    assert (await client.get("/v1/places/P000", headers=headers)).status_code == 404
    body = {"category": "SJ0101", "description": "医院门口垃圾", "source": "hotline",
            "place_id": place["id"], "reporter": {"name": "张三", "phone": "13800000000"}}
    accepted = await client.post("/v1/reports", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["grid"] == GRID
    unknown = await client.post("/v1/reports", json={**body, "place_id": "P-none"},
                                headers=headers)
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_place"
    dispatcher = await auth_headers(client)

    async def case() -> Any:
        r = await client.get(f"/v1/cases/{accepted.json()['case_no']}", headers=dispatcher)
        return r.json() if r.status_code == 200 else None

    shown = await eventually(case)
    assert shown["address"] == "贵州省人民医院（中华北路83号）"
    assert (shown["lat"], shown["lon"]) == (place["lat"], place["lon"])
    assert shown["timeline"][0]["data"]["place_id"] == place["id"]
    queue = await client.get("/v1/queue", headers=dispatcher)
    assert "贵州省人民医院（中华北路83号）" in queue.text
