"""The write side: one eventsourcing Application (one events table) per partition.

Why one table per district: eventsourcing's PostgreSQL recorder takes an exclusive table lock
per insert to keep the notification log gap-free, so writes to one table are serialised. A
table per district lets districts be written in parallel by separate workers, and each
partition has its own notification sequence that the relay follows (see DESIGN.md).
The Application is synchronous (psycopg 3): callers run it in a worker thread.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import unquote, urlparse

from eventsourcing.application import Application


class CaseStore(Application[Any]):
    """The event store of one partition. ``name`` decides the table: ``cases_<p>_events``."""

    name = "Cases"


def eventsourcing_env(database_url: str, schema: str = "public") -> dict[str, str]:
    """Translate a ``postgresql://`` URL into eventsourcing's POSTGRES_* settings."""
    url = urlparse(database_url)
    if url.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"DATABASE_URL must be postgresql://…, got {url.scheme!r}")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": (url.path or "/postgres").lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "2",
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        "CREATE_TABLE": "y",
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }
    if schema and schema != "public":
        env["POSTGRES_SCHEMA"] = schema
    return env


def table_name(partition: str) -> str:
    """The events table of a partition (what eventsourcing derives from the app name)."""
    return f"cases_{partition.lower()}_events"


class StoreRegistry:
    """Opens one CaseStore per partition on demand and keeps it for the process lifetime."""

    def __init__(self, database_url: str, schema: str = "public") -> None:
        self._env = eventsourcing_env(database_url, schema)
        self._stores: dict[str, CaseStore] = {}
        self._lock = threading.Lock()

    def get(self, partition: str) -> CaseStore:
        """The store of a partition (district code), created with its table if needed."""
        if not partition.isalnum():
            raise ValueError(f"partition must be alphanumeric, got {partition!r}")
        with self._lock:
            store = self._stores.get(partition)
            if store is None:
                cls = type(f"Cases{partition}", (CaseStore,), {"name": f"Cases_{partition}"})
                store = cls(env=dict(self._env))
                self._stores[partition] = store
            return store

    def partitions(self) -> list[str]:
        with self._lock:
            return sorted(self._stores)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
