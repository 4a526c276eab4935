"""Reconciliation after a fault: the promises, the store, the stream and the read models agree.

Checks (each returns counts; ``problems`` lists every violation):

* promises — every idempotency key that got a 202 has exactly one creation event
  (``originator_version = 1``) for its case id in the event store and exactly one
  ``case_queue`` row; no case exists that nobody was promised;
* lifecycle — every file / dispatch that answered 200 is stored exactly once (one ``Filed`` /
  one ``Dispatched`` event per case);
* stream — per partition, the EVENTS stream holds the store's notification ids once each and
  in order (the stream's positions equal the store's, element by element);
* read models — every read model equals a rebuild from the store (``build_scratch`` +
  ``compare_tables``), and its positions equal the store's head;
* consumers — every durable consumer has nothing pending and nothing unacknowledged;
* DLQ — no valid command was dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from core import codec
from core.eventlog import table_name
from core.eventstore import StoreRegistry
from core.ids import case_id_for_key
from projections.notifications import NotifyProjection
from projections.read_models import all_projections
from projections.rebuild import build_scratch, compare_tables
from tests.faults.harness import FaultSystem
from tests.faults.load import Ledger


async def partitions(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 "
        "AND table_name LIKE 'cases\\_%\\_events'",
        schema,
    )
    return sorted(r["table_name"][len("cases_") : -len("_events")] for r in rows)


async def store_rows(conn: asyncpg.Connection, schema: str, parts: list[str]) -> dict[str, Any]:
    """Per partition: notification ids in order; creation events per case; events by type."""
    ids: dict[str, list[int]] = {}
    creations: Counter[str] = Counter()
    by_type: Counter[tuple[str, str]] = Counter()
    for p in parts:
        rows = await conn.fetch(
            f"SELECT notification_id, originator_id, originator_version, topic "
            f"FROM {schema}.{table_name(p)} ORDER BY notification_id"
        )
        ids[p] = [int(r["notification_id"]) for r in rows]
        for r in rows:
            kind = str(r["topic"]).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
            by_type[(str(r["originator_id"]), kind)] += 1
            if r["originator_version"] == 1:
                creations[str(r["originator_id"])] += 1
    return {"ids": ids, "creations": creations, "by_type": by_type}


async def stream_positions(system: FaultSystem, parts: list[str]) -> dict[str, list[int]]:
    """The positions the EVENTS stream holds per partition, in stream order."""

    async def read(js: Any) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for p in parts:
            sub = await js.pull_subscribe(
                system.topo.event_filter(p),
                stream=system.topo.events_stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.NONE,
                    deliver_policy=DeliverPolicy.ALL,
                    inactive_threshold=30.0,
                ),
            )
            positions: list[int] = []
            try:
                while True:
                    info = await sub.consumer_info()
                    if not info.num_pending:
                        break
                    try:
                        msgs = await sub.fetch(min(5000, info.num_pending), timeout=5)
                    except TimeoutError:
                        continue
                    positions.extend(int(codec.loads(m.data)["position"]) for m in msgs)
            finally:
                await sub.unsubscribe()
            out[p] = positions
        return out

    result: dict[str, list[int]] = await system.js_call(read)
    return result


async def compare_read_models(
    system: FaultSystem, stores: StoreRegistry, parts: list[str], heads: dict[str, int]
) -> dict[str, Any]:
    """Rebuild every read model into a scratch schema and diff it against the live tables."""
    differences: dict[str, int] = {}
    lagging: dict[str, dict[str, int]] = {}
    rows: dict[str, int] = {}
    for projection in [*all_projections(), NotifyProjection()]:
        scratch = f"{system.schema}_rc_{projection.name}"
        conn, _events = await build_scratch(
            system.pg.url,
            scratch,
            projection,
            stores,
            parts,  # type: ignore[arg-type]
        )
        try:
            for table in projection.tables:
                if table == "notifications":  # bigserial id + created_at: compare the content
                    diff = await _compare_notifications(conn, system.schema, scratch)
                else:
                    key = await conn.fetchval(
                        "SELECT column_name FROM information_schema.columns WHERE "
                        "table_schema = $1 AND table_name = $2 ORDER BY ordinal_position LIMIT 1",
                        system.schema,
                        table,
                    )
                    diff = len(await compare_tables(conn, system.schema, scratch, table, key))
                differences[table] = diff
                rows[table] = int(
                    await conn.fetchval(f"SELECT count(*) FROM {system.schema}.{table}")
                )
            live = await conn.fetch(
                f"SELECT partition, position FROM {system.schema}.projection_positions "
                "WHERE projection = $1",
                projection.name,
            )
            positions = {r["partition"]: int(r["position"]) for r in live}
            behind = {
                p: heads[p] - positions.get(p, 0) for p in parts if heads[p] != positions.get(p, 0)
            }
            if behind:
                lagging[projection.name] = behind
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
            await conn.close()
    return {"differences": differences, "lagging": lagging, "rows": rows}


async def _compare_notifications(conn: asyncpg.Connection, live: str, scratch: str) -> int:
    cols = "kind, case_no, case_id, audience, title, body, data, at, partition, position"
    n = 0
    for a, b in ((live, scratch), (scratch, live)):
        n += int(
            await conn.fetchval(
                f"SELECT count(*) FROM (SELECT {cols} FROM {a}.notifications "
                f"EXCEPT SELECT {cols} FROM {b}.notifications) d"
            )
        )
    return n


async def wait_drained(system: FaultSystem, ledger: Ledger, timeout: float = 90.0) -> float:
    """Wait until every promised case is in the read model and every consumer is idle;
    returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    expected = {v for v in ledger.accepted.values()}
    last: Any = None
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(system.pg.url, timeout=3)
            try:
                listed = {
                    r["case_no"]
                    for r in await conn.fetch(f"SELECT case_no FROM {system.schema}.case_queue")
                }
                parts = await partitions(conn, system.schema)
                heads = {
                    p: int(
                        await conn.fetchval(
                            f"SELECT coalesce(max(notification_id), 0) "
                            f"FROM {system.schema}.{table_name(p)}"
                        )
                    )
                    for p in parts
                }
                positions = await conn.fetch(
                    f"SELECT projection, partition, position FROM {system.schema}."
                    "projection_positions"
                )
            finally:
                await conn.close()
            behind = [
                r
                for r in positions
                if r["partition"] in heads and r["position"] < heads[r["partition"]]
            ]
            consumers = await system.consumers()
            busy = [c for c in consumers if c["num_pending"] or c["num_ack_pending"]]
            missing = expected - listed
            last = {"missing": len(missing), "busy": busy, "behind": len(behind)}
            if not missing and not busy and not behind:
                return time.monotonic() - started
        except Exception as exc:  # a server may still be coming back
            last = repr(exc)
        await asyncio.sleep(0.5)
    raise AssertionError(f"system did not drain within {timeout}s: {last}")


async def reconcile(system: FaultSystem, ledger: Ledger, phase: str) -> dict[str, Any]:
    """All checks; returns the counts (printed at the end of the run) with ``problems``."""
    problems: list[str] = [f"client saw: {e}" for e in ledger.errors]
    conn = await asyncpg.connect(system.pg.url)
    try:
        parts = await partitions(conn, system.schema)
        store = await store_rows(conn, system.schema, parts)
        queue_rows = await conn.fetch(
            f"SELECT case_id::text AS case_id, case_no, status FROM {system.schema}.case_queue"
        )
        pg_connections = int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            )
        )
    finally:
        await conn.close()
    # 1. promises: one key → one case (one creation event, one queue row)
    creations: Counter[str] = store["creations"]
    queue_by_id = Counter(r["case_id"] for r in queue_rows)
    queue_no = {r["case_id"]: r["case_no"] for r in queue_rows}
    status = {r["case_no"]: r["status"] for r in queue_rows}
    promised_ids = {str(case_id_for_key(k)): no for k, no in ledger.accepted.items()}
    for case_id, case_no in promised_ids.items():
        if creations.get(case_id, 0) != 1:
            problems.append(f"{case_no}: {creations.get(case_id, 0)} creation events")
        if queue_by_id.get(case_id, 0) != 1 or queue_no.get(case_id) != case_no:
            problems.append(f"{case_no}: {queue_by_id.get(case_id, 0)} case_queue rows")
    unpromised = set(creations) - set(promised_ids)
    if unpromised:
        problems.append(f"{len(unpromised)} cases nobody got a 202 for")
    duplicated = [c for c, n in creations.items() if n > 1]
    # 2. lifecycle: each acknowledged command stored once
    by_type: Counter[tuple[str, str]] = store["by_type"]
    no_to_id = {no: cid for cid, no in promised_ids.items()}
    lifecycle_ok = 0
    for case_no, verbs in ledger.lifecycle.items():
        cid = no_to_id[case_no]
        for verb, event in (("file", "Filed"), ("dispatch", "Dispatched")):
            if verb in verbs:
                n = by_type.get((cid, event), 0)
                if n != 1:
                    problems.append(f"{case_no}: {verb} answered 200, {n} {event} events")
                else:
                    lifecycle_ok += 1
        if "dispatch" in verbs and status.get(case_no) != "dispatched":
            problems.append(f"{case_no}: dispatched but read model says {status.get(case_no)}")
    # 3. stream: every stored event once and in order
    ids: dict[str, list[int]] = store["ids"]
    streamed = await stream_positions(system, parts)
    stream_events = sum(len(v) for v in streamed.values())
    for p in parts:
        if streamed[p] != ids[p]:
            dupes = len(streamed[p]) - len(set(streamed[p]))
            missing = len(set(ids[p]) - set(streamed[p]))
            out_of_order = streamed[p] != sorted(streamed[p])
            problems.append(
                f"partition {p}: stream {len(streamed[p])} vs store {len(ids[p])} "
                f"(duplicates {dupes}, missing {missing}, out of order {out_of_order})"
            )
    # 4. read models equal a rebuild, and are caught up
    heads = {p: (ids[p][-1] if ids[p] else 0) for p in parts}
    stores = StoreRegistry(system.pg.url, system.schema)
    try:
        models = await compare_read_models(system, stores, parts, heads)
    finally:
        await asyncio.to_thread(stores.close)
    for table, n in models["differences"].items():
        if n:
            problems.append(f"read model {table}: {n} rows differ from a rebuild")
    for name, behind in models["lagging"].items():
        problems.append(f"read model {name} behind the store: {behind}")
    # 5. consumers idle, nothing dead-lettered
    consumers = await system.consumers()
    stuck = [c for c in consumers if c["num_pending"] or c["num_ack_pending"]]
    for c in stuck:
        problems.append(f"consumer {c['name']} stuck: {c}")

    async def dlq(js: Any) -> int:
        return int((await js.stream_info(system.topo.dlq_stream)).state.messages)

    dead = await system.js_call(dlq)
    if dead:
        problems.append(f"{dead} commands dead-lettered")
    counts = {
        "phase": phase,
        "keys_202": len(ledger.accepted),
        "cases_in_store": len(creations),
        "duplicate_cases": len(duplicated),
        "case_queue_rows": len(queue_rows),
        "lifecycle_200": sum(len(v) for v in ledger.lifecycle.values()),
        "lifecycle_stored_once": lifecycle_ok,
        "events_in_store": sum(len(v) for v in ids.values()),
        "events_in_stream": stream_events,
        "partitions": len(parts),
        "read_model_rows": sum(models["rows"].values()),
        "read_model_diffs": sum(models["differences"].values()),
        "consumers": len(consumers),
        "consumers_stuck": len(stuck),
        "dead_lettered": dead,
        "client_retries": ledger.retries,
        "pg_connections": pg_connections,
        "http": dict(sorted(ledger.statuses.items())),
        "problems": problems,
    }
    system.counts.append(counts)
    return counts
