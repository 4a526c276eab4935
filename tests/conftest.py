"""Shared fixtures: real NATS and real PostgreSQL, isolated per test session.

Each session gets its own JetStream stream prefix and its own PostgreSQL schema on the
services named by TEST_NATS_URL / TEST_DATABASE_URL (default: the local ones on 4222 / 5432),
and removes both at the end, so test runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from core.clock import FixedClock
from core.settings import Settings

NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "GRID_STREAM_PREFIX": unique_name("T").upper(),
        "GRID_DB_SCHEMA": unique_name("t_"),
        "GRID_WORKER_BATCH": 200,
        "GRID_REPLY_TIMEOUT": 10.0,
    }
    base.update(overrides)
    return Settings(nats_url=NATS_URL, database_url=DATABASE_URL, **base)


async def drop_everything(settings: Settings) -> None:
    """Remove the streams and the schema a test settings object owns."""
    from core.messaging import Topology, connect, delete_streams

    nc = await connect(NATS_URL, "test-cleanup")
    try:
        await delete_streams(nc.jetstream(), Topology(settings.stream_prefix))
    finally:
        await nc.close()
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {settings.db_schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def clock() -> FixedClock:
    """Monday 2026-11-23 10:00 Beijing time, a working day inside working hours."""
    return FixedClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))


@pytest.fixture
async def system(clock: FixedClock) -> AsyncIterator[dict[str, Any]]:
    """The whole system in-process (all roles) on the real services, plus an HTTP client."""
    from gateways.http.app import create_app
    from gateways.runtime import ROLES, Runtime

    settings = make_settings()
    runtime = await Runtime.open(settings, NATS_URL, DATABASE_URL)
    runtime.start(ROLES)
    app = create_app(runtime, clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        try:
            yield {"runtime": runtime, "client": client, "clock": clock, "settings": settings}
        finally:
            await runtime.close()
            await drop_everything(settings)


async def eventually(
    probe: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05
) -> Any:
    """Poll an async probe until it returns a truthy value (read models are eventual)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)
