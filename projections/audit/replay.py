"""Consistency replay (一致性重放): rebuild every read model from the event store into a scratch
schema and report where the live read models differ (``gridctl replay --check``).

How the two sides are made comparable while the system runs:

1. read the live projection's positions ``L0`` and replay the store into
   ``<schema>_chk_<projection>`` up to exactly ``L0`` (no lock held: can take minutes);
2. in one transaction, take the projection's advisory lock (the live projector waits), read its
   positions again ``L1``, replay ``(L0, L1]`` into the scratch tables, and compare every
   table both ways (``projections.rebuild.compare_tables``: rows only live / only rebuilt, by
   primary key), then release the lock and drop the scratch schema.

Both sides then reflect the same events, so any difference is a defect of the read model
(a bug, a lost or doubled event, a hand edit) — not lag. Events the live projector has not
applied yet are reported as ``lag``, separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from core import eventlog
from core.db import _init_connection, check_schema
from core.eventstore import StoreRegistry
from projections.base import POSITIONS_DDL, Projection
from projections.rebuild import compare_tables, replay_range
from projections.runner import projection_lock

Progress = Callable[[str, int, int], None]  # (projection, events done, events total)


@dataclass
class ProjectionCheck:
    projection: str
    events: int = 0
    positions: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    differences: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "ok": self.ok,
            "events": self.events,
            "positions": self.positions,
            "lag": self.lag,
            "differences": self.differences,
            "seconds": round(self.seconds, 3),
        }


async def _positions(conn: asyncpg.Connection, name: str) -> dict[str, int]:
    if not await conn.fetchval("SELECT to_regclass('projection_positions')"):
        return {}
    rows = await conn.fetch(
        "SELECT partition, position FROM projection_positions WHERE projection = $1", name
    )
    return {r["partition"]: int(r["position"]) for r in rows}


async def primary_key(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey, a.attnum)",
        f"{schema}.{table}",
    )
    return [str(r["attname"]) for r in rows]


async def _row_changes(
    conn: asyncpg.Connection, live: str, scratch: str, table: str, key_sql: str, key: str
) -> dict[str, Any]:
    """Column-level difference of one key between the live and the rebuilt table."""
    rows = {}
    for label, schema in (("live", live), ("rebuilt", scratch)):
        value = await conn.fetchval(
            f"SELECT to_jsonb(t) FROM {schema}.{table} t WHERE {key_sql}::text = $1", key
        )
        rows[label] = value or {}
    live_row, rebuilt = rows["live"], rows["rebuilt"]
    return {
        col: {"live": live_row.get(col), "rebuilt": rebuilt.get(col)}
        for col in sorted(set(live_row) | set(rebuilt))
        if live_row.get(col) != rebuilt.get(col)
    }


async def check_projection(
    database_url: str,
    schema: str,
    projection: Projection,
    stores: StoreRegistry,
    partitions: Sequence[str],
    progress: Progress | None = None,
    detail: int = 10,
) -> ProjectionCheck:
    """Rebuild ``projection`` into a scratch schema and compare with the live tables."""
    started = time.perf_counter()
    check_schema(schema)
    scratch = check_schema(f"{schema}_chk_{projection.name}"[:63])
    result = ProjectionCheck(projection.name)
    conn = await asyncpg.connect(database_url)
    try:
        await _init_connection(conn)
        await conn.execute(f"SET search_path TO {schema}")
        first = await _positions(conn, projection.name)
        heads = {p: await eventlog.head(conn, p, stores.schema) for p in partitions}
        total = sum(first.values())
        await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
        await conn.execute(f"CREATE SCHEMA {scratch}")
        await conn.execute(f"SET search_path TO {scratch}")
        await conn.execute(POSITIONS_DDL)
        await conn.execute(projection.ddl())

        def step(done: int) -> None:
            if progress is not None:
                progress(projection.name, done, total)

        result.events = await replay_range(conn, projection, stores, {}, first, progress=step)
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {schema}")
            await projection_lock(conn, projection.name)
            final = await _positions(conn, projection.name)
            await conn.execute(f"SET LOCAL search_path TO {scratch}")
            result.events += await replay_range(conn, projection, stores, first, final)
            for table in projection.tables:
                cols = await primary_key(conn, schema, table)
                if not cols:
                    cols = await primary_key(conn, scratch, table)
                key_sql = cols[0] if len(cols) == 1 else f"({', '.join(cols)})"
                found = await compare_tables(conn, schema, scratch, table, key_sql)
                for i, diff in enumerate(found):
                    if i < detail:
                        diff["columns"] = await _row_changes(
                            conn, schema, scratch, table, key_sql, diff["key"]
                        )
                    result.differences.append(diff)
        result.positions = final
        result.lag = {p: h - final.get(p, 0) for p, h in heads.items() if h > final.get(p, 0)}
        await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
    finally:
        await conn.close()
    if progress is not None:
        progress(projection.name, result.events, max(total, result.events))
    result.seconds = time.perf_counter() - started
    return result


async def check_all(
    database_url: str,
    schema: str,
    stores: StoreRegistry,
    partitions: Sequence[str],
    projections: Sequence[Projection],
    progress: Progress | None = None,
) -> list[ProjectionCheck]:
    return [
        await check_projection(database_url, schema, p, stores, partitions, progress)
        for p in projections
    ]
