"""Shared fixtures: real NATS and real PostgreSQL, isolated per test.

Which servers: TEST_NATS_URL / TEST_DATABASE_URL if set; else the local services on
127.0.0.1:4222 / :5432 (database ``test``) if they answer; else (a fresh laptop) embedded
nats-server and PostgreSQL from the wheels, started once for the session on free ports and
stopped at the end. Each test gets its own JetStream stream prefix and PostgreSQL schema and
removes both, so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

from benchmarks.common import ROLE_USERS
from core.clock import FixedClock
from core.settings import Settings

LOCAL_NATS = "nats://127.0.0.1:4222"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"
_embedded: list[Any] = []

# Hypothesis profiles: "fast" (the default) keeps the unit run short enough to run often;
# "nightly" (HYPOTHESIS_PROFILE=nightly) searches much longer. Property tests set only what
# their shape needs (e.g. stateful_step_count), never max_examples, so the profile decides.
hypothesis_settings.register_profile(
    "fast",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # The explain phase re-runs a failing stateful test hundreds of times (minutes here).
    phases=[p for p in Phase if p is not Phase.explain],
)
hypothesis_settings.register_profile(
    "nightly", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


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

    # rich lays out CLI output for the terminal's width, 80 columns without one (pytest-xdist
    # workers have none): the CLI tests read tables and messages, so give them room.
    if not os.environ.get("COLUMNS", "").isdigit():
        os.environ["COLUMNS"] = "200"
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for pytest-xdist's ``--dist loadgroup`` (the suite runs in two workers): the
    fault drills share one system of real processes per package, so they stay in one worker;
    the browser test files are dealt into two groups by name (each worker that takes one
    starts its own Chromium): as one group they had grown into the longest chain of the
    run, and a worker could get both it and the fault drills. Everything else is spread."""
    browser_files = sorted({Path(str(i.fspath)).name for i in items
                            if "browser" in Path(str(i.fspath)).parts})
    for item in items:
        path = Path(str(item.fspath))
        if "faults" in path.parts:
            item.add_marker(pytest.mark.xdist_group("faults"))
        elif "browser" in path.parts:
            half = browser_files.index(path.name) % 2
            item.add_marker(pytest.mark.xdist_group(f"browser-{half}"))


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


class _Runtimes:
    """In-process systems for the ``system`` fixture, each on its own stream prefix and
    schema, made ready while the tests before it run and closed while the tests after it run.

    Opening one (schema DDL, streams, demo users) costs ~1 s and closing one (roles drain,
    connections close, streams and schema dropped) another ~1 s on the 2-core box: doing both
    in the background instead of in each test's setup and teardown takes ~2 minutes off a
    full run. Nothing is shared between tests: a spare is not started (no role runs, nothing
    is stored) until a test takes it, and a retired one is never handed out again."""

    MAX_RETIRING = 3  # bound the connections held by systems still closing

    def __init__(self) -> None:
        self.spare: asyncio.Task[tuple[Any, Settings]] | None = None
        self.retiring: list[asyncio.Task[None]] = []
        self.failures: list[str] = []

    @staticmethod
    async def _open() -> tuple[Any, Settings]:
        from gateways.bootstrap import Runtime

        settings = make_settings()
        try:
            return await Runtime.open(settings, nats_url(), database_url()), settings
        except BaseException:
            await drop_everything(settings)
            raise

    async def take(self) -> tuple[Any, Settings]:
        """A freshly opened, not yet started system; starts opening the next one."""
        task, self.spare = self.spare, None
        if task is None:
            task = asyncio.create_task(self._open())
        try:
            opened = await task
        except Exception:  # a spare that failed (e.g. opened while a server was busy): again
            opened = await self._open()
        self.spare = asyncio.create_task(self._open())
        return opened

    async def retire(self, runtime: Any, settings: Settings) -> None:
        """Close and drop in the background (at most MAX_RETIRING at once)."""

        async def close() -> None:
            try:
                await runtime.close()
            finally:
                await drop_everything(settings)

        for task in [t for t in self.retiring if t.done()]:
            self.retiring.remove(task)
            if not task.cancelled() and task.exception() is not None:
                self.failures.append(repr(task.exception()))
        while sum(not t.done() for t in self.retiring) >= self.MAX_RETIRING:
            await asyncio.wait([t for t in self.retiring if not t.done()],
                               return_when=asyncio.FIRST_COMPLETED)
        self.retiring.append(asyncio.create_task(close()))

    async def finish(self) -> None:
        """At the end of the session: close the unused spare and wait for every close."""
        if self.spare is not None:
            spare, self.spare = self.spare, None
            with contextlib.suppress(Exception):
                runtime, settings = await spare
                await self.retire(runtime, settings)
        results = await asyncio.gather(*self.retiring, return_exceptions=True)
        self.failures += [repr(r) for r in results if isinstance(r, BaseException)]
        self.retiring = []


_runtimes = _Runtimes()


@pytest.fixture(scope="session")
async def _runtimes_closed() -> AsyncIterator[_Runtimes]:
    """Waits for the background opens and closes of ``system`` at the end of the session."""
    yield _runtimes
    await _runtimes.finish()
    assert not _runtimes.failures, f"closing a test system failed: {_runtimes.failures}"


@pytest.fixture
async def system(
    clock: FixedClock, _runtimes_closed: _Runtimes
) -> AsyncIterator[dict[str, Any]]:
    """The whole system in-process (all roles) on the real services, plus an HTTP client.

    Every test gets its own system (own stream prefix and schema, dropped afterwards); it is
    opened before the test needs it and closed after it, in the background (``_Runtimes``)."""
    from gateways.bootstrap import ROLES
    from gateways.http.app import create_app

    runtime, settings = await _runtimes_closed.take()
    runtime.clock = clock  # the SLA watcher sees the same controllable time as the gateway
    runtime.start(ROLES)
    app = create_app(runtime, clock)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield {"runtime": runtime, "client": client, "clock": clock, "settings": settings}
    finally:
        await _runtimes_closed.retire(runtime, settings)


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


async def worker_pulls_expired(runtime: Any) -> bool:
    """No pull request of a stopped worker waits on its consumers any more. (A cancelled
    worker's last request lives on in the server until it expires, ``FETCH_TIMEOUT_S``; a
    command arriving meanwhile is handed to it and redelivered only after the ack wait.)"""
    infos = await runtime.js.consumers_info(runtime.topo.commands_stream)
    return all(not i.num_waiting for i in infos if i.name.startswith("worker_"))


async def commands_waiting(runtime: Any, n: int) -> bool:
    """Exactly ``n`` commands wait on the worker consumers, none delivered (no worker took
    one)."""
    infos = await runtime.js.consumers_info(runtime.topo.commands_stream)
    workers = [i for i in infos if i.name.startswith("worker_")]
    return bool(workers) and all(
        i.num_pending == n and not i.num_ack_pending for i in workers
    )


# --------------------------------------------------------------------------- identity helpers

DEMO_USERS_FILE = Path(__file__).resolve().parent.parent / "deploy" / "users.demo.json"


_token_cache: weakref.WeakKeyDictionary[httpx.AsyncClient, dict[str, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def demo_password(username: str) -> str:
    """The documented demo password of a demo user (docs/identity.md)."""
    import json

    for user in json.loads(DEMO_USERS_FILE.read_text(encoding="utf-8"))["users"]:
        if user["username"] == username:
            return str(user["password"])
    raise KeyError(f"no demo user {username!r} in {DEMO_USERS_FILE}")


async def sign_in(
    client: httpx.AsyncClient, who: str, password: str | None = None, **form: str
) -> dict[str, Any]:
    """``POST /v1/auth/token`` as a role (its demo user, see ROLE_USERS) or a username;
    returns the token response (asserting 200)."""
    username = ROLE_USERS.get(who, who)
    response = await client.post(
        "/v1/auth/token",
        data={"username": username, "password": password or demo_password(username), **form},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def auth_headers(client: httpx.AsyncClient, who: str = "dispatcher") -> dict[str, str]:
    """``{"Authorization": "Bearer …"}`` for a role's demo user or a demo username, signed in
    once per client (cached)."""
    cache = _token_cache.setdefault(client, {})
    if who not in cache:
        cache[who] = await sign_in(client, who)
    return {"Authorization": f"Bearer {cache[who]['access_token']}"}


async def user_headers(
    system: dict[str, Any],
    username: str | None = None,
    *,
    role: str = "handler",
    node: str | None = None,
    department: str | None = None,
    grids: tuple[str, ...] | list[str] = (),
) -> dict[str, str]:
    """Bearer headers for any user, created on the fly when missing (e.g. the handler of the
    department a case was dispatched to). The token is minted directly (a real session and a
    real JWT, no password round-trip), so every request still goes through the real checks."""
    from core.users import IdentitySettings, UserStore, issue_access_token

    runtime = system["runtime"]
    store = UserStore(runtime.pool)
    username = username or f"{role}-{department or node or '-'.join(grids)}"
    user = await store.get(username)
    if user is None:
        user = await store.create(
            username,
            role,
            None,
            node=node,
            department=department,
            grids=list(grids),
            jurisdiction=runtime.ref.jurisdiction,
        )
    scopes = user.effective_scopes
    sid, _, _ = await store.create_session(user, scopes, "api", IdentitySettings())
    token = issue_access_token(runtime.settings.jwt_secret, user, sid, scopes, 900)
    return {"Authorization": f"Bearer {token}"}


async def asgi_call(
    app: Any,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    linger: float = 0.3,
) -> tuple[int, dict[str, str], bytes]:
    """Call an ASGI app directly and return once the response is complete, or ``linger``
    seconds after it started (endless responses: SSE streams), as (status, headers, body so
    far). httpx's ASGITransport would wait for a stream's end, which never comes."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if body is not None:
        raw_headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    path_only, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"test"), *raw_headers],
        "client": ("127.0.0.1", 40000),
        "server": ("test", 80),
    }
    sent_body = False
    started = asyncio.Event()
    done = asyncio.Event()
    never = asyncio.Event()
    status = 0
    response_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update(
                {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            )
            started.set()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    task = asyncio.create_task(app(scope, receive, send))
    try:
        await asyncio.wait_for(started.wait(), timeout=20)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=linger if status < 400 else 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return status, response_headers, b"".join(chunks)
