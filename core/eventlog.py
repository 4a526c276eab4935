"""Reading the event store's notification log: the one reader every consumer uses.

Each partition's events are one table, ``cases_<p>_events`` (``core.eventstore`` writes it
through eventsourcing), whose ``notification_id`` is the event's position in the partition's
log. Everything that reads events back without loading an aggregate — the relay (outbox →
EVENTS), the projector filling holes, rebuilds and ``replay --check``, the auditors' histories,
verification and exports, the gateway asking whether a report's case already exists — reads
those rows here, so the table's name, its columns and the order of the log are written once.

Why not eventsourcing's ``select_notifications``: it is synchronous (a worker thread per read),
builds a dict per row and pre-pings its connection on every call — about a fifth of the relay's
CPU. The rows read here are the same (``tests/integration/test_fast_pipeline_parts.py`` checks
it). Two drivers use the same SQL: asyncpg for the asynchronous roles (:func:`read_envelopes`,
:func:`head`) and psycopg for the auditors' synchronous tools (:func:`select_events`,
:func:`store_partitions`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import asyncpg

from core.db import check_schema
from core.envelope import envelope_from_stored

if TYPE_CHECKING:  # the auditors' tools take a psycopg connection; a rebuild's fold
    # processes import this module and need neither psycopg nor eventsourcing
    import psycopg

#: The columns of a stored event, in the order every reader unpacks them:
#: ``(position, case_id, version, topic, state)``; ``case_id`` as text (psycopg readers).
EVENT_COLUMNS = "notification_id, originator_id::text, originator_version, topic, state"
#: The same with ``originator_id`` as a UUID (asyncpg decodes it natively; envelopes).
_ENVELOPE_COLUMNS = "notification_id, originator_id, originator_version, topic, state"
#: Tables that are partitions' event logs (``information_schema`` pattern).
TABLE_PATTERN = "^cases_[a-z0-9]+_events$"

Envelope = dict[str, Any]


def table_name(partition: str) -> str:
    """The events table of a partition (what eventsourcing derives from the app name that
    ``core.eventstore`` gives each partition's store)."""
    return f"cases_{partition.lower()}_events"


def qualified(partition: str, schema: str | None = None) -> str:
    """The partition's events table, schema-qualified when ``schema`` is given (a connection
    whose ``search_path`` is elsewhere — a rebuild's scratch schema — still reads the store)."""
    if not partition.isalnum():
        raise ValueError(f"partition must be alphanumeric, got {partition!r}")
    table = table_name(partition)
    return f"{check_schema(schema)}.{table}" if schema else table


# ------------------------------------------------------------------- asyncpg (the roles)


async def read_envelopes(
    conn: asyncpg.Connection,
    partition: str,
    after: int,
    limit: int,
    upto: int | None = None,
    schema: str | None = None,
) -> list[Envelope]:
    """Envelopes (``core.envelope``) of the partition's events with ``after < position``
    (and ``position <= upto`` when given), in log order, at most ``limit``."""
    bound = "" if upto is None else " AND notification_id <= $3"
    params: tuple[Any, ...] = (after, limit) if upto is None else (after, limit, upto)
    rows = await conn.fetch(
        f"SELECT {_ENVELOPE_COLUMNS} FROM {qualified(partition, schema)} "
        f"WHERE notification_id > $1{bound} ORDER BY notification_id LIMIT $2",
        *params,
    )
    return [envelope_from_stored(partition, r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]


async def head(conn: asyncpg.Connection, partition: str, schema: str | None = None) -> int:
    """The partition's last position (0 when it has no events, or no table yet)."""
    table = qualified(partition, schema)
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return 0
    return int(await conn.fetchval(f"SELECT max(notification_id) FROM {table}") or 0)


async def existing_cases(
    conn: asyncpg.Connection,
    partition: str,
    case_ids: list[str],
    timeout: float | None = None,
) -> set[str]:
    """Which of ``case_ids`` already have their first event in the partition's log (one
    lookup by the table's primary key ``(originator_id, originator_version)``)."""
    rows = await conn.fetch(
        f"SELECT originator_id FROM {qualified(partition)} "
        "WHERE originator_id = ANY($1::uuid[]) AND originator_version = 1",
        case_ids,
        timeout=timeout,
    )
    return {str(row[0]) for row in rows}


class ExistingCases:
    """:func:`existing_cases` for many concurrent callers, asked together.

    The gateway asks for every report it accepts whether its case is already stored (a
    repeated idempotency key after JetStream's dedupe window). One query per report was a
    sixth of the gateway's CPU and a pool checkout, a round trip and a backend's work each;
    under load dozens of reports wait at once. So at most one query runs at a time: whatever
    arrives while it runs is asked together in the next one (one ``= ANY($1)`` per
    partition). A report arriving alone is asked at once (no timer, no added wait); under
    load the batches grow by themselves. A database that does not answer within
    ``timeout`` gives every waiting caller :class:`TimeoutError` (or the database's error).
    """

    def __init__(self, pool: asyncpg.Pool, timeout: float = 1.0) -> None:
        self.pool = pool
        self.timeout = timeout
        self._waiting: dict[str, list[tuple[list[str], asyncio.Future[set[str]]]]] = {}
        self._running = False
        #: Queries made (for tests and the benchmark's curiosity).
        self.queries = 0

    async def ask(self, partition: str, case_ids: list[str]) -> set[str]:
        """The ids among ``case_ids`` whose case is in ``partition``'s log."""
        future: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(partition, []).append((case_ids, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                waiting, self._waiting = self._waiting, {}
                try:
                    async with self.pool.acquire(timeout=self.timeout) as conn:
                        for partition, callers in waiting.items():
                            asked = sorted({i for ids, _ in callers for i in ids})
                            self.queries += 1
                            found = await existing_cases(
                                conn, partition, asked, timeout=self.timeout
                            )
                            for ids, future in callers:
                                if not future.done():
                                    future.set_result(found.intersection(ids))
                except BaseException as exc:  # every waiting caller hears of it
                    for callers in waiting.values():
                        for _, future in callers:
                            if not future.done():
                                future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._running = False


# ------------------------------------------------------------- psycopg (the auditors' tools)


def store_partitions(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Partitions that have an events table in ``schema`` (whatever the configuration says)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
        "AND table_name ~ %s",
        (check_schema(schema), TABLE_PATTERN),
    ).fetchall()
    return sorted(str(r[0])[len("cases_") : -len("_events")] for r in rows)


def select_events(
    conn: psycopg.Connection[Any],
    schema: str,
    partition: str,
    where: str = "TRUE",
    params: tuple[Any, ...] | list[Any] = (),
    order: str = "notification_id",
) -> list[tuple[Any, ...]]:
    """Raw rows ``(position, case_id, version, topic, state)`` matching ``where`` (SQL with
    ``%s`` placeholders, written by the caller, never from input), in ``order``."""
    return conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM {qualified(partition, schema)} "
        f"WHERE {where} ORDER BY {order}",
        params,
    ).fetchall()

