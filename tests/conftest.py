"""Shared fixtures: real NATS and real PostgreSQL, isolated per test.

Which servers: TEST_NATS_URL / TEST_DATABASE_URL if set; else the local services on
127.0.0.1:4222 / :5432 (database ``test``) if they answer; else (a fresh laptop) embedded
nats-server and PostgreSQL from the wheels, started once for the session on free ports and
stopped at the end. Each test gets its own JetStream stream prefix and PostgreSQL schema and
removes both, so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from core.clock import FixedClock
from core.settings import Settings

LOCAL_NATS = "nats://127.0.0.1:4222"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"
_embedded: list[Any] = []


def nats_url() -> str:
    return os.environ["TEST_NATS_URL"]


def database_url() -> str:
    return os.environ["TEST_DATABASE_URL"]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    """Pick (or start) the real servers before any test module is imported."""
    from core.embedded import EmbeddedNats, EmbeddedPostgres

    state = Path(tempfile.mkdtemp(prefix="griddispatch-test-"))
    if "TEST_NATS_URL" not in os.environ:
        if _answers("127.0.0.1", 4222):
            os.environ["TEST_NATS_URL"] = LOCAL_NATS
        else:
            server = EmbeddedNats(state / "nats")
            server.start()
            _embedded.append(server)
            os.environ["TEST_NATS_URL"] = server.url
    if "TEST_DATABASE_URL" not in os.environ:
        if _answers("127.0.0.1", 5432):
            os.environ["TEST_DATABASE_URL"] = LOCAL_PG
        else:
            pg = EmbeddedPostgres(state / "pg")
            pg.start()
            _embedded.append(pg)
            os.environ["TEST_DATABASE_URL"] = pg.url


def pytest_unconfigure(config: pytest.Config) -> None:
    while _embedded:
        _embedded.pop().stop()


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
    return Settings(nats_url=nats_url(), database_url=database_url(), **base)


async def drop_everything(settings: Settings) -> None:
    """Remove the streams and the schema a test settings object owns."""
    from core.messaging import Topology, connect, delete_streams

    nc = await connect(nats_url(), "test-cleanup")
    try:
        await delete_streams(nc.jetstream(), Topology(settings.stream_prefix))
    finally:
        await nc.close()
    conn = await asyncpg.connect(database_url())
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
    runtime = await Runtime.open(settings, nats_url(), database_url())
    runtime.clock = clock  # the SLA watcher sees the same controllable time as the gateway
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
