"""``POST /v1/reports/batch``: an inspector's offline queue (or a hotline forwarder) in one
request — every good item becomes exactly one case, every bad one is refused on its own."""

from __future__ import annotations

from typing import Any

from core.ids import case_no_for_key
from tests.conftest import auth_headers, eventually
from tests.integration.test_flow import get_case, report_body


def _item(system: dict[str, Any], key: str | None, **overrides: Any) -> dict[str, Any]:
    j = system["runtime"].ref.jurisdiction
    grid = j.grid(sorted(j.grids)[0])
    body = report_body(**{"category": "SJ0101", "grid": grid.code, **overrides})
    if key is not None:
        body["idempotency_key"] = key
    return body


async def test_batch_accepts_good_items_and_refuses_bad_ones_alone(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "call_taker")
    items = [
        _item(system, "batch-key-0001"),
        _item(system, "batch-key-0002", category="NOPE"),  # unknown category
        _item(system, None),  # no idempotency key: a retry could not be recognised
        _item(system, "batch-key-0003", colour="red"),  # unknown field
        _item(system, "batch-key-0004", lat=0.0, lon=0.0, grid=None),  # outside the city
        _item(system, "batch-key-0001"),  # same key twice in one batch
        _item(system, "batch-key-0005"),
    ]
    response = await client.post("/v1/reports/batch", json={"reports": items}, headers=headers)
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["accepted"], out["refused"], out["duplicates"]) == (2, 5, 0)
    results = out["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [
        "accepted", "refused", "refused", "refused", "refused", "refused", "accepted",
    ]
    assert results[0]["case_no"] == case_no_for_key("batch-key-0001")
    assert results[6]["case_no"] == case_no_for_key("batch-key-0005")
    assert results[1]["error"] == "unknown_category" and results[1]["http_status"] == 422
    assert results[1]["idempotency_key"] == "batch-key-0002"
    assert results[2]["error"] == "missing_idempotency_key"
    assert results[3]["error"] == "validation_error" and "colour" in results[3]["message"]
    assert results[4]["error"] == "outside_city" and "bounds" in results[4]["details"]
    assert results[5]["error"] == "duplicate_in_batch"
    for index in (0, 6):
        case = await eventually(lambda i=index: get_case(client, results[i]["case_no"]))
        assert case["status"] == "reported" and case["category"] == "SJ0101"


async def test_batch_sent_again_creates_no_second_case(system: dict[str, Any]) -> None:
    """The phone lost the answer and sends the same queue again: same case numbers,
    flagged as duplicates, and still one case each."""
    client = system["client"]
    headers = await auth_headers(client, "call_taker")
    items = [_item(system, f"batch-again-{i:04d}") for i in range(5)]
    first = await client.post("/v1/reports/batch", json={"reports": items}, headers=headers)
    assert first.status_code == 200 and first.json()["accepted"] == 5
    again = await client.post("/v1/reports/batch", json={"reports": items}, headers=headers)
    body = again.json()
    assert body["accepted"] == 5 and body["duplicates"] == 5
    assert [r["case_no"] for r in body["results"]] == [
        r["case_no"] for r in first.json()["results"]
    ]
    for r in body["results"]:
        await eventually(lambda no=r["case_no"]: get_case(client, no))
    listing = await client.get(
        "/v1/cases", params={"limit": 200}, headers=await auth_headers(client)
    )
    numbers = [c["case_no"] for c in listing.json()["items"]]
    for r in body["results"]:
        assert numbers.count(r["case_no"]) == 1


async def test_batch_limits_and_access(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "call_taker")
    empty = await client.post("/v1/reports/batch", json={"reports": []}, headers=headers)
    assert empty.status_code == 422 and empty.json()["error"] == "validation_error"
    too_many = [_item(system, f"batch-many-{i:04d}") for i in range(101)]
    big = await client.post("/v1/reports/batch", json={"reports": too_many}, headers=headers)
    assert big.status_code == 422
    anonymous = await client.post("/v1/reports/batch", json={"reports": too_many[:1]})
    assert anonymous.status_code == 401
    dispatcher = await client.post(
        "/v1/reports/batch",
        json={"reports": too_many[:1]},
        headers=await auth_headers(client, "dispatcher"),
    )
    assert dispatcher.status_code == 403 and dispatcher.json()["error"] == "forbidden"
