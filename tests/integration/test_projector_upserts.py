"""The projector's one-statement batch upserts (queue, timeline, metrics and its roll-up):
a batch holding many events of the same case gives exactly the rows of one event per batch;
JSON values and NULLs come back as they went in; a replayed event is ignored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from core import eventlog
from projections.base import POSITIONS_DDL
from projections.metrics import MetricsProjection
from projections.queue import QueueProjection
from projections.rebuild import compare_tables
from projections.timeline import TimelineProjection
from tests.conftest import unique_name
from tests.integration.history import generated_store
from tests.integration.test_rebuild_fast import KEYS, ROLLED_UP

PROJECTIONS = (QueueProjection(), TimelineProjection(), MetricsProjection())


@pytest.fixture
async def envelopes() -> AsyncIterator[dict[str, Any]]:
    async with generated_store(120, seed=11) as generated:
        conn = generated["conn"]
        await conn.execute(f"SET search_path TO {generated['schema']}")
        events = []
        for partition in generated["ref"].partitions:
            events.extend(await eventlog.read_envelopes(conn, partition, 0, 10**9))
        yield {"schema": generated["schema"], "conn": conn, "events": events}


async def _schema(conn: asyncpg.Connection, base: str) -> str:
    name = unique_name(f"{base}_u")
    await conn.execute(f"CREATE SCHEMA {name}")
    await conn.execute(f"SET search_path TO {name}")
    await conn.execute(POSITIONS_DDL)
    for projection in PROJECTIONS:
        await conn.execute(projection.ddl())
    return name


async def _apply(conn: asyncpg.Connection, schema: str, batches: list[list[Any]]) -> None:
    await conn.execute(f"SET search_path TO {schema}")
    for batch in batches:
        async with conn.transaction():
            for projection in PROJECTIONS:
                await projection.apply(conn, batch)


async def test_one_big_batch_equals_one_event_per_batch(envelopes: dict[str, Any]) -> None:
    conn, base, events = envelopes["conn"], envelopes["schema"], envelopes["events"]
    cases = {e["case_id"] for e in events}
    assert len(events) > 2 * len(cases)  # most cases have several events in the big batch
    big = await _schema(conn, base)
    single = await _schema(conn, base)
    try:
        await _apply(conn, big, [events])
        await _apply(conn, single, [[e] for e in events])
        for projection in PROJECTIONS:
            for table in projection.tables:
                assert await compare_tables(conn, single, big, table, KEYS[table]) == [], table
                assert await conn.fetchval(f"SELECT count(*) FROM {big}.{table}") > 0, table
        for s in (big, single):
            assert await conn.fetch(ROLLED_UP.format(s=s)) == [], s
        await conn.execute(f"SET search_path TO {big}")
        # JSON values as they went in (a list stays a list, not a JSON string); NULL is NULL.
        assert await conn.fetchval(
            "SELECT count(*) FROM case_queue WHERE jsonb_typeof(photos) <> 'array' "
            "OR jsonb_typeof(proposal) <> 'object' OR pending_extension = 'null'::jsonb"
        ) == 0
        assert await conn.fetchval(
            "SELECT count(*) FROM case_queue WHERE proposal IS NOT NULL") > 0
        assert await conn.fetchval(
            "SELECT count(*) FROM case_timeline WHERE jsonb_typeof(data) <> 'object'") == 0
        # A replayed event is ignored, also twice within one batch (the first copy is kept).
        e = events[0]
        before = await conn.fetchrow(
            "SELECT * FROM case_timeline WHERE case_id = $1 AND version = $2",
            e["case_id"], e["version"],
        )
        await TimelineProjection().apply(conn, [{**e, "actor": "x"}, {**e, "actor": "y"}])
        after = await conn.fetchrow(
            "SELECT * FROM case_timeline WHERE case_id = $1 AND version = $2",
            e["case_id"], e["version"],
        )
        assert after == before
        await conn.execute(f"DROP SCHEMA {single} CASCADE")
        single = await _schema(conn, base)
        await TimelineProjection().apply(conn, [{**e, "actor": "x"}, {**e, "actor": "y"}])
        assert await conn.fetchval("SELECT actor FROM case_timeline") == "x"
    finally:
        for s in (big, single):
            await conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")


async def test_ddl_on_a_deployment_without_the_roll_up_fills_it(
    envelopes: dict[str, Any],
) -> None:
    conn, base, events = envelopes["conn"], envelopes["schema"], envelopes["events"]
    schema = await _schema(conn, base)
    try:
        await _apply(conn, schema, [events[i : i + 50] for i in range(0, len(events), 50)])
        expected = await conn.fetch("SELECT * FROM metric_counts_daily ORDER BY 1, 2, 3")
        assert expected
        await conn.execute("DROP TABLE metric_counts_daily")
        await conn.execute(MetricsProjection().ddl())
        assert await conn.fetch("SELECT * FROM metric_counts_daily ORDER BY 1, 2, 3") == expected
        await conn.execute(MetricsProjection().ddl())  # again: nothing changes
        assert await conn.fetch("SELECT * FROM metric_counts_daily ORDER BY 1, 2, 3") == expected
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def test_the_live_runners_lock_statement_makes_only_its_commit_asynchronous() -> None:
    """``projection_lock(…, read_model_commit=True)``: one statement takes the locks and sets
    ``synchronous_commit = off`` for this transaction only (the event store's and the relay's
    commits on the same server stay synchronous)."""
    from projections.runner import projection_lock
    from tests.conftest import database_url

    conn = await asyncpg.connect(database_url())
    try:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        async with conn.transaction():
            await projection_lock(conn, "queue", "map", read_model_commit=True)
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
                "pg_backend_pid()")
            assert held == 2
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await conn.close()
