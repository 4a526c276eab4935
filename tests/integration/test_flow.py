"""The walking skeleton end to end on real NATS and PostgreSQL:
HTTP report → JetStream → worker → event store → relay → EVENTS → projection → HTTP read."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from core.eventlog import table_name
from core.ids import case_no_for_key
from tests.conftest import auth_headers, database_url, eventually


def report_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category": "SJ0101",
        "grid": None,
        "lat": None,
        "lon": None,
        "description": "南明區路口垃圾堆積，影響通行 (garbage piled at the crossing)",
        "reporter": {"name": "張三", "phone": "13800000000", "type": "citizen"},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def first_grid(system: dict[str, Any]) -> Any:
    j = system["runtime"].ref.jurisdiction
    return j.grid(sorted(j.grids)[0])


async def get_case(client: Any, case_no: str) -> dict[str, Any] | None:
    response = await client.get(f"/v1/cases/{case_no}", headers=await auth_headers(client))
    return response.json() if response.status_code == 200 else None


async def test_report_by_location_becomes_visible(system: dict[str, Any]) -> None:
    client = system["client"]
    grid = await first_grid(system)
    lat, lon = grid.centroid
    category = system["runtime"].ref.catalogue.all()[0].code
    response = await client.post(
        "/v1/reports",
        json=report_body(category=category, lat=lat, lon=lon),
        headers={**await auth_headers(client, "call_taker"), "Idempotency-Key": "flow-key-0001"},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["case_no"] == case_no_for_key("flow-key-0001")
    assert accepted["grid"] == grid.code
    case = await eventually(lambda: get_case(client, accepted["case_no"]))
    assert case["status"] == "reported"
    assert case["grid"] == grid.code
    assert case["category"] == category
    assert case["district"] == system["runtime"].ref.jurisdiction.partition_of(grid.code)
    assert case["timeline"][0]["type"] == "Reported"
    listing = await client.get(
        "/v1/cases",
        params={"status": "reported", "district": case["district"]},
        headers=await auth_headers(client),
    )
    assert accepted["case_no"] in [c["case_no"] for c in listing.json()["items"]]


async def test_same_key_twice_gives_one_case(system: dict[str, Any]) -> None:
    client = system["client"]
    grid = await first_grid(system)
    category = system["runtime"].ref.catalogue.all()[1].code
    body = report_body(category=category, grid=grid.code)
    headers = {**await auth_headers(client, "call_taker"), "Idempotency-Key": "dup-key-0001"}
    first = await client.post("/v1/reports", json=body, headers=headers)
    second = await client.post("/v1/reports", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["case_no"] == second.json()["case_no"]
    assert second.json()["duplicate"] is True
    await eventually(lambda: get_case(client, first.json()["case_no"]))
    partition = first.json()["district"]
    conn = await asyncpg.connect(database_url())
    try:
        count = await conn.fetchval(
            f"SELECT count(*) FROM {system['settings'].db_schema}.{table_name(partition)} "
            "WHERE originator_version = 1 AND originator_id = $1",
            __import__("uuid").UUID(first.json()["case_id"]),
        )
    finally:
        await conn.close()
    assert count == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"category": "NOPE", "grid": "x", "description": "d"}, "unknown_category"),
        ({"description": "d"}, "validation_error"),
        ({"category": "SJ0101", "lat": 39.9, "lon": 116.4, "description": "d"}, "outside_city"),
        ({"category": "SJ0101", "grid": "999", "description": "d"}, "unknown_grid"),
        ({"category": "SJ0101", "description": "d"}, "missing_location"),
        ({"category": "SJ0101", "grid": "x", "description": "d", "extra": 1}, "validation_error"),
    ],
)
async def test_bad_reports_are_refused_clearly(
    system: dict[str, Any], body: dict[str, Any], error: str
) -> None:
    client = system["client"]
    response = await client.post(
        "/v1/reports", json=body, headers=await auth_headers(client, "call_taker")
    )
    assert response.status_code == 422
    assert response.json()["error"] == error
    assert response.json()["message"]


async def test_reference_data(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "inspector")
    cats = (await client.get("/v1/categories", headers=headers)).json()
    assert len(cats["items"]) >= 30
    grids = (await client.get("/v1/grids", headers=headers)).json()
    assert grids["count"] >= 66
    first = grids["items"][0]
    assert {"code", "name_zh", "community", "lat", "lon"} <= set(first)
