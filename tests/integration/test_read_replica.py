"""The command centre's read-model queries on a real streaming replica.

An embedded primary and a hot standby made from it with ``pg_basebackup -R`` (both from the
pgserver wheel, free ports): reports written through the primary appear in the queue, map and
metrics answered by the replica; the replica refuses writes; when it dies the command centre
keeps answering from the primary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from core.embedded import EmbeddedPostgres, EmbeddedReplica
from tests.conftest import auth_headers, eventually, make_settings, nats_url

pytestmark = pytest.mark.slow


@pytest.fixture
async def replicated(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    from gateways.bootstrap import ROLES, Runtime
    from gateways.http.app import create_app

    primary = EmbeddedPostgres(tmp_path / "primary", settings={"max_connections": "100"})
    primary.start()
    replica = EmbeddedReplica(tmp_path / "replica", primary)
    runtime = None
    try:
        replica.start()
        settings = make_settings(DATABASE_READ_URL=replica.url)
        runtime = await Runtime.open(settings, nats_url(), primary.url)
        runtime.start(ROLES)
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield {"runtime": runtime, "client": client, "primary": primary, "replica": replica}
    finally:
        if runtime is not None:
            from core.messaging import delete_streams

            await delete_streams(runtime.js, runtime.topo)  # on the shared NATS
            await runtime.close()
        replica.stop()
        primary.stop()


async def _queue(client: httpx.AsyncClient) -> list[str]:
    r = await client.get("/v1/queue", params={"limit": 100}, headers=await auth_headers(client))
    return [c["case_no"] for c in r.json()["items"]] if r.status_code == 200 else []


async def test_centre_reads_from_the_replica_and_falls_back_to_the_primary(
    replicated: dict[str, Any],
) -> None:
    runtime, client = replicated["runtime"], replicated["client"]
    grid = sorted(runtime.ref.jurisdiction.grids)[0]
    numbers = []
    for i in range(3):
        r = await client.post(
            "/v1/reports",
            json={"category": "SJ0101", "grid": grid, "description": f"replica {i}"},
            headers={**await auth_headers(client, "call_taker"),
                     "Idempotency-Key": f"replica-key-{i:04d}"},
        )
        assert r.status_code == 202, r.text
        numbers.append(r.json()["case_no"])

    # The read pool is the standby's, and it is read-only.
    reads = await runtime.reads()
    assert reads is runtime.read_pool and reads is not runtime.pool
    async with reads.acquire() as conn:
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is True
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("CREATE TABLE written_on_a_replica (x int)")

    # Written on the primary, streamed to the replica, answered from it.
    listed = await eventually(lambda: _has_all(client, numbers))
    assert set(numbers) <= set(listed)
    headers = await auth_headers(client)
    map_counts = await client.get("/v1/map", headers=headers)
    assert map_counts.status_code == 200
    metrics = await client.get("/v1/metrics", headers=headers)
    assert metrics.status_code == 200

    # The replica dies: at most one request fails, then the primary answers.
    replicated["replica"].stop()
    await eventually(lambda: _has_all(client, numbers), timeout=20)
    assert runtime.read_pool is None
    assert (await runtime.reads()) is runtime.pool


async def _has_all(client: httpx.AsyncClient, numbers: list[str]) -> list[str] | None:
    listed = await _queue(client)
    return listed if set(numbers) <= set(listed) else None
