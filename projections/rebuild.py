"""Rebuild read models from the event store, and check live read models against a rebuild.

Why a scratch schema and a swap: the live projector keeps running while a rebuild replays
millions of events. The rebuild fills fresh tables in a scratch schema, then — holding the
projection's advisory lock, which ``apply_batch`` also takes — catches up to the head of the
store, drops the live tables and moves the rebuilt ones in, and writes the positions. The live
projector then simply continues: everything at or below the new positions is skipped.

How the scratch tables are filled: for the four read models, ``projections/bulk.py`` folds
each partition's events in memory with the projections' own pure functions and COPYs the
final rows, with the tables' indexes and keys dropped during the load and built afterwards,
one process per core for big stores (about ten times the events/s of replaying through
``apply_batch``, which remains the path of the catch-up under the lock and of ``fast=False``;
tests/integration/test_rebuild_fast.py shows both give identical tables).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from core import eventlog
from core.db import check_schema
from core.eventstore import StoreRegistry
from core.logging import get_logger
from projections import bulk
from projections.base import POSITIONS_DDL, Projection
from projections.runner import apply_batch, projection_lock

Progress = Callable[[int, int], None]  # (events done, events total)
log = get_logger("rebuild")
#: From this many events on, a fast rebuild folds partitions in parallel processes (one per
#: core; measured on 2 cores: even at 20,000 events, 1.3-1.4 times the events/s at 67,000).
PARALLEL_FROM = 30_000


@dataclass
class RebuildResult:
    projection: str
    events: int
    positions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0




async def replay_into(
    conn: asyncpg.Connection,
    projection: Projection,
    stores: StoreRegistry,
    partitions: Sequence[str],
    start: dict[str, int] | None = None,
    batch: int = 5000,
    progress: Progress | None = None,
) -> int:
    """Feed the store's events (after ``start``, up to each partition's head) through
    ``apply_batch`` on ``conn``."""
    heads = {p: await eventlog.head(conn, p, stores.schema) for p in partitions}
    positions = dict(start or {})
    total = sum(max(0, heads[p] - positions.get(p, 0)) for p in partitions)
    report = None if progress is None else (lambda done: progress(done, total))
    return await replay_range(conn, projection, stores, positions, heads, batch, report)


async def replay_range(
    conn: asyncpg.Connection,
    projection: Projection,
    stores: StoreRegistry,
    start: dict[str, int],
    end: dict[str, int],
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Apply each partition's events in ``(start[p], end[p]]`` on ``conn`` (its search path)."""
    done = 0
    for partition, stop in sorted(end.items()):
        after = start.get(partition, 0)
        while after < stop:
            envelopes = await eventlog.read_envelopes(
                conn, partition, after, batch, upto=stop, schema=stores.schema
            )
            if not envelopes:
                break
            await apply_batch(conn, projection, envelopes, lock=False)
            after = envelopes[-1]["position"]
            done += len(envelopes)
            if progress is not None:
                progress(done)
    return done


async def build_scratch(
    database_url: str,
    scratch_schema: str,
    projection: Projection,
    stores: StoreRegistry,
    partitions: Sequence[str],
    progress: Progress | None = None,
    store_schema: str | None = None,
    jobs: int | None = None,
) -> tuple[asyncpg.Connection, int]:
    """Create ``scratch_schema`` with the projection's tables filled from the store.

    With ``store_schema`` (where the events tables are) and a projection that
    ``projections/bulk.py`` can fold, the fast path is taken: fold in memory, COPY, build the
    indexes after the load. Otherwise every event goes through ``apply_batch``.
    Returns the open connection (search_path = scratch) so the caller can finish the job.
    """
    check_schema(scratch_schema)
    conn = await asyncpg.connect(database_url)
    from core.db import _init_connection

    await _init_connection(conn)
    await conn.execute(f"DROP SCHEMA IF EXISTS {scratch_schema} CASCADE")
    await conn.execute(f"CREATE SCHEMA {scratch_schema}")
    await conn.execute(f"SET search_path TO {scratch_schema}")
    await conn.execute(POSITIONS_DDL)
    try:
        await conn.execute(projection.ddl())
        events = await _fill(
            conn, database_url, scratch_schema, projection, stores, partitions, progress,
            store_schema, jobs,
        )
    except BaseException:
        # A failed or cancelled rebuild leaves nothing behind (the scratch schema of a big
        # store holds gigabytes).
        with contextlib.suppress(Exception):
            await conn.execute(f"DROP SCHEMA IF EXISTS {scratch_schema} CASCADE")
        with contextlib.suppress(Exception):
            await conn.close()
        raise
    return conn, events


async def _fill(
    conn: asyncpg.Connection,
    database_url: str,
    scratch_schema: str,
    projection: Projection,
    stores: StoreRegistry,
    partitions: Sequence[str],
    progress: Progress | None,
    store_schema: str | None,
    jobs: int | None,
) -> int:
    if store_schema is None or not bulk.supports(projection.name):
        return await replay_into(conn, projection, stores, partitions, progress=progress)
    heads = {p: await eventlog.head(conn, p, store_schema) for p in partitions}
    total = sum(heads.values())
    indexes = await bulk.drop_indexes(conn, scratch_schema, bulk.COPIED[projection.name])
    work = [
        bulk.PartitionJob(database_url, store_schema, scratch_schema, projection.name, p, head)
        for p, head in heads.items()
        if head > 0
    ]
    if jobs is None:
        jobs = (os.cpu_count() or 1) if total >= PARALLEL_FROM else 1
    started = time.perf_counter()
    events = await bulk.fold_all(work, jobs)
    folded = time.perf_counter()
    await bulk.create_indexes(conn, scratch_schema, indexes)
    for statement in bulk.DERIVED.get(projection.name, ()):
        await conn.execute(statement)
    log.info(
        "rebuild.scratch_built",
        projection=projection.name,
        events=events,
        jobs=jobs,
        fold_and_copy_s=round(folded - started, 1),
        indexes_s=round(time.perf_counter() - folded, 1),
    )
    await conn.executemany(
        "INSERT INTO projection_positions (projection, partition, position) VALUES ($1, $2, $3)",
        [(projection.name, job.partition, job.upto) for job in work],
    )
    for table in projection.tables:
        # VACUUM sets the visibility map of the fresh tables, so index-only scans (counts,
        # the metrics roll-up) work from the first query; the timeline (append-only, read
        # by key, the biggest) is only analysed.
        verb = "ANALYZE" if table in bulk.ANALYZE_ONLY else "VACUUM (ANALYZE)"
        await conn.execute(f"{verb} {scratch_schema}.{table}")
    if progress is not None:
        progress(events, total)
    return events


async def rebuild(
    database_url: str,
    schema: str,
    projection: Projection,
    stores: StoreRegistry,
    partitions: Sequence[str],
    progress: Progress | None = None,
    fast: bool = True,
    jobs: int | None = None,
) -> RebuildResult:
    """Replace a live projection's tables with a rebuild from the store, without downtime.

    ``fast`` folds in memory and COPYs (projections/bulk.py) in ``jobs`` processes (default:
    one per core from :data:`PARALLEL_FROM` events on); ``fast=False`` replays through
    ``apply_batch`` (the live projector's path)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    scratch = check_schema(f"{schema}_rb_{projection.name}")[:63]
    conn, events = await build_scratch(
        database_url, scratch, projection, stores, partitions, progress,
        store_schema=schema if fast else None, jobs=jobs,
    )
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {schema}")
            await projection_lock(conn, projection.name)
            await conn.execute(f"SET LOCAL search_path TO {scratch}")
            rows = await conn.fetch(
                "SELECT partition, position FROM projection_positions WHERE projection = $1",
                projection.name,
            )
            start = {r["partition"]: r["position"] for r in rows}
            events += await replay_into(conn, projection, stores, partitions, start=start)
            rows = await conn.fetch(
                "SELECT partition, position FROM projection_positions WHERE projection = $1",
                projection.name,
            )
            positions = {r["partition"]: r["position"] for r in rows}
            for table in projection.tables:
                await conn.execute(f"DROP TABLE IF EXISTS {schema}.{table} CASCADE")
                await conn.execute(f"ALTER TABLE {scratch}.{table} SET SCHEMA {schema}")
            await conn.execute(f"SET LOCAL search_path TO {schema}")
            # The projection's DDL runs again on the swapped-in tables (idempotent: indexes
            # and anything that does not move with a table are (re)made here, before the
            # scratch schema and what it holds is dropped).
            await conn.execute(projection.ddl())
            await conn.execute(POSITIONS_DDL)
            await conn.execute(
                "DELETE FROM projection_positions WHERE projection = $1", projection.name
            )
            await conn.executemany(
                "INSERT INTO projection_positions (projection, partition, position) "
                "VALUES ($1, $2, $3)",
                [(projection.name, p, pos) for p, pos in positions.items()],
            )
        await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
        raise
    finally:
        await conn.close()
    return RebuildResult(projection.name, events, positions, loop.time() - started)


async def compare_tables(
    conn: asyncpg.Connection, live_schema: str, scratch_schema: str, table: str, key: str
) -> list[dict[str, Any]]:
    """Rows that differ between the live and the rebuilt table (both directions)."""
    check_schema(live_schema)
    check_schema(scratch_schema)
    differences: list[dict[str, Any]] = []
    for label, a, b in (("live_only", live_schema, scratch_schema),
                        ("rebuild_only", scratch_schema, live_schema)):
        rows = await conn.fetch(
            f"SELECT {key}::text AS key FROM "
            f"(SELECT * FROM {a}.{table} EXCEPT SELECT * FROM {b}.{table}) d LIMIT 1000"
        )
        differences.extend({"table": table, "side": label, "key": r["key"]} for r in rows)
    return differences
