"""The write side: one eventsourcing Application (one events table) per partition.

Why one table per district: eventsourcing's PostgreSQL recorder takes an exclusive table lock
per insert to keep the notification log gap-free, so writes to one table are serialised. A
table per district lets districts be written in parallel by separate workers, and each
partition has its own notification sequence that the relay follows (see DESIGN.md).
The Application is synchronous (psycopg 3): callers run it in a worker thread.

Speed (docs/performance.md, "Back-end pipeline"): the store writes through ``FastTranscoder``
(orjson; the bytes are the ones eventsourcing's ``JSONTranscoder`` writes, so every reader —
``core.eventlog``, ``core.envelope``, the audit read side, eventsourcing itself — decodes old
and new rows alike)
and ``FastRecorder`` (the batch travels as four binary arrays instead of an array of composite
values in text form, which psycopg escapes in Python and PostgreSQL parses again).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlparse

import orjson
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    StoredEvent,
    Transcoder,
    UUIDAsHex,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

#: Values orjson writes exactly as the stdlib encoder of ``JSONTranscoder`` does (datetime and
#: Decimal reach ``default``, which wraps them the same way).
_ENCODE_LEAVES = frozenset({str, int, bool, type(None), datetime, Decimal})


def _plain_state(obj: dict[str, Any]) -> bool:
    """True when every value in ``obj`` (recursively) is one orjson encodes like the stdlib.

    Not plain: UUIDs (orjson would write a bare string where the stdlib writes the
    ``uuid_hex`` wrapper), dataclasses, enums, dates, NaN / infinities (orjson writes
    ``null``), subclasses — they take the stdlib path, so nothing changes meaning.
    """
    stack: list[Any] = [obj]
    pop, push = stack.pop, stack.append
    while stack:
        container = pop()
        for value in container.values() if type(container) is dict else container:
            kind = type(value)
            if kind in _ENCODE_LEAVES:
                continue
            if kind is float:
                if value - value != 0.0:  # NaN or ±inf
                    return False
            elif kind is dict or kind is list or kind is tuple:
                push(value)
            else:
                return False
    return True


class FastTranscoder(JSONTranscoder):
    """``JSONTranscoder`` with orjson underneath; same stored format, both ways.

    Encoding: insertion-ordered compact JSON, non-ASCII as raw UTF-8, datetimes / Decimals /
    UUIDs as ``{"_type_": …, "_data_": …}`` — byte for byte what the stdlib encoder writes for
    the same state (floats may differ in spelling only, e.g. ``0.00001`` for ``1e-05``; both
    parse to the same number). Anything orjson would write differently goes through the
    stdlib encoder. Decoding stays the library's: orjson would read integers beyond 64 bits
    as floats, and decoding is not on the intake path.
    """

    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME

    def encode(self, obj: Any) -> bytes:
        if type(obj) is dict and _plain_state(obj):
            try:
                return orjson.dumps(obj, default=self._encode_obj, option=self._OPTIONS)
            except orjson.JSONEncodeError:
                pass  # e.g. an int beyond 64 bits or a non-string key: the stdlib decides
        return super().encode(obj)


class FastRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder with a cheaper batch insert (same table, lock, NOTIFY, ids).

    The stock insert sends ``unnest(%s::stored_event_uuid[])``: psycopg dumps an array of
    composite values as text in Python (escaping every bytea twice) and PostgreSQL parses it
    back — a third of the worker's save time. Four parallel arrays in binary form carry the
    same rows; ``unnest`` of several arrays yields them in order, so notification ids are
    issued in the order of the events, as before.
    """

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
            id_type=Identifier(self.datastore.originator_id_type),
        )

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_events_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )


class CaseStore(Application[Any]):
    """The event store of one partition. ``name`` decides the table: ``cases_<p>_events``."""

    name = "Cases"

    def construct_transcoder(self) -> Transcoder:
        transcoder = FastTranscoder()
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            transcoder.register(transcoding)
        return transcoder

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """``Application.save`` without its per-object ``isinstance`` against two
        runtime-checkable protocols (about 10 µs per case on Python 3.11) when every object is
        an aggregate; anything else takes the library's path."""
        if not all(isinstance(obj, Aggregate) for obj in objs):
            return super().save(*objs, **kwargs)
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        for obj in objs:
            processing_event.events.extend(obj.collect_events())
            processing_event.aggregates[obj.id] = obj
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # deprecated hook, kept as the library calls it
        return recordings


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
        "POSTGRES_POOL_SIZE": "1",  # per partition and process: PostgreSQL has ~100 slots
        "POSTGRES_MAX_OVERFLOW": "2",  # a worker batch or relay read uses one at a time
        # No ping before every checkout: it was a whole round trip per worker batch (a fifth
        # of the worker's time under load). A connection that died with its server fails on
        # first use instead, psycopg's pool drops it, and eventsourcing retries the insert or
        # select on another (OperationalError, 10 attempts): tests/faults restart PostgreSQL.
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        "CREATE_TABLE": "y",
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        "APPLICATION_RECORDER_TOPIC": f"{FastRecorder.__module__}:{FastRecorder.__qualname__}",
    }
    if schema and schema != "public":
        env["POSTGRES_SCHEMA"] = schema
    return env


class StoreRegistry:
    """Opens one CaseStore per partition on demand and keeps it for the process lifetime."""

    def __init__(self, database_url: str, schema: str = "public") -> None:
        #: Where the partitions' events tables are (``core.eventlog`` reads them there).
        self.schema = schema
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

    def tables_ready(self) -> None:
        """The partitions' tables exist (set up under the set-up lock): stores opened from now
        on skip eventsourcing's ``CREATE TABLE / CREATE OR REPLACE FUNCTION`` statements. Run
        lazily by one process while another holds the lock and runs them, those collided in
        PostgreSQL's catalogue ("tuple concurrently updated") and crashed the later one."""
        with self._lock:
            self._env["CREATE_TABLE"] = "n"

    def partitions(self) -> list[str]:
        with self._lock:
            return sorted(self._stores)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
