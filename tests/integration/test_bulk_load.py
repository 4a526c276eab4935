"""The COPY bulk loader (benchmarks/bulk_load.py) writes events the store itself can read and
the auditor verifies: same rows as ``CaseStore.save`` would write, positions in case order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from benchmarks import bulk_load
from core.eventlog import table_name
from core.eventstore import StoreRegistry
from core.refdata import load_reference
from projections.audit.verify import verify_store
from tests.conftest import database_url, make_settings


@pytest.fixture
async def loaded() -> AsyncIterator[dict[str, Any]]:
    settings = make_settings()
    schema = settings.db_schema
    conn = await asyncpg.connect(database_url())
    await conn.execute(f"CREATE SCHEMA {schema}")
    ref = load_reference(settings)
    stores = StoreRegistry(database_url(), schema)
    try:
        await asyncio.to_thread(lambda: [stores.get(p) for p in ref.partitions])
        # Two processes, small chunks: several concurrent COPYs per table.
        result = await asyncio.to_thread(
            bulk_load.load, settings, database_url(), schema, 300, 2, 60
        )
        yield {"result": result, "stores": stores, "schema": schema, "ref": ref, "conn": conn}
    finally:
        stores.close()
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def test_loaded_cases_read_back_and_verify(loaded: dict[str, Any]) -> None:
    result, stores, schema, ref, conn = (
        loaded[k] for k in ("result", "stores", "schema", "ref", "conn")
    )
    assert result["cases"] == 300
    assert len(result["sample"]) == 300
    total = 0
    for p in ref.partitions:
        total += await conn.fetchval(f"SELECT count(*) FROM {schema}.{table_name(p)}")
    assert total == result["events"] > 300

    # Every case reads back through the normal repository, with every event applied.
    by_id = {}
    for p in ref.partitions:
        rows = await conn.fetch(
            f"SELECT originator_id, max(originator_version) AS v, "
            f"array_agg(originator_version ORDER BY notification_id) AS order "
            f"FROM {schema}.{table_name(p)} GROUP BY originator_id"
        )
        for r in rows:
            by_id[str(r["originator_id"])] = (p, r["v"], list(r["order"]))
    assert len(by_id) == 300
    for case_no, case_id in result["sample"][:60]:
        partition, version, order = by_id[case_id]
        assert order == list(range(1, version + 1))  # positions follow the case's versions
        case = await asyncio.to_thread(stores.get(partition).repository.get, UUID(case_id))
        assert case.state.case_no == case_no
        assert case.version == version
        assert case.state.district == partition

    # The audit verification recomputes every hash and chain link: all genuine.
    report = await asyncio.to_thread(verify_store, database_url(), schema)
    assert report.ok, report.as_dict()["first_problem"]
    assert report.events == result["events"]


async def test_rows_equal_what_the_store_writes(loaded: dict[str, Any]) -> None:
    """A case made by the loader's maker and saved by ``CaseStore.save`` gives the same stored
    state bytes as the loader's COPY row for the same events."""
    stores, schema, ref, conn = (loaded[k] for k in ("stores", "schema", "ref", "conn"))
    settings = make_settings(GRID_DB_SCHEMA=schema)
    maker = bulk_load._Maker(settings, database_url(), schema)
    partition = ref.partitions[0]
    task = bulk_load.Task(
        database_url(), schema, partition, "same", bulk_load.plan(ref, "", "", 1)[0].start,
        (0,), "seed",
    )
    copied = list(maker.rows(task, []))
    # The same case again (same seed → same report), this time saved by the store.
    rng = random.Random(task.seed)
    cmd = bulk_load.report_in(ref, "bulk-same-0", task.start, rng, maker.grids[partition])
    (case,) = maker.service.execute(cmd, None, lambda _id: None)
    await asyncio.to_thread(stores.get(partition).save, case)
    stored = await conn.fetchrow(
        f"SELECT originator_id, originator_version, topic, state FROM "
        f"{schema}.{table_name(partition)} WHERE originator_id = $1 AND originator_version = 1",
        case.id,
    )
    first = copied[0]
    assert (first[0], first[1], first[2]) == (
        stored["originator_id"], stored["originator_version"], stored["topic"]
    )
    assert bytes(first[3]) == bytes(stored["state"])
