"""The auditors' read-only connection pool (one per runtime, made on first use).

Why a pool of its own: the audit API reads the event store with psycopg (blocking, in worker
threads), and opening a fresh connection per request cost about 5 ms of a 10 ms history
request. Small on purpose — PostgreSQL allows 100 connections for everything, and a process
runs several pools: at most :data:`MAX_SIZE` connections, one kept open, idle extra ones
closed after a minute. Sessions are READ ONLY (``default_transaction_read_only``: a write
fails in PostgreSQL) and in autocommit: each statement reads committed data on its own, no
BEGIN / COMMIT round trips; reads that must see one snapshot open a transaction themselves.

The pool belongs to the audit layer: :func:`audit_pool` makes it for a runtime,
:func:`close_pool` (called by ``Runtime.close``) closes it.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

MIN_SIZE = 1
MAX_SIZE = 4
#: Seconds a request waits for a free connection before it fails (503).
WAIT_S = 10.0
APPLICATION_NAME = "griddispatch-audit"
READ_ONLY = "-c default_transaction_read_only=on"


class _HasDatabase(Protocol):
    database_url: str


_lock = threading.Lock()
#: id(runtime) → (runtime's database URL, its pool)
_pools: dict[int, tuple[str, ConnectionPool[psycopg.Connection[Any]]]] = {}


def _options(database_url: str) -> str:
    """The URL's own ``options`` (if any) plus read-only sessions."""
    given = conninfo_to_dict(database_url).get("options")
    return f"{given} {READ_ONLY}".strip() if given else READ_ONLY


def audit_pool(runtime: _HasDatabase) -> ConnectionPool[psycopg.Connection[Any]]:
    """The runtime's audit pool, opened on first use (connections are made in the
    background; the first ``connection()`` waits for one)."""
    key = id(runtime)
    with _lock:
        found = _pools.get(key)
        if found is not None and found[0] == runtime.database_url:
            return found[1]
        if found is not None:  # a runtime that was never closed, its id reused
            found[1].close(timeout=1)
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            runtime.database_url,
            kwargs={
                "application_name": APPLICATION_NAME,
                # Every statement (and transaction) of the session is READ ONLY; autocommit
                # spares the BEGIN / COMMIT round trips — reads that must agree open their
                # own REPEATABLE READ transaction (``history._read_case``).
                "autocommit": True,
                "options": _options(runtime.database_url),
            },
            min_size=MIN_SIZE,
            max_size=MAX_SIZE,
            max_idle=60,
            timeout=WAIT_S,
            num_workers=1,
            name=APPLICATION_NAME,
            open=True,
        )
        _pools[key] = (runtime.database_url, pool)
        return pool


def close_pool(runtime: _HasDatabase, timeout: float = 5.0) -> None:
    """Close the runtime's audit pool, if it has one (blocking: run it in a thread)."""
    with _lock:
        found = _pools.pop(id(runtime), None)
    if found is not None:
        found[1].close(timeout=timeout)
