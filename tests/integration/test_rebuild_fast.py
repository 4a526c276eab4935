"""The fast rebuild (projections/bulk.py: fold in memory, COPY, indexes after) gives exactly
the rows of the live path (``apply_batch`` per batch), for every table of every read model,
on a realistic history (returns, escalations, extensions, lights, visits, duplicates)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from projections.base import POSITIONS_DDL
from projections.read_models import all_projections
from projections.rebuild import build_scratch, compare_tables, replay_into
from tests.conftest import database_url, unique_name
from tests.integration.history import generated_store

KEYS = {
    "case_queue": "case_id",
    "case_timeline": "case_id || ':' || version",
    "map_cases": "case_id",
    "map_grid_counts": "grid",
    "metric_counts": "counter || day || grid || level || department || inspector",
    "metric_case_state": "case_id",
    "metric_counts_daily": "counter || day || grid",
}

#: metric_counts_daily is metric_counts summed over level, department and inspector.
ROLLED_UP = (
    "WITH a AS (SELECT counter, day, grid, min(community) AS community, min(district) AS "
    "district, sum(value)::bigint AS value FROM {s}.metric_counts GROUP BY 1, 2, 3), "
    "b AS (SELECT counter, day, grid, community, district, value FROM {s}.metric_counts_daily) "
    "(SELECT * FROM a EXCEPT SELECT * FROM b) UNION ALL (SELECT * FROM b EXCEPT SELECT * FROM a)"
)


@pytest.fixture
async def store() -> AsyncIterator[dict[str, Any]]:
    async with generated_store(500, seed=7) as generated:
        yield generated


@pytest.mark.parametrize("jobs", [1, 2])
async def test_fast_rebuild_equals_apply_batch(store: dict[str, Any], jobs: int) -> None:
    schema, stores, ref, conn = (store[k] for k in ("schema", "stores", "ref", "conn"))
    partitions = ref.partitions
    for projection in all_projections():
        live, fast = unique_name(f"{schema}_l"), unique_name(f"{schema}_f")
        try:  # both scratch schemas go, whatever fails (a failed apply leaked them)
            await conn.execute(f"CREATE SCHEMA {live}")
            await conn.execute(f"SET search_path TO {live}")
            await conn.execute(POSITIONS_DDL)
            await conn.execute(projection.ddl())
            # Small odd batches: the live path's per-batch rules (forgetting finished cases)
            # run often.
            applied = await replay_into(conn, projection, stores, partitions, batch=333)
            assert applied == store["events"]
            fconn, events = await build_scratch(
                database_url(), fast, projection, stores, partitions, store_schema=schema,
                jobs=jobs,
            )
            await fconn.close()
            assert events == store["events"]
            for table in projection.tables:
                assert await compare_tables(conn, live, fast, table, KEYS[table]) == [], table
                n = await conn.fetchval(f"SELECT count(*) FROM {fast}.{table}")
                assert n > 0, table
            positions = [
                await conn.fetch(
                    f"SELECT partition, position FROM {s}.projection_positions "
                    "ORDER BY partition"
                )
                for s in (live, fast)
            ]
            assert positions[0] == positions[1]
            if projection.name == "metrics":
                for s in (live, fast):
                    assert await conn.fetch(ROLLED_UP.format(s=s)) == [], s
            # Indexes and keys came back under their own names.
            for s in (live, fast):
                await conn.execute(f"SET search_path TO {s}")
            idx = [
                await conn.fetch(
                    "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = $1 "
                    "AND tablename <> 'projection_positions' ORDER BY 1, 2", s
                )
                for s in (live, fast)
            ]
            assert [tuple(r) for r in idx[0]] == [tuple(r) for r in idx[1]]
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {live} CASCADE")
            await conn.execute(f"DROP SCHEMA IF EXISTS {fast} CASCADE")


async def test_centre_snapshots_and_capped_totals(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The centre's state-now counters read from ``map_grid_counts`` equal the count over
    ``map_cases``; ``with_total`` is exact up to the cap, an estimate (flagged) above it."""
    from gateways.http import centre
    from projections import metrics as m
    from projections.map import MapProjection
    from projections.queue import QueueProjection

    schema, stores, ref, conn = (store[k] for k in ("schema", "stores", "ref", "conn"))
    scratches = [unique_name(f"{schema}_c"), unique_name(f"{schema}_c")]
    try:
        pairs = zip(scratches, (MapProjection(), QueueProjection()), strict=True)
        for scratch, projection in pairs:
            c, _ = await build_scratch(
                database_url(), scratch, projection, stores, ref.partitions, store_schema=schema
            )
            await c.close()
        await conn.execute(f"SET search_path TO {', '.join(scratches)}")
        district = ref.partitions[0]
        some = ref.jurisdiction.grids_under(district)[:5]
        for grids in (None, some):
            for group in (None, "grid", "community", "district"):
                fast = await centre._snapshots(
                    conn, grids, group, {"department": None, "level": None, "inspector": None}
                )
                slow = await m.snapshot_counters(conn, grids, group)
                assert fast == slow and fast, (grids, group)

        class Q:  # the pieces of QueueSql that _total uses
            where = "district = $1"
            count = centre.QueueSql.count
            estimate = centre.QueueSql.estimate

        q: Any = Q()
        q.params = [district]
        exact = await conn.fetchval(f"SELECT count(*) FROM case_queue WHERE {q.where}", district)
        assert await centre._total(conn, q) == (exact, True)
        monkeypatch.setattr(centre, "TOTAL_EXACT_UPTO", 10)
        total, is_exact = await centre._total(conn, q)
        assert not is_exact and total >= 11
    finally:
        for scratch in scratches:
            await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")


async def test_rebuild_swap_keeps_the_metrics_roll_up_live(store: dict[str, Any]) -> None:
    """After a rebuild's swap ``metric_counts_daily`` equals ``metric_counts`` summed (the
    rebuild fills it after its COPY), no roll-up trigger is left behind, and the live
    projector's own batch statement keeps the roll-up equal from there (also through counts
    that reach zero); the centre's roll-up query equals ``sum_counters``."""
    from datetime import date

    from gateways.http import centre
    from projections import metrics as m
    from projections.metrics import MetricsProjection
    from projections.rebuild import rebuild

    schema, stores, ref, conn = (store[k] for k in ("schema", "stores", "ref", "conn"))
    for _ in range(2):  # the second swap replaces tables that exist already
        await rebuild(database_url(), schema, MetricsProjection(), stores, ref.partitions)
    triggers = await conn.fetch(
        "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = 'metric_counts' AND NOT t.tgisinternal",
        schema,
    )
    assert triggers == []
    assert await conn.fetch(ROLLED_UP.format(s=schema)) == []
    rebuilt = await conn.fetch(f"SELECT * FROM {schema}.metric_counts_daily ORDER BY 1, 2, 3")
    assert rebuilt
    # The live path from nothing, in odd batches: the same roll-up, batch by batch.
    await conn.execute(f"SET search_path TO {schema}")
    for table in MetricsProjection.tables:
        await conn.execute(f"DELETE FROM {table}")
    await conn.execute("DELETE FROM projection_positions WHERE projection = 'metrics'")
    await replay_into(conn, MetricsProjection(), stores, ref.partitions, batch=97)
    assert await conn.fetch(ROLLED_UP.format(s=schema)) == []
    assert await conn.fetch("SELECT * FROM metric_counts_daily ORDER BY 1, 2, 3") == rebuilt
    # The centre reads the roll-up when no department / level / inspector filter applies.
    none = {"department": None, "level": None, "inspector": None}
    some = ref.jurisdiction.grids_under(ref.partitions[0])[:4]
    for grids in (None, some):
        for group in (None, *(m.GROUPS_SQL[g] for g in ("day", "week", "month", "grid",
                                                        "community", "district"))):
            args = (date(2000, 1, 1), date(2100, 1, 1), grids, group)
            fast = await centre._flows(conn, *args, none)
            assert fast == await m.sum_counters(conn, *args) and fast, (grids, group)
