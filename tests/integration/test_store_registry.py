"""The store registry creates partition tables during set-up only: a store opened later skips
eventsourcing's DDL, which collided in PostgreSQL's catalogue with another process's set-up."""

from __future__ import annotations

import asyncpg

from core.db import ensure_schema
from core.eventlog import table_name
from core.eventstore import StoreRegistry
from tests.conftest import database_url, unique_name


async def _tables(schema: str) -> set[str]:
    conn = await asyncpg.connect(database_url())
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
        )
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_stores_opened_after_setup_run_no_ddl() -> None:
    schema = unique_name("t_reg_")
    await ensure_schema(database_url(), schema)
    registry = StoreRegistry(database_url(), schema)
    try:
        registry.get("520102")  # set-up: creates the table
        registry.close()
        assert table_name("520102") in await _tables(schema)
        registry.tables_ready()
        reopened = registry.get("520102")  # works on the existing table
        assert reopened.recorder.max_notification_id() in (None, 0)
        registry.get("999999")  # no DDL any more: no table appears
        assert table_name("999999") not in await _tables(schema)
    finally:
        registry.close()
        conn = await asyncpg.connect(database_url())
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
