"""Fast rebuild of read models: fold the event store in memory, then COPY the final rows.

The live projector (projections/runner.py) applies each batch with reads and upserts, which
is right for a trickle of events and far too slow for millions. A rebuild knows it starts
from empty tables and owns them until the swap, so it can instead:

* read a partition's events in large chunks straight from its events table, as the
  envelopes the live projector receives (:func:`envelope_of`: the relay's envelopes after
  the NATS codec, decoded the cheap way);
* fold them with the projection's own functions — ``queue.fold_event``,
  ``map.advance`` / ``contribution``, ``metrics.fold`` — keeping the rows in memory, with the
  same per-batch rules as ``apply`` (the map forgets a case that reached a terminal status,
  the metrics forget a finished case, at the end of each chunk, as ``apply`` does at the end
  of each batch), so the result equals the live tables (tests compare them);
* write the final rows with binary COPY into the scratch tables, whose indexes and
  constraints are dropped before and built after the load.

A partition is independent of the others (a case, its grid and therefore every row and
counter key belong to exactly one partition), so partitions are folded in parallel
processes, each COPYing its own rows.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import orjson

from core import children, codec, envelope, eventlog
from core.db import check_schema
from projections import map as mapmodel
from projections import metrics, queue, timeline
from projections.base import Envelope

Rows = dict[str, tuple[Sequence[str], list[tuple[Any, ...]]]]  # table → (columns, rows)


# ---------------------------------------------------------------------------- reading


async def read_envelopes(
    conn: asyncpg.Connection, partition: str, after: int, limit: int, upto: int
) -> list[Envelope]:
    """The rows ``core.eventlog.read_envelopes`` reads, as the live projector receives them
    (:func:`envelope_of`)."""
    rows = await conn.fetch(
        f"SELECT notification_id, originator_id::text, originator_version, topic, state "
        f"FROM {eventlog.qualified(partition)} "
        "WHERE notification_id > $1 AND notification_id <= $3 ORDER BY notification_id LIMIT $2",
        after, limit, upto,
    )
    return [envelope_of(partition, r[0], r[1], r[2], r[3], r[4]) for r in rows]


_COMMON = envelope.COMMON
_INTERNAL = ("originator_id", "originator_version", "originator_topic")
_TYPES: dict[str, str] = {}  # topic → event type


def envelope_of(
    partition: str, position: int, case_id: str, version: int, topic: str, state: bytes
) -> Envelope:
    """One stored row as the live projector gets it from NATS: the relay's envelope
    (``core.envelope.envelope_from_stored``) after a trip through ``core.codec`` — times as
    UTC text ending in ``Z``. The folds take text or datetimes alike (parse_time); text is
    what the live path gives them, and the map's and the metrics' keys are made of it, so
    they need not format a datetime again (measured: the map's and the metrics' folds a
    tenth cheaper, the queue's and the timeline's the same).

    Made directly: the stored datetimes' keys are found in the bytes (no look at every
    field), their text is rewritten, not parsed. A row this cannot vouch for (a typed value
    below the top level, a key with an escape, another type, text not in Python's ISO form
    for UTC) takes the long way (``envelope_from_stored`` and the codec). Rebuilds read every
    event of the store: decoding was half of a rebuild's own time once events carried
    their summaries."""
    attrs = orjson.loads(state)
    typed = state.count(b'"_type_"')
    if typed:
        # The usual typed values are the event's time and its deadline: looked at first, by
        # key; the byte scan below only when the markers say there are others.
        done = []
        for key in _USUAL_TYPED:
            value = attrs.get(key)
            if type(value) is dict:
                text = _iso_z(value)
                if text is None:
                    return _long_way(partition, position, case_id, version, topic, state)
                attrs[key] = text
                done.append(key)
        if len(done) != typed and not _untype_scan(attrs, state, done):
            return _long_way(partition, position, case_id, version, topic, state)
    kind = _TYPES.get(topic)
    if kind is None:
        kind = _TYPES[topic] = topic.rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    pop = attrs.pop
    # The keys of core.envelope.COMMON spelled out, not looped over: the rebuild's hot path
    # (tests/unit/test_bulk_envelopes.py checks the result equals envelope_from_stored's).
    out: Envelope = {
        "partition": partition,
        "position": position,
        "case_id": case_id,
        "version": int(version),
        "type": kind,
        "at": pop("timestamp", None),
        "actor": pop("actor", None),
        "role": pop("role", None),
        "channel": pop("channel", None),
        "reason": pop("reason", None),
        "command_id": pop("command_id", None),
        "prev_hash": pop("prev_hash", None),
        "hash": pop("hash", None),
    }
    pop("originator_id", None)
    pop("originator_version", None)
    pop("originator_topic", None)
    out["data"] = attrs
    return out


#: Top-level keys that hold a datetime in the usual events (``timestamp`` in every one).
_USUAL_TYPED = ("timestamp", "due")
assert _COMMON == ("actor", "role", "channel", "reason", "command_id", "prev_hash", "hash")


def _iso_z(value: dict[str, Any]) -> str | None:
    """A stored ``{"_type_": "datetime_iso", "_data_": "…+00:00"}`` as the codec's Z text;
    None for anything else (another type, another zone, not Python's ISO form)."""
    if len(value) != 2 or value.get("_type_") != "datetime_iso":
        return None
    text = value.get("_data_")
    if type(text) is not str or len(text) not in (25, 32) or not text.endswith("+00:00"):
        return None
    return text[:-6] + "Z"


def _untype_scan(attrs: dict[str, Any], state: bytes, done: list[str]) -> bool:
    """Rewrite every typed value left among ``attrs`` found by its marker in the bytes
    (``'"<key>":{"_type_":"datetime_iso","_data_":"…"}'``), those of the keys in ``done``
    rewritten already (one marker each); False when a marker is not a top-level datetime
    this can vouch for (the caller then takes the long way)."""
    at = state.find(b'"_type_"')
    while at >= 0:
        key = ""
        if state[at - 2 : at] == b":{":
            quote = state.rfind(b'"', 0, at - 3)
            if quote >= 0:
                key = state[quote + 1 : at - 3].decode()
        value = attrs.get(key) if key else None
        if key in done:
            done.remove(key)  # its one marker; a second one under that key fails below
        else:
            text = _iso_z(value) if type(value) is dict else None
            if text is None:
                return False
            attrs[key] = text
        at = state.find(b'"_type_"', at + 8)
    return True


def _long_way(
    partition: str, position: int, case_id: str, version: int, topic: str, state: bytes
) -> Envelope:
    """:func:`envelope_of` by definition: the relay's envelope through the NATS codec."""
    relayed = envelope.envelope_from_stored(
        partition, position, UUID(case_id), version, topic, state
    )
    out: Envelope = codec.loads(codec.dumps(relayed))
    return out


#: Events read from the store per query (and folded per chunk).
CHUNK = 20_000


class Folder(Protocol):
    """Folds one partition's events (in position order) into rows to COPY."""

    def feed(self, envelopes: Sequence[Envelope]) -> None: ...

    def flush(self) -> Rows:
        """Rows that are final already (written while the fold goes on)."""
        ...

    def finish(self) -> Rows:
        """The remaining rows, after the last event."""
        ...


class QueueFolder:
    """``case_queue``: one row per case, ``queue.fold_event`` per event (``apply_event``
    in place, its times parsed once, by ``_record``)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any] | None] = {}

    def feed(self, envelopes: Sequence[Envelope]) -> None:
        rows = self.rows
        for env in envelopes:
            case_id = env["case_id"]
            rows[case_id] = queue.fold_event(rows.get(case_id), env)

    def flush(self) -> Rows:
        return {}

    def finish(self) -> Rows:
        records = [queue._record(r) for r in self.rows.values() if r is not None]
        self.rows = {}
        return {"case_queue": (queue.COLUMNS, records)}


class TimelineFolder:
    """``case_timeline``: one row per event, streamed chunk by chunk."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, ...]] = []

    def feed(self, envelopes: Sequence[Envelope]) -> None:
        for e in envelopes:  # the row leaves the summary out: dropped here, not copied there
            e["data"].pop("summary", None)
        self.pending.extend(timeline.record(e) for e in envelopes)

    def flush(self) -> Rows:
        out, self.pending = self.pending, []
        return {"case_timeline": (timeline.COLUMNS, out)}

    def finish(self) -> Rows:
        return self.flush()


MAP_CASE_COLUMNS = tuple(c.strip() for c in mapmodel._CASE_COLUMNS.split(","))
MAP_GRID_COLUMNS = ("grid", "community", "district", *mapmodel.COUNT_FIELDS)


class MapFolder:
    """``map_cases`` (open cases) and ``map_grid_counts`` (sums of their contributions)."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any] | None] = {}

    def feed(self, envelopes: Sequence[Envelope]) -> None:
        states = self.states
        for env in envelopes:
            case_id = env["case_id"]
            states[case_id] = mapmodel.advance(states.get(case_id), env)
        # As ``MapProjection.apply`` after a batch: a finished case leaves map_cases.
        for case_id in {e["case_id"] for e in envelopes}:
            state = states.get(case_id)
            if state is None or state["finished"]:
                states.pop(case_id, None)

    def flush(self) -> Rows:
        return {}

    def finish(self) -> Rows:
        cases = [mapmodel._case_record(k, s) for k, s in self.states.items() if s is not None]
        grids: dict[str, list[Any]] = {}
        for s in self.states.values():
            assert s is not None
            row = grids.setdefault(
                s["grid"], [s["grid"], s["community"], s["district"], 0, 0, 0, 0, 0]
            )
            for i, v in enumerate(mapmodel.contribution(s)):
                row[3 + i] += v
        self.states = {}
        counts = [tuple(r) for r in grids.values() if any(r[3:])]
        return {
            "map_cases": (MAP_CASE_COLUMNS, cases),
            "map_grid_counts": (MAP_GRID_COLUMNS, counts),
        }


METRIC_COLUMNS = (
    "counter", "day", "grid", "level", "department", "inspector", "community", "district",
    "value",
)


class MetricsFolder:
    """``metric_counts`` (summed counter deltas) and ``metric_case_state`` (open cohorts)."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any] | None] = {}
        self.out = metrics.Emitter()

    def feed(self, envelopes: Sequence[Envelope]) -> None:
        states, out = self.states, self.out
        for env in envelopes:
            case_id = env["case_id"]
            states[case_id] = metrics.fold(states.get(case_id), env, out)
        # As ``MetricsProjection.apply`` after a batch: finished cases are forgotten.
        for case_id in {e["case_id"] for e in envelopes}:
            s = states.get(case_id)
            if s is None or _finished(s):
                states.pop(case_id, None)

    def flush(self) -> Rows:
        return {}

    def finish(self) -> Rows:
        counts = []
        for (c, d, g, lv, dep, insp), n in self.out.deltas.items():
            if n:
                community, district = self.out.places[g]
                counts.append((c, date.fromisoformat(d), g, lv, dep, insp, community, district, n))
        states = [(k, s) for k, s in self.states.items()]
        self.states, self.out = {}, metrics.Emitter()
        return {
            "metric_counts": (METRIC_COLUMNS, counts),
            "metric_case_state": (("case_id", "state"), states),
        }


_finished = metrics.finished


FOLDERS: dict[str, Callable[[], Folder]] = {
    "queue": QueueFolder,
    "timeline": TimelineFolder,
    "map": MapFolder,
    "metrics": MetricsFolder,
}


#: The tables each folder COPYs into (others, like ``metric_counts_daily``, keep their keys
#: during the load and are filled from these by :data:`DERIVED` afterwards).
COPIED: dict[str, tuple[str, ...]] = {
    "queue": ("case_queue",),
    "timeline": ("case_timeline",),
    "map": ("map_cases", "map_grid_counts"),
    "metrics": ("metric_counts", "metric_case_state"),
}

#: What fills a projection's derived tables once its COPYs are done (the live projector
#: writes them in the same statement as the rows they are derived from).
DERIVED: dict[str, tuple[str, ...]] = {
    "metrics": (metrics.ROLLUP_FROM_COUNTS,),
}


#: Tables a rebuild only ANALYZEs (the others are VACUUMed too, see projections/rebuild.py).
ANALYZE_ONLY = frozenset({"case_timeline"})


def supports(name: str) -> bool:
    return name in FOLDERS


# ---------------------------------------------------------------------------- one partition


async def _binary_json(conn: asyncpg.Connection) -> None:
    """JSON columns in binary (COPY is binary): version byte 1, then the JSON text."""
    for typename in ("json", "jsonb"):
        prefix = b"\x01" if typename == "jsonb" else b""
        await conn.set_type_codec(
            typename,
            encoder=lambda v, p=prefix: p + codec.dumps(v),
            decoder=lambda b, n=len(prefix): orjson.loads(b[n:]),
            schema="pg_catalog",
            format="binary",
        )


async def _copy(conn: asyncpg.Connection, schema: str, rows: Rows) -> None:
    for table, (columns, records) in rows.items():
        if records:
            await conn.copy_records_to_table(
                table, records=records, columns=list(columns), schema_name=schema
            )


@dataclass(frozen=True)
class PartitionJob:
    database_url: str
    store_schema: str
    scratch_schema: str
    projection: str
    partition: str
    upto: int
    chunk: int = CHUNK


async def fold_partition(job: PartitionJob) -> int:
    """Fold the partition's events up to ``job.upto`` and COPY the rows into the scratch
    schema; returns how many events were read."""
    check_schema(job.store_schema)
    check_schema(job.scratch_schema)
    conn = await _connect(job.database_url, job.store_schema)
    # The fold keeps hundreds of thousands of dicts alive and allocates millions more; the
    # cyclic collector would walk all of them again and again (measured: 3x the CPU time).
    # Nothing here makes reference cycles, so it is off until the partition is done.
    collecting = gc.isenabled()
    gc.disable()
    folder: Folder | None = None
    envelopes: list[Envelope] = []
    try:
        await _binary_json(conn)
        folder = FOLDERS[job.projection]()
        after, done = 0, 0
        while after < job.upto:
            envelopes = await read_envelopes(conn, job.partition, after, job.chunk, job.upto)
            if not envelopes:
                break
            folder.feed(envelopes)
            await _copy(conn, job.scratch_schema, folder.flush())
            after = envelopes[-1]["position"]
            done += len(envelopes)
        await _copy(conn, job.scratch_schema, folder.finish())
        return done
    finally:
        # Freed by reference counting while the collector is still off: enabled first, its
        # next run walked every folded dict once more just before they went (a third of a
        # small rebuild's time, in py-spy under ``Connection.close``).
        folder = None
        envelopes = []
        await conn.close()
        if collecting:
            gc.enable()


async def _connect(database_url: str, schema: str, attempts: int = 30) -> asyncpg.Connection:
    """Connect with retries: on a shared server the connection slots can run out for a
    moment ("too many clients already")."""
    for attempt in range(attempts):
        try:
            return await asyncpg.connect(database_url, server_settings={"search_path": schema})
        except (asyncpg.TooManyConnectionsError, OSError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")


async def fold_all(jobs: Sequence[PartitionJob], processes: int) -> int:
    """Run the partitions' folds: here, one after the other, or in ``processes`` child
    processes (``python -m projections.bulk``, :mod:`core.children`: they import the folds
    only, 0.1 s, so two of them pay from tens of thousands of events on) that share the
    partitions out, biggest first."""
    if processes <= 1 or len(jobs) <= 1:
        return await _fold_share(jobs)
    shares = children.share_out(jobs, processes, size=lambda job: job.upto)
    answers = await children.run_all(
        "projections.bulk",
        [orjson.dumps([asdict(job) for job in share]) for share in shares],
        "rebuild fold process",
    )
    return sum(int(out) for out in answers)


async def _fold_share(share: Sequence[PartitionJob]) -> int:
    """Fold the partitions of ``share`` one after the other, in this process."""
    total = 0
    for job in share:
        total += await fold_partition(job)
    return total


def _child_main() -> None:
    """``python -m projections.bulk``: fold the jobs read from stdin, print the count."""
    share = [PartitionJob(**job) for job in orjson.loads(sys.stdin.buffer.read())]
    print(asyncio.run(_fold_share(share)))


# ---------------------------------------------------------------------------- indexes


@dataclass(frozen=True)
class IndexDef:
    table: str
    name: str
    definition: str  # CREATE INDEX … or, for a constraint, its pg_get_constraintdef text
    constraint: bool


async def drop_indexes(
    conn: asyncpg.Connection, schema: str, tables: Sequence[str]
) -> list[IndexDef]:
    """Drop the tables' indexes and PRIMARY KEY / UNIQUE constraints (COPY into bare heaps
    is several times faster); returns what :func:`create_indexes` puts back, same names."""
    rows = await conn.fetch(
        "SELECT c.relname AS tbl, i.relname AS idx, pg_get_indexdef(i.oid) AS idef, "
        "con.conname, pg_get_constraintdef(con.oid) AS cdef "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class c ON c.oid = x.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.conrelid = c.oid "
        "WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) ORDER BY c.relname, i.relname",
        schema,
        list(tables),
    )
    out: list[IndexDef] = []
    for r in rows:
        if r["conname"]:
            out.append(IndexDef(r["tbl"], r["conname"], r["cdef"], True))
            await conn.execute(
                f'ALTER TABLE {schema}."{r["tbl"]}" DROP CONSTRAINT "{r["conname"]}"'
            )
        else:
            out.append(IndexDef(r["tbl"], r["idx"], r["idef"], False))
            await conn.execute(f'DROP INDEX {schema}."{r["idx"]}"')
    return out


async def create_indexes(conn: asyncpg.Connection, schema: str, defs: Sequence[IndexDef]) -> None:
    """Build what :func:`drop_indexes` dropped (constraints first: the unique keys)."""
    await conn.execute("SET maintenance_work_mem = '256MB'")
    for d in sorted(defs, key=lambda d: not d.constraint):
        if d.constraint:
            await conn.execute(
                f'ALTER TABLE {schema}."{d.table}" ADD CONSTRAINT "{d.name}" {d.definition}'
            )
        else:
            await conn.execute(d.definition)
    await conn.execute("RESET maintenance_work_mem")


if __name__ == "__main__":
    _child_main()
