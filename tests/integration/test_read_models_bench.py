"""``python -m benchmarks.read_models`` with tiny numbers: every read model of the
projector process applies the stored reports, both CPU figures are taken, the table names
each model, and the scratch schema is gone afterwards. (No speed is asserted.)"""

from __future__ import annotations

import asyncpg

from benchmarks.read_models import measure, projector_models, render
from tests.conftest import database_url, unique_name


async def test_each_read_model_is_measured_and_the_scratch_schema_dropped() -> None:
    schema = unique_name("bench_rm")
    results = await measure(database_url(), 24, [1, 6], 2, schema)
    names = {type(m).__name__ for m in projector_models()}
    assert set(results) == {1, 6}
    for per_model in results.values():
        assert set(per_model) == names
        for rounds in per_model.values():
            assert len(rounds) == 2
            assert all(client > 0 and server >= 0 for client, server in rounds)
    table = render(results, 2)
    assert "Batches of 6" in table and "| QueueProjection |" in table and "| **all** |" in table
    conn = await asyncpg.connect(database_url())
    try:
        left = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema)
    finally:
        await conn.close()
    assert left == 0
