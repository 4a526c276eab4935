"""FastAPI dependencies: each gives a router one thing it needs, from ``app.state``.

A router asks for the pool, a read connection, the topology, JetStream, the reference data,
the settings, the photo store or the clock — never for the whole process runtime, so what a
route touches is visible in its signature and a test can hand it exactly that.
``gateways/http/app.py`` puts the runtime (and the clock and identity settings) on
``app.state``; ``gateways/bootstrap.py`` made it.

They are ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, and
that hop cost more than the lookup itself on every request."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import TYPE_CHECKING, Any

import asyncpg
import psycopg
from fastapi import Request
from nats.aio.client import Client
from nats.js import JetStreamContext
from psycopg_pool import ConnectionPool

from core.clock import Clock
from core.eventlog import ExistingCases
from core.messaging import Topology
from core.photos import PhotoStore
from core.refdata import Reference
from core.settings import Settings
from core.users import IdentitySettings
from gateways.commandbus import CommandBus
from projections.audit.pool import audit_pool

if TYPE_CHECKING:
    from gateways.runtime import Runtime

#: ``async with reads() as conn`` — a connection for queries that tolerate replication lag
#: (the replica's when ``DATABASE_READ_URL`` is set and reachable, else the primary's).
ReadConnection = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]
#: ``open_pool()`` — the auditors' read-only psycopg pool of this process (blocking the first
#: time: call it in a worker thread).
AuditPool = Callable[[], ConnectionPool[psycopg.Connection[Any]]]
#: ``roles_alive()`` — every role task this process started is still running (``/readyz``).
RoleCheck = Callable[[], bool]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    """The whole runtime: only to build a narrow dependency from several of its parts (the
    notification stream's ``Feed``, the ``CommandBus`` below). Routers take those."""
    return _runtime(request)


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_settings(request: Request) -> Settings:
    return _runtime(request).settings


async def get_pool(request: Request) -> asyncpg.Pool:
    """The primary's pool (reads that must see the latest commit, and every write)."""
    return _runtime(request).pool


async def get_existing_cases(request: Request) -> ExistingCases:
    """This process's :class:`core.eventlog.ExistingCases` (made on first use): one for all
    requests, so concurrent reports are asked about together."""
    state = request.app.state
    lookup: ExistingCases | None = getattr(state, "existing_cases", None)
    if lookup is None:
        lookup = state.existing_cases = ExistingCases(_runtime(request).pool)
    return lookup


async def get_reads(request: Request) -> ReadConnection:
    """See :data:`ReadConnection` (``Runtime.read_connection``; docs/deployment.md)."""
    return _runtime(request).read_connection


async def get_reference(request: Request) -> Reference:
    """Jurisdiction tree, category catalogue and calendar (loaded once per process)."""
    return _runtime(request).ref


async def get_topology(request: Request) -> Topology:
    return _runtime(request).topo


async def get_jetstream(request: Request) -> JetStreamContext:
    return _runtime(request).js


async def get_nats(request: Request) -> Client:
    return _runtime(request).nc


async def get_command_bus(request: Request) -> CommandBus:
    """Queue a lifecycle command and wait briefly for its outcome."""
    runtime = await get_runtime(request)
    return CommandBus(runtime.nc, runtime.js, runtime.topo,
                      runtime.settings.command_reply_timeout_s)


async def get_photos(request: Request) -> PhotoStore:
    photos = _runtime(request).photos
    assert photos is not None, "Runtime.open sets the photo store"
    return photos


async def get_database_url(request: Request) -> str:
    """The primary's URL (the auditors' psycopg pool is keyed by it)."""
    return _runtime(request).database_url


async def get_role_check(request: Request) -> RoleCheck:
    """See :data:`RoleCheck` (``Runtime.consumers_ready``)."""
    return _runtime(request).consumers_ready


async def get_audit_pool(request: Request) -> AuditPool:
    """See :data:`AuditPool` (one per runtime, closed with it)."""
    return partial(audit_pool, _runtime(request))


def identity_settings(request: Request) -> IdentitySettings:
    """Sign-in and rate-limit settings (``app.state.identity``; defaults when unset)."""
    settings = getattr(request.app.state, "identity", None)
    if settings is None:
        settings = request.app.state.identity = IdentitySettings()
    return settings
