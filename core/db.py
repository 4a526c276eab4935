"""Read-side PostgreSQL access with asyncpg, and the one place that creates schemas.

Why a schema setting: tests (and a staging copy on the same server) run in their own schema,
so nothing they do can touch a live command centre's tables.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import orjson

from core import codec

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str) -> str:
    """Refuse anything but a plain identifier (it is interpolated into DDL)."""
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: codec.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (``RESET ALL; UNLISTEN *; …``).

    asyncpg still rolls back an open transaction and drops listeners on release; the reset
    query itself is one more round trip per ``acquire`` — about a tenth of the gateway's time
    per report. Safe because pool connections never change session state: session settings
    come from ``server_settings``, code uses ``SET LOCAL`` inside transactions, and the one
    session advisory lock (set-up in gateways/runtime.py) is released explicitly.
    """


async def create_pool(
    database_url: str, schema: str = "public", min_size: int = 1, max_size: int = 8
) -> asyncpg.Pool:
    """A pool whose connections see ``schema`` first; JSON columns map to Python objects."""
    check_schema(schema)
    await ensure_schema(database_url, schema)
    return await _pool(database_url, schema, min_size, max_size, {})


async def create_read_pool(
    database_url: str, schema: str = "public", min_size: int = 1, max_size: int = 8
) -> asyncpg.Pool:
    """A read-only pool on a streaming replica: no ``CREATE SCHEMA`` (a hot standby refuses
    writes), every transaction read-only, so a query that writes fails here instead of
    silently going to the wrong server."""
    check_schema(schema)
    return await _pool(
        database_url, schema, min_size, max_size,
        {"application_name": "griddispatch-read", "default_transaction_read_only": "on"},
    )


async def _pool(
    database_url: str, schema: str, min_size: int, max_size: int, settings: dict[str, str]
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={
            "search_path": f"{schema},public", "application_name": "griddispatch", **settings
        },
    )
    assert pool is not None
    return pool


async def ensure_schema(database_url: str, schema: str) -> None:
    """Create the schema if missing (idempotent, race-safe across processes)."""
    check_schema(schema)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    except asyncpg.UniqueViolationError:
        pass  # two processes created it at once
    finally:
        await conn.close()


async def wait_for_database(database_url: str, timeout: float = 30.0) -> None:
    """Block until PostgreSQL accepts connections (used at start-up and after restarts)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conn = await asyncpg.connect(database_url, timeout=2)
            await conn.close()
            return
        except (TimeoutError, OSError, asyncpg.PostgresError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
