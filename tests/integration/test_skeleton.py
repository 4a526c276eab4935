"""Issue 3's guarantees on real services: concurrency, restarts, rebuilds, refusals."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from core.eventlog import table_name
from gateways.bootstrap import Runtime, all_projections
from projections.rebuild import rebuild
from tests.conftest import (
    auth_headers,
    commands_waiting,
    database_url,
    eventually,
    worker_pulls_expired,
)


def _body(grid: str, category: str, text: str) -> dict[str, Any]:
    return {"category": category, "grid": grid, "description": text,
            "reporter": {"name": "李四", "phone": "13900000000"}}


async def _count_cases(system: dict[str, Any], status: str = "reported") -> int:
    rt: Runtime = system["runtime"]
    async with rt.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM case_queue WHERE status = $1", status))


async def _stream_messages(rt: Runtime) -> int:
    info = await rt.js.stream_info(rt.topo.commands_stream)
    return int(info.state.messages)


async def test_hundred_concurrent_reports_make_hundred_cases(system: dict[str, Any]) -> None:
    client, rt = system["client"], system["runtime"]
    grids = sorted(rt.ref.jurisdiction.grids)
    category = rt.ref.catalogue.all()[0].code
    auth = await auth_headers(client, "call_taker")
    responses = await asyncio.gather(*[
        client.post("/v1/reports", json=_body(grids[i % len(grids)], category, f"report {i}"),
                    headers={**auth, "Idempotency-Key": f"concurrent-{i:04d}"})
        for i in range(100)
    ])
    assert all(r.status_code == 202 for r in responses)
    numbers = {r.json()["case_no"] for r in responses}
    assert len(numbers) == 100
    await eventually(lambda: _count_ok(system, 100), timeout=30)
    async with rt.pool.acquire() as conn:
        listed = {r["case_no"] for r in await conn.fetch("SELECT case_no FROM case_queue")}
    assert listed == numbers
    # The stored events and the read-model rows agree, case by case.
    stored = 0
    conn = await asyncpg.connect(database_url())
    try:
        for partition in rt.ref.partitions:
            stored += await conn.fetchval(
                f"SELECT count(*) FROM {system['settings'].db_schema}.{table_name(partition)}"
            )
    finally:
        await conn.close()
    assert stored == 100


async def _count_ok(system: dict[str, Any], n: int) -> bool:
    return await _count_cases(system) == n


async def test_reports_queued_while_worker_down_become_one_case_each(
    system: dict[str, Any],
) -> None:
    client, rt = system["client"], system["runtime"]
    auth = await auth_headers(client, "call_taker")
    await rt.stop_role("worker")  # relay and projector keep running
    # The cancelled worker's last pull request lives on in the server for its 0.5 s expiry; a
    # report arriving meanwhile is handed to it and redelivered only after the ack wait.
    await eventually(lambda: worker_pulls_expired(rt))
    grid = sorted(rt.ref.jurisdiction.grids)[3]
    category = rt.ref.catalogue.all()[2].code
    numbers = []
    for i in range(20):
        r = await client.post("/v1/reports", json=_body(grid, category, f"queued {i}"),
                              headers={**auth, "Idempotency-Key": f"queued-{i:04d}"})
        assert r.status_code == 202
        numbers.append(r.json()["case_no"])
    # Resend half of them while still down: the broker deduplicates.
    for i in range(10):
        await client.post("/v1/reports", json=_body(grid, category, f"queued {i}"),
                          headers={**auth, "Idempotency-Key": f"queued-{i:04d}"})
    # All 20 are on the stream, and no worker took one: nothing can have been stored.
    await eventually(lambda: commands_waiting(rt, 20))
    assert await _count_cases(system) == 0
    rt.start(["worker"])  # a fresh worker on the same durable consumers
    await eventually(lambda: _count_ok(system, 20), timeout=30)
    async with rt.pool.acquire() as conn:
        listed = sorted(r["case_no"] for r in await conn.fetch("SELECT case_no FROM case_queue"))
    assert listed == sorted(numbers)


async def test_rebuild_gives_identical_rows(system: dict[str, Any]) -> None:
    client, rt = system["client"], system["runtime"]
    grids = sorted(rt.ref.jurisdiction.grids)
    category = rt.ref.catalogue.all()[0].code
    auth = await auth_headers(client, "call_taker")
    for i in range(30):
        await client.post("/v1/reports", json=_body(grids[i], category, f"rebuild {i}"),
                          headers={**auth, "Idempotency-Key": f"rebuild-{i:04d}"})
    await eventually(lambda: _count_ok(system, 30), timeout=30)
    schema = system["settings"].db_schema
    async with rt.pool.acquire() as conn:
        before = [dict(r) for r in await conn.fetch("SELECT * FROM case_queue ORDER BY case_no")]
        timeline_before = await conn.fetch("SELECT * FROM case_timeline ORDER BY case_id, version")
    for projection in all_projections():
        result = await rebuild(database_url(), schema, projection, rt.stores, rt.ref.partitions)
        assert result.events == 30
    async with rt.pool.acquire() as conn:
        after = [dict(r) for r in await conn.fetch("SELECT * FROM case_queue ORDER BY case_no")]
        timeline_after = await conn.fetch("SELECT * FROM case_timeline ORDER BY case_id, version")
    assert after == before
    assert [dict(r) for r in timeline_after] == [dict(r) for r in timeline_before]
    # The live projector keeps working after the swap.
    await client.post("/v1/reports", json=_body(grids[40], category, "after rebuild"),
                      headers={**auth, "Idempotency-Key": "rebuild-after"})
    await eventually(lambda: _count_ok(system, 31), timeout=30)


async def test_invalid_bodies_publish_nothing(system: dict[str, Any]) -> None:
    client, rt = system["client"], system["runtime"]
    grid = sorted(rt.ref.jurisdiction.grids)[0]
    category = rt.ref.catalogue.all()[0].code
    before = await _stream_messages(rt)
    cases = [
        (_body(grid, category, "x" * 1_000_000), "description"),
        ({"grid": grid, "description": "no category"}, "category"),
        (_body(grid, "NO-SUCH", "unknown category"), "category"),
        ({**_body(grid, category, "bad phone"), "reporter": {"phone": "call me"}}, "reporter"),
        ({"category": category, "lat": 26.6, "description": "lat without lon"}, None),
    ]
    auth = await auth_headers(client, "call_taker")
    for body, field in cases:
        response = await client.post("/v1/reports", json=body, headers=auth)
        assert response.status_code == 422, response.text
        payload = response.json()
        assert payload["error"]
        if field:
            assert field in (payload.get("field") or "") or any(
                field in p["field"] for p in payload.get("problems", [])
            ), payload
    assert await _stream_messages(rt) == before


async def test_readiness_and_request_ids(system: dict[str, Any]) -> None:
    client = system["client"]
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"nats": True, "postgres": True, "consumers": True}
    response = await client.get("/healthz", headers={"X-Request-Id": "req-" + uuid.uuid4().hex})
    assert response.headers["X-Request-Id"].startswith("req-")

