"""Runs projections: live from the EVENTS stream, or rebuilt from the event store.

Exactly-once: each projection keeps, per partition, the position of the last event it applied
in ``projection_positions``, updated in the same transaction as its rows. Events at or below
that position (JetStream redeliveries, a relay re-publish) are skipped; messages are acked
only after the commit.

Gap-free: skipping "at or below" is only right if events arrive in position order without
holes, and after a crash they do not (found by tests/faults): a projector killed while holding a
batch leaves it unacknowledged, its successor already receives the following events, and the
acknowledgement of those (AckPolicy.ALL) covers the lost ones; redeliveries arrive after newer
events. So the live runner sorts each batch per partition and, when the positions after the
projection's own are not contiguous, reads the missing range from the event store — the truth —
before applying (``complete_from_store``; log line ``projector.gap_filled``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from core import codec, eventlog
from core.gctune import tune_gc
from core.logging import get_logger
from core.messaging import Topology
from core.pull import DEFAULT_LINGER_S, Linger, fetch
from core.retry import backoff_delays, sleep_or_stop
from projections.base import POSITIONS_DDL, Envelope, Projection, insert_rows, json_rows

log = get_logger("projector")

#: At most this many events are read from the store to fill one batch's hole; the rest of that
#: partition's batch is left for later (it is filled again when the next events arrive).
FILL_LIMIT = 10_000
#: Seconds before JetStream redelivers events a (dead) projector did not acknowledge.
ACK_WAIT_S = 10.0

#: The live projector's transactions commit asynchronously (this transaction only; the event
#: store, the relay's positions and its log chain keep ``synchronous_commit = on``). Safe for
#: read models: the rows and the projection's position commit atomically either way, so a
#: PostgreSQL crash can only lose the last few *whole* batches (at most ~3 × wal_writer_delay).
#: Their events are acknowledged on the stream by then, but the next event of that partition
#: arrives above the position the database kept, ``complete_from_store`` sees the hole and
#: reads it from the event store — the truth, committed synchronously — and any read model
#: can be rebuilt from the store as well. What it buys: the projector does not wait for a WAL
#: flush per batch, and PostgreSQL groups those flushes.
#: Said in the statement that takes the projections' locks (``projection_lock``): no round
#: trip of its own.
READ_MODEL_COMMIT = "set_config('synchronous_commit', 'off', true)"
#: Batches up to this size are applied to a group's read models in one transaction
#: (``ProjectionRunner._apply_together``); bigger ones concurrently, one transaction each.
ONE_TRANSACTION_UPTO = 50


async def setup(pool: asyncpg.Pool, projections: Sequence[Projection]) -> None:
    """Create the positions table and every projection's tables (idempotent)."""
    async with pool.acquire() as conn:
        await conn.execute(POSITIONS_DDL)
        for projection in projections:
            await conn.execute(projection.ddl())


async def projection_lock(
    conn: asyncpg.Connection, *names: str, read_model_commit: bool = False
) -> None:
    """Serialise writers of these projections (live runner vs. rebuild swap) for this
    transaction: one statement, locks taken in name order (as every holder takes them).
    ``read_model_commit``: the same statement also makes this transaction's commit
    asynchronous (:data:`READ_MODEL_COMMIT`) — one round trip less per batch for the live
    runner."""
    ordered = sorted(set(names))
    calls = [
        f"pg_advisory_xact_lock(hashtext(current_schema() || ':projection:' || ${i + 1}))"
        for i in range(len(ordered))
    ]
    if read_model_commit:
        calls.insert(0, READ_MODEL_COMMIT)
    await conn.execute("SELECT " + ", ".join(calls), *ordered)


async def apply_batch(
    conn: asyncpg.Connection,
    projection: Projection,
    envelopes: Sequence[Envelope],
    lock: bool = True,
) -> int:
    """Apply the not-yet-applied envelopes in one transaction; returns how many were new."""
    async with conn.transaction():
        return await apply_group(conn, [projection], envelopes, lock)


async def apply_group(
    conn: asyncpg.Connection,
    projections: Sequence[Projection],
    envelopes: Sequence[Envelope],
    lock: bool = True,
    read_model_commit: bool = False,
) -> int:
    """Apply the batch to each of ``projections`` (in that order) inside the caller's
    transaction, each skipping what its own positions say it has; returns the most any of
    them took. Exactly-once per projection: its rows and its positions commit together.

    One statement takes the projections' locks (in name order, as any other holder takes
    one), one reads and one writes all their positions: at a trickle the projector's cost
    was these per-projection round trips, not the rows."""
    names = [p.name for p in projections]
    if lock:
        await projection_lock(conn, *names, read_model_commit=read_model_commit)
    return await _apply_known(conn, projections, envelopes, await _positions(conn, names))


async def complete_and_apply(
    conn: asyncpg.Connection, projections: Sequence[Projection], envelopes: Sequence[Envelope]
) -> tuple[list[Envelope], int, int]:
    """:func:`complete_from_store` then :func:`apply_group`, inside the caller's transaction
    (whose commit it makes asynchronous, :data:`READ_MODEL_COMMIT`), on ONE read of the
    positions taken under the projections' locks (the live runner's
    path for a small batch: a lock, a read, the rows, a write — no separate checkout and
    query to find holes first). Returns the batch completed, the most any projection
    applied and how many envelopes came from the store."""
    names = [p.name for p in projections]
    await projection_lock(conn, *names, read_model_commit=True)
    known = await _positions(conn, names)
    complete, filled = await _fill_holes(conn, names, envelopes, known)
    return complete, await _apply_known(conn, projections, complete, known), filled


async def _positions(conn: asyncpg.Connection, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Each projection's position per partition (absent: nothing applied yet)."""
    rows = await conn.fetch(
        "SELECT projection, partition, position FROM projection_positions "
        "WHERE projection = ANY($1::text[])",
        list(names),
    )
    known: dict[str, dict[str, int]] = {}
    for r in rows:
        known.setdefault(r["projection"], {})[r["partition"]] = int(r["position"])
    return known


_POSITION = {"projection": "text", "partition": "text", "position": "bigint"}
_WRITE_POSITIONS = (
    insert_rows("projection_positions", _POSITION)
    + " ON CONFLICT (projection, partition) "
    "DO UPDATE SET position = EXCLUDED.position, updated_at = now()"
)


async def _apply_known(
    conn: asyncpg.Connection,
    projections: Sequence[Projection],
    envelopes: Sequence[Envelope],
    known: dict[str, dict[str, int]],
) -> int:
    """The body of :func:`apply_group` once the positions are read."""
    written: list[tuple[str, str, int]] = []
    most = 0
    for projection in projections:
        positions = known.get(projection.name, {})
        moved: dict[str, int] = {}
        fresh: list[Envelope] = []
        for env in envelopes:
            partition = env["partition"]
            position = env["position"]
            if position > moved.get(partition, positions.get(partition, 0)):
                fresh.append(env)
                moved[partition] = position
        if fresh:
            await projection.apply(conn, fresh)
            written.extend((projection.name, p, pos) for p, pos in moved.items())
            most = max(most, len(fresh))
    if written:
        await conn.execute(
            _WRITE_POSITIONS,
            json_rows(dict(zip(_POSITION, row, strict=True)) for row in written),
        )
    return most


async def complete_from_store(
    conn: asyncpg.Connection, names: Sequence[str], envelopes: Sequence[Envelope]
) -> tuple[list[Envelope], int]:
    """The batch per partition in position order, holes filled from the event store.

    Returns the envelopes to apply and how many of them came from the store. For each
    partition, positions above the lowest position of the ``names`` projections must run
    contiguously up to the batch's highest; otherwise that range is read from the store
    (which also confirms holes in the numbering left by rolled-back inserts).
    """
    return await _fill_holes(conn, names, envelopes, await _positions(conn, names))


async def _fill_holes(
    conn: asyncpg.Connection,
    names: Sequence[str],
    envelopes: Sequence[Envelope],
    known: dict[str, dict[str, int]],
) -> tuple[list[Envelope], int]:
    """The body of :func:`complete_from_store` once the positions are read."""
    by_partition: dict[str, dict[int, Envelope]] = {}
    for env in envelopes:
        by_partition.setdefault(str(env["partition"]), {})[int(env["position"])] = env
    out: list[Envelope] = []
    filled = 0
    for partition, items in by_partition.items():
        low = min(known.get(name, {}).get(partition, 0) for name in names)
        high = max(items)
        wanted = sorted(pos for pos in items if pos > low)
        if wanted and wanted != list(range(low + 1, high + 1)):
            stored = await eventlog.read_envelopes(conn, partition, low, FILL_LIMIT, upto=high)
            filled += sum(1 for env in stored if env["position"] not in items)
            items = {int(env["position"]): env for env in stored}
        out.extend(items[pos] for pos in sorted(items) if pos > low)
    return out, filled


class ProjectionRunner:
    """A durable pull consumer on EVENTS feeding one projection or a group of them.

    A group shares one consumer and one decode per batch — cheaper on a small box — and
    applies it to its read models — a small batch in one transaction, a big one concurrently,
    one transaction each (``_apply_all``);
    separate runners (``gridctl run projector --projections queue``) scale out.
    """

    def __init__(
        self,
        projection: Projection | Sequence[Projection],
        js: JetStreamContext,
        topo: Topology,
        pool: asyncpg.Pool,
        batch: int = 1000,
        on_applied: Callable[[list[Envelope]], Any] | None = None,
        durable_prefix: str = "proj",
        linger: float | Linger = DEFAULT_LINGER_S,
        durable: str | None = None,
    ) -> None:
        self.projections: list[Projection] = (
            list(projection) if isinstance(projection, list | tuple) else [projection]  # type: ignore[list-item]
        )
        self.projection = self.projections[0]
        self.js = js
        self.topo = topo
        self.pool = pool
        self.linger = linger
        self.batch = batch
        self.on_applied = on_applied
        self.durable = durable or f"{durable_prefix}_{'_'.join(p.name for p in self.projections)}"
        self._names = [p.name for p in self.projections]
        #: The queue last: readers find a case by it (see ``_apply_apart``).
        self._ordered = sorted(self.projections, key=lambda p: p.name == "queue")
        self.applied = 0

    async def _apply_together(self, envelopes: list[Envelope]) -> tuple[list[Envelope], int, int]:
        """Every projection of the group in ONE transaction on one connection (the queue
        last), holes filled on the same read of the positions. For a small batch the
        per-transaction round trips and commits were most of the projector's PostgreSQL
        cost (four transactions for one report at a trickle); each projection is still
        exactly-once by its own position, in the same transaction as its rows."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await complete_and_apply(conn, self._ordered, envelopes)

    async def _apply_one(self, projection: Projection, envelopes: list[Envelope]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            return await apply_group(conn, [projection], envelopes, read_model_commit=True)

    async def _apply_apart(self, envelopes: list[Envelope]) -> tuple[list[Envelope], int, int]:
        """A big batch: holes filled first, then every projection of the group in its own
        transaction on its own connection, concurrently: PostgreSQL works on one read model
        while Python prepares the next (the group's PostgreSQL time was the projector's
        critical path). Each projection stays exactly-once by itself (rows + position in one
        transaction); after a failure the batch is redelivered (or refilled from the store)
        and the projections that already committed skip it. Read models may differ by one
        batch for a few milliseconds, as they may between separate projector processes —
        except that the case queue commits last: it is the index readers find a case by, so
        a case that is in the queue already has its timeline (and map and metrics) rows."""
        async with self.pool.acquire() as conn:
            envelopes, filled = await complete_from_store(conn, self._names, envelopes)
        first = [p for p in self.projections if p.name != "queue"]
        last = [p for p in self.projections if p.name == "queue"]
        results: list[Any] = list(await asyncio.gather(
            *(self._apply_one(p, envelopes) for p in first), return_exceptions=True
        ))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        for projection in last:
            results.append(await self._apply_one(projection, envelopes))
        return envelopes, max((r for r in results if isinstance(r, int)), default=0), filled

    async def _apply_all(self, envelopes: list[Envelope]) -> tuple[list[Envelope], int, int]:
        """Fill the batch's holes and apply it to every projection of the group: together
        when small (or a group of one), apart when big. Returns the batch completed, the most
        any projection applied and how many envelopes came from the store."""
        if len(envelopes) <= ONE_TRANSACTION_UPTO or len(self.projections) == 1:
            return await self._apply_together(envelopes)
        return await self._apply_apart(envelopes)

    async def run(self, stop: asyncio.Event) -> None:
        tune_gc()
        sub = None
        delays = backoff_delays()
        while not stop.is_set():
            try:
                if sub is None:
                    sub = await self.js.pull_subscribe(
                        self.topo.event_filter(),
                        durable=self.durable,
                        stream=self.topo.events_stream,
                        config=ConsumerConfig(
                            durable_name=self.durable,
                            ack_policy=AckPolicy.ALL,
                            deliver_policy=DeliverPolicy.ALL,
                            # A batch is one short transaction; a dead projector's batch
                            # comes back after this (or is filled from the store sooner).
                            ack_wait=ACK_WAIT_S,
                            max_ack_pending=50_000,
                        ),
                    )
                try:
                    msgs = await fetch(sub, self.batch, 0.5, self.linger)
                except (TimeoutError, NatsTimeout):
                    continue
                if not msgs:
                    continue
                envelopes = []
                for msg in msgs:
                    try:
                        envelopes.append(codec.loads(msg.data))
                    except ValueError:
                        log.error("projector.bad_event", subject=msg.subject)
                envelopes, fresh, filled = await self._apply_all(envelopes)
                if filled:
                    log.warning(
                        "projector.gap_filled",
                        projection=self.projection.name,
                        events=filled,
                        note="events the stream did not bring in order, read from the store",
                    )
                await msgs[-1].ack()  # AckPolicy.ALL: acks everything up to this one
                self.applied += fresh
                if fresh and self.on_applied is not None:
                    result = self.on_applied(envelopes)
                    if asyncio.iscoroutine(result):
                        await result
                delays = backoff_delays()
            except Exception as exc:
                delay = next(delays)
                log.warning(
                    "projector.retry",
                    projection=self.projection.name,
                    error=repr(exc),
                    delay_s=round(delay, 2),
                )
                sub = None if "consumer" in repr(exc).lower() else sub
                await sleep_or_stop(stop, delay)
