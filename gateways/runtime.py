"""Process wiring: connect to NATS and PostgreSQL, load reference data, run the roles.

Roles are the parts of the data flow (gateway, worker, relay, projector); ``gridctl up`` runs
all of them in one process, ``gridctl run <role>`` runs one so it can be scaled out. Each role
is an asyncio task that survives outages of its dependencies by itself (retry with jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext

from aggregates.service import CaseService
from core import users
from core.clock import Clock, SystemClock
from core.db import create_pool, create_read_pool, ensure_schema, wait_for_database
from core.eventstore import StoreRegistry
from core.logging import get_logger
from core.messaging import Topology, connect, ensure_streams
from core.photos import PhotoStore
from core.refdata import Reference, load_reference
from core.settings import Settings
from gateways.relay import RELAY_DDL, Relay
from gateways.watcher import SlaWatcher
from gateways.worker import Worker
from projections.base import Projection
from projections.map import MapProjection
from projections.metrics import MetricsProjection
from projections.queue import QueueProjection
from projections.runner import ProjectionRunner, setup
from projections.timeline import TimelineProjection

log = get_logger("runtime")

ROLES = ("worker", "relay", "projector", "watcher", "notifier")
#: A replica that is down, restarting or unreachable (not a bad query).
READ_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


async def intake_setup(conn: asyncpg.Connection, settings: Settings) -> None:
    """Tables of the intake side (photos, API clients, Open311 tokens, notifications)."""
    from core import apikeys, photos
    from gateways import notify
    from gateways.http import open311

    await photos.setup(conn)
    await apikeys.setup(conn, settings.city_dir)
    await open311.setup(conn)
    await notify.setup(conn)


def all_projections() -> list[Projection]:
    """Every read model, in the order they are created and rebuilt."""
    return [QueueProjection(), TimelineProjection(), MapProjection(), MetricsProjection()]


@dataclass
class Runtime:
    """Connections and shared objects of one process."""

    settings: Settings
    nats_url: str
    database_url: str
    ref: Reference
    topo: Topology
    nc: Client
    js: JetStreamContext
    pool: asyncpg.Pool
    stores: StoreRegistry
    service: CaseService
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    role_tasks: dict[str, list[asyncio.Task[Any]]] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    relay: Relay | None = None
    projectors: list[ProjectionRunner] = field(default_factory=list)
    watcher: SlaWatcher | None = None
    clock: Clock = field(default_factory=SystemClock)
    photos: PhotoStore | None = None  # set by open(); bucket created on first upload
    notifier: Any = None  # gateways.notify.Notifier when the notifier role runs
    read_pool: asyncpg.Pool | None = None  # the replica's, opened by reads() on first use
    _read_retry_at: float = 0.0
    _read_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    async def open(cls, settings: Settings, nats_url: str, database_url: str) -> Runtime:
        ref = load_reference(settings)
        topo = Topology(settings.stream_prefix)
        await wait_for_database(database_url)
        await ensure_schema(database_url, settings.db_schema)
        nc = await connect(nats_url, name="griddispatch")
        js = nc.jetstream(timeout=10)
        await ensure_streams(js, topo, settings.dedupe_window_s, settings.stream_replicas)
        pool = await create_pool(database_url, settings.db_schema)
        stores = StoreRegistry(database_url, settings.db_schema)
        # Schema set-up is idempotent but not concurrent-safe in PostgreSQL (two processes
        # running CREATE TABLE IF NOT EXISTS at once can collide): one process at a time.
        async with pool.acquire() as lock_conn:
            await lock_conn.execute(
                "SELECT pg_advisory_lock(hashtext('griddispatch-setup:' || current_schema()))"
            )
            try:
                async with pool.acquire() as conn:
                    await conn.execute(RELAY_DDL)
                    await intake_setup(conn, settings)
                await setup(pool, all_projections())
                # Identity tables; demo users into an empty users table unless
                # GRID_DEMO_USERS=false.
                await users.setup(pool, ref.jurisdiction)
                # Open every partition's store now: creates the tables before anyone reads.
                # Then close them again: each store keeps its own small connection pool, and
                # only the roles that use the store (worker, relay, audit) should hold one —
                # six processes holding every partition's pool exhausted PostgreSQL's default
                # 100 connections. ``stores.get`` reopens a partition on first use.
                await asyncio.to_thread(lambda: [stores.get(p) for p in ref.partitions])
                await asyncio.to_thread(stores.close)
                stores.tables_ready()
            finally:
                await lock_conn.execute(
                    "SELECT pg_advisory_unlock(hashtext('griddispatch-setup:' || current_schema()))"
                )
        service = CaseService(ref.catalogue, ref.jurisdiction, ref.calendar)
        runtime = cls(settings, nats_url, database_url, ref, topo, nc, js, pool, stores, service)
        runtime.photos = PhotoStore(js, topo, replicas=settings.stream_replicas)
        return runtime

    async def reads(self) -> asyncpg.Pool:
        """The pool for read-model queries that tolerate replication lag (queue lists, map,
        metrics — docs/deployment.md): the replica's when ``DATABASE_READ_URL`` is set and
        reachable, else the primary's. A replica that cannot be reached is retried every
        30 s; meanwhile the primary answers, so the command centre never goes dark."""
        url = self.settings.database_read_url
        if not url:
            return self.pool
        if self.read_pool is not None:
            return self.read_pool
        loop = asyncio.get_running_loop()
        if loop.time() < self._read_retry_at:
            return self.pool
        async with self._read_lock:
            if self.read_pool is None and loop.time() >= self._read_retry_at:
                try:
                    self.read_pool = await asyncio.wait_for(
                        create_read_pool(url, self.settings.db_schema), timeout=5
                    )
                    log.info("runtime.read_replica", url=_without_password(url))
                except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                    self._read_retry_at = loop.time() + 30
                    log.warning("runtime.read_replica_unavailable", error=repr(exc)[:300],
                                url=_without_password(url), retry_in_s=30)
        return self.read_pool or self.pool

    @contextlib.asynccontextmanager
    async def read_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection from :meth:`reads`. When the replica fails mid-request, that request
        fails (503, like any database outage) and the next ones go to the primary until the
        replica can be reached again."""
        pool = await self.reads()
        try:
            async with pool.acquire() as conn:
                yield conn
        except READ_CONNECTION_ERRORS as exc:
            replica = self.read_pool
            if replica is not None and pool is replica:
                self.read_pool = None
                self._read_retry_at = asyncio.get_running_loop().time() + 30
                replica.terminate()
                log.warning("runtime.read_replica_lost", error=repr(exc)[:300], retry_in_s=30)
            raise

    def start(self, roles: Iterable[str], partitions: list[str] | None = None) -> None:
        """Start the given roles as tasks; ``partitions`` limits workers and the relay."""
        parts = partitions or self.ref.partitions
        for role in roles:
            if role == "worker":
                # Every district: one consumer for all (gateways.worker.Worker._subscribe);
                # chosen districts: one consumer each.
                chosen: list[str | None] = list(partitions) if partitions else [None]
                for p in chosen:
                    worker = Worker(
                        self.nc,
                        self.js,
                        self.topo,
                        self.stores,
                        self.service,
                        partition=p,
                        batch=self.settings.worker_batch,
                        max_deliver=self.settings.max_deliver,
                        linger=self.settings.batch_linger_ms / 1000,
                    )
                    self.workers.append(worker)
                    self._spawn(role, worker.run(self.stop_event))
            elif role == "relay":
                self.relay = Relay(
                    self.stores,
                    parts,
                    self.js,
                    self.topo,
                    self.pool,
                    batch=self.settings.relay_batch,
                    linger=self.settings.batch_linger_ms / 1000,
                )
                self._spawn(role, self.relay.run(self.stop_event))
            elif role == "projector":
                runner = ProjectionRunner(
                    self._selected_projections(), self.js, self.topo, self.pool,
                    linger=self.settings.batch_linger_ms / 1000,
                )
                self.projectors.append(runner)
                self._spawn(role, runner.run(self.stop_event))
            elif role == "watcher":
                self.watcher = SlaWatcher(self.pool, self.js, self.topo, self.ref, self.clock,
                                          interval_s=self.settings.watcher_interval_s)
                self._spawn(role, self.watcher.run(self.stop_event))
            elif role == "notifier":
                from gateways.notify import Notifier

                self.notifier = Notifier(self)
                for coro in self.notifier.tasks(self.stop_event):
                    self._spawn(role, coro)
            else:
                raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if self.settings.health_port and "probes" not in self.role_tasks:
            from gateways.probes import serve_probes

            self._spawn("probes", serve_probes(
                self, self.settings.http_host, self.settings.health_port, self.stop_event
            ))
        log.info("runtime.started", roles=list(roles), partitions=parts)

    def _selected_projections(self) -> list[Projection]:
        """All read models, or the ones named in GRID_PROJECTIONS (comma-separated)."""
        wanted = [n.strip() for n in self.settings.projections.split(",") if n.strip()]
        chosen = [p for p in all_projections() if not wanted or p.name in wanted]
        unknown = set(wanted) - {p.name for p in chosen}
        if unknown:
            raise ValueError(f"unknown projections {sorted(unknown)}")
        return chosen

    def _spawn(self, role: str, coro: Any) -> None:
        task = asyncio.create_task(coro, name=role)
        self.tasks.append(task)
        self.role_tasks.setdefault(role, []).append(task)

    async def stop_role(self, role: str) -> None:
        """Cancel one role's tasks (tests and fault drills); ``start`` brings it back."""
        tasks = self.role_tasks.pop(role, [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if role == "worker":
            self.workers.clear()
        elif role == "projector":
            self.projectors.clear()
        elif role == "relay":
            self.relay = None

    def consumers_ready(self) -> bool:
        """True when every started role has a live task (none crashed or was stopped)."""
        return all(not t.done() for tasks in self.role_tasks.values() for t in tasks)

    async def close(self) -> None:
        """Graceful stop: let in-flight batches finish, then close connections."""
        self.stop_event.set()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=15)
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            # Every task has finished its batch: flush replies, then close. (drain() would
            # wait out the pull subscriptions' pending fetch requests for 30 s.)
            await self.nc.flush(timeout=2)
        with contextlib.suppress(Exception):
            await self.nc.close()
        with contextlib.suppress(Exception):
            await self.pool.close()
        if self.read_pool is not None:
            with contextlib.suppress(Exception):
                await self.read_pool.close()
        with contextlib.suppress(Exception):
            from projections.audit.pool import close_pool  # the auditors' pool, if one was made

            await asyncio.to_thread(close_pool, self)
        await asyncio.to_thread(self.stores.close)
        log.info("runtime.closed")


def _without_password(url: str) -> str:
    """A database URL fit for a log line."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
