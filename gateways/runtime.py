"""What one process holds: connections, shared objects and the tasks of its roles.

Which roles exist and how they are wired to these objects is ``gateways/bootstrap.py`` (the one
place that builds workers, the relay, projectors, the watcher, the notifier and the probes);
routers take the narrow dependencies of ``gateways/http/deps.py`` rather than this object (the
case and notification routes are still to move). Each role is an asyncio task that survives
outages of its dependencies by itself (retry with jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext

from aggregates.service import CaseService
from core.clock import Clock, SystemClock
from core.db import create_read_pool
from core.eventstore import StoreRegistry
from core.logging import get_logger
from core.messaging import Topology
from core.photos import PhotoStore
from core.refdata import Reference
from core.settings import Settings
from projections.audit.pool import close_pool

if TYPE_CHECKING:
    from gateways.relay import Relay
    from gateways.watcher import SlaWatcher
    from gateways.worker import Worker
    from projections.runner import ProjectionRunner

log = get_logger("runtime")

#: A replica that is down, restarting or unreachable (not a bad query).
READ_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


@dataclass
class Runtime:
    """Connections and shared objects of one process (made by ``bootstrap.Runtime.open``)."""

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
    texts: Any = None  # gateways.outbound.OutboundRunner (reporters' texts) beside it
    read_pool: asyncpg.Pool | None = None  # the replica's, opened by reads() on first use
    _read_retry_at: float = 0.0
    _read_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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

    def spawn(self, role: str, coro: Any) -> None:
        """Run ``coro`` as a task of ``role`` (:meth:`stop_role` and :meth:`close` end it)."""
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
            await asyncio.to_thread(close_pool, self)  # the auditors' pool, if one was made
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
