"""Nearby duplicates against the running system: ``GET /v1/cases/nearby`` lists open cases of
the same category within the radius and window, nearest first, in the caller's jurisdiction;
the dispatcher links the new report with the existing ``mark_duplicate`` action, after which
it is no longer listed."""

from __future__ import annotations

from typing import Any

from tests.conftest import auth_headers, eventually

GRID = "520102001001"
METRE = 1 / 111_195  # degrees of latitude


async def test_nearby_open_cases_of_the_category_and_linking(system: dict[str, Any]) -> None:
    client, runtime = system["client"], system["runtime"]
    lat, lon = runtime.ref.jurisdiction.grid(GRID).centroid
    taker = await auth_headers(client, "call_taker")
    made: dict[str, str] = {}
    for name, category, north in [
        ("here", "SJ0101", 0), ("50m", "SJ0101", 50), ("other", "SJ0102", 20),
        ("300m", "SJ0101", 300), ("new", "SJ0101", 5),
    ]:
        body = {"category": category, "lat": lat + north * METRE, "lon": lon,
                "description": f"垃圾 {name}", "source": "hotline"}
        answer = await client.post("/v1/reports", json=body,
                                   headers={**taker, "Idempotency-Key": f"nearby-{name}-0001"})
        assert answer.status_code == 202, answer.text
        made[name] = answer.json()["case_no"]
    dispatcher = await auth_headers(client)
    query = {"lat": lat + 5 * METRE, "lon": lon, "category": "SJ0101", "exclude": made["new"]}

    async def listed() -> Any:
        r = await client.get("/v1/cases/nearby", params=query, headers=dispatcher)
        assert r.status_code == 200, r.text
        return r.json() if r.json()["count"] == 2 else None

    found = await eventually(listed)
    assert [c["case_no"] for c in found["items"]] == [made["here"], made["50m"]]
    assert [round(c["distance_m"]) for c in found["items"]] == [5, 45]
    assert found["action"] == "mark_duplicate" and found["radius_m"] == 100
    wide = await client.get("/v1/cases/nearby", params={**query, "radius_m": 400},
                            headers=dispatcher)
    assert [c["case_no"] for c in wide.json()["items"]][-1] == made["300m"]
    old = await client.get("/v1/cases/nearby", params={**query, "days": 1},
                           headers=dispatcher)
    assert old.json()["count"] == 2  # reported just now: inside a one-day window
    refused = await client.get("/v1/cases/nearby", params={**query, "category": "NOPE"},
                               headers=dispatcher)
    assert refused.status_code == 422
    assert (await client.get("/v1/cases/nearby", params=query)).status_code == 401
    # An inspector of another district sees none of them.
    other = await auth_headers(client, "inspector-520103001001")
    assert (await client.get("/v1/cases/nearby", params=query, headers=other)).json()[
        "count"] == 0

    # Same problem → link as duplicate (the registry's mark_duplicate), then it is gone.
    linked = await client.post(
        f"/v1/cases/{made['new']}/actions/mark_duplicate",
        json={"of_case_no": made["here"], "reason": "同一处垃圾"}, headers=dispatcher,
    )
    assert linked.status_code == 200, linked.text
    query.pop("exclude")

    async def merged_gone() -> Any:
        r = await client.get("/v1/cases/nearby", params=query, headers=dispatcher)
        numbers = [c["case_no"] for c in r.json()["items"]]
        return numbers if made["new"] not in numbers else None

    assert await eventually(merged_gone) == [made["here"], made["50m"]]
