"""Wiring: the one place that connects a process and builds its roles.

Roles are the parts of the data flow (worker, relay, projector, watcher, notifier);
``gridctl up`` runs each in its own process (or all in one, ``--single-process``),
``gridctl run <role>`` runs one so it can be scaled out. :meth:`Runtime.open` connects to NATS
and PostgreSQL, creates streams and tables and loads the reference data; :meth:`Runtime.start`
builds the roles from those objects. Nothing below this module knows which roles exist:
``gateways/runtime.py`` holds the connections, the routers get narrow dependencies
(``gateways/http/deps.py``, filled in by ``gateways/http/app.py``), the notifier and the
probes get the runtime they are given here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import asyncpg

from aggregates.service import CaseService
from aggregates.visits import VisitRule
from core import apikeys, components, photos, places, users
from core.db import create_pool, ensure_schema, wait_for_database
from core.eventstore import StoreRegistry
from core.logging import get_logger
from core.messaging import Topology, connect, ensure_streams
from core.photos import PhotoStore
from core.pull import Linger
from core.refdata import load_reference
from core.settings import Settings
from gateways import notify, outbound, runtime
from gateways.probes import serve_probes
from gateways.relay import RELAY_DDL, Relay
from gateways.watcher import SlaWatcher
from gateways.worker import Worker
from projections import households
from projections.base import Projection
from projections.read_models import all_projections
from projections.runner import ProjectionRunner, setup

log = get_logger("runtime")

ROLES = ("worker", "relay", "projector", "watcher", "notifier")
#: How ``gridctl up`` lays the roles out in processes (beside the gateway): the projector and
#: the notifier together, so every read model hangs off one consumer (``Runtime.start``).
PROCESSES = ("worker", "relay", "projector,notifier", "watcher")

__all__ = ["PROCESSES", "ROLES", "Runtime", "all_projections", "intake_setup"]


async def intake_setup(conn: asyncpg.Connection, settings: Settings) -> None:
    """Tables of the intake side (photos, API clients and their Open311 tokens,
    notifications). Nothing here imports an HTTP router: the roles that are not gateways do
    not load FastAPI (≈ 10 MB each)."""
    await photos.setup(conn)
    await apikeys.setup(conn, settings.city_dir)
    await notify.setup(conn)
    await outbound.setup(conn)  # issue 16: text messages to reporters
    await households.setup(conn)  # issue 18: household events and read models
    await places.setup(conn)  # issue 17: standard addresses
    await components.setup(conn)  # issue 17: city components (部件)


class Runtime(runtime.Runtime):
    """A process's runtime with its wiring: :meth:`open` it, :meth:`start` roles on it."""

    @classmethod
    async def open(cls, settings: Settings, nats_url: str, database_url: str) -> Runtime:
        ref = load_reference(settings)
        VisitRule.parse(settings.return_visits)  # a typo in GRID_RETURN_VISITS stops the start
        outbound.channel_from(settings)  # so does an incomplete GRID_SMS_CHANNEL
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
        opened = cls(settings, nats_url, database_url, ref, topo, nc, js, pool, stores, service)
        opened.photos = PhotoStore(js, topo, replicas=settings.stream_replicas)
        return opened

    async def _push_notification(self, audience: str, payload: bytes) -> None:
        """Publish a notification where ``audience``'s live listeners hear it (the watcher's
        visit reminders; the notifier publishes its own the same way)."""
        await self.nc.publish(notify.audience_subject(self.topo.subject_root, audience), payload)

    def start(self, roles: Iterable[str], partitions: list[str] | None = None) -> None:
        """Start the given roles as tasks; ``partitions`` limits workers and the relay.

        The projector and the notifier started together share one consumer and one
        transaction per batch (see the ``projector`` branch)."""
        roles = list(roles)
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
                        linger=self._linger(),
                    )
                    self.workers.append(worker)
                    self.spawn(role, worker.run(self.stop_event))
            elif role == "relay":
                self.relay = Relay(
                    self.stores,
                    parts,
                    self.js,
                    self.topo,
                    self.pool,
                    batch=self.settings.relay_batch,
                    linger=self._linger(),
                    database_url=self.database_url,
                )
                self.spawn(role, self.relay.run(self.stop_event))
            elif role == "projector":
                models = self._selected_projections()
                # One process runs both: ONE consumer, decode and transaction per batch for
                # every read model (the notifier's own consumer was a delivery, a decode, an
                # ack and a transaction more per event; docs/performance.md).
                rider = self._notifier() if "notifier" in roles else None
                runner = ProjectionRunner(
                    [*models, *(rider.projections if rider else [])],
                    self.js, self.topo, self.pool,
                    on_applied=rider.applied if rider else None,
                    linger=self._linger(),
                    # Its usual consumer name, whether or not the notifier's models ride along.
                    durable=f"proj_{'_'.join(p.name for p in models)}",
                )
                self.projectors.append(runner)
                self.spawn(role, rider.run_projections(runner, self.stop_event,
                                                       drop_own_consumer=True)
                           if rider else runner.run(self.stop_event))
            elif role == "watcher":
                self.watcher = SlaWatcher(self.pool, self.js, self.topo, self.ref, self.clock,
                                          interval_s=self.settings.watcher_interval_s,
                                          push=self._push_notification)
                self.spawn(role, self.watcher.run(self.stop_event))
            elif role == "notifier":
                notifier = self._notifier()
                own_runner = "projector" not in roles  # else the projector applies its models
                for coro in [*notifier.tasks(self.stop_event, own_runner),
                             *self.texts.tasks(self.stop_event)]:
                    self.spawn(role, coro)
            else:
                raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if self.settings.health_port and "probes" not in self.role_tasks:
            self.spawn("probes", serve_probes(
                self, self.settings.http_host, self.settings.health_port, self.stop_event
            ))
        log.info("runtime.started", roles=list(roles), partitions=parts)

    def _notifier(self) -> notify.Notifier:
        """The notifier of this process (made once; the projector may apply its models).
        Text messages to reporters (filed, closed, return visit due) ride on it."""
        if self.notifier is None:
            self.texts = outbound.OutboundRunner(self)
            self.notifier = notify.Notifier(self, riders=[self.texts.rider])
        return self.notifier

    def _linger(self) -> Linger:
        """Each batching stage's own adaptive linger (``GRID_BATCH_LINGER_MS`` from
        ``GRID_BATCH_LINGER_FROM_RATE`` messages per second)."""
        return Linger(
            self.settings.batch_linger_ms / 1000, self.settings.batch_linger_from_rate
        )

    def _selected_projections(self) -> list[Projection]:
        """All read models, or the ones named in GRID_PROJECTIONS (comma-separated)."""
        wanted = [n.strip() for n in self.settings.projections.split(",") if n.strip()]
        chosen = [p for p in all_projections() if not wanted or p.name in wanted]
        unknown = set(wanted) - {p.name for p in chosen}
        if unknown:
            raise ValueError(f"unknown projections {sorted(unknown)}")
        return chosen
