"""Exports for third parties: JSONL (verifiable) and CSV (for spreadsheets), streamed.

JSONL format ``griddispatch-audit-export/1`` — one JSON object per line:

* first line ``{"kind": "header", "format": …, "hash_algorithm": …, "chain_algorithm": …,
  "scope": "all" | "case" | "filter", "filter": {…}, "exported_at": …, "exported_by": …}``;
* one line per event, in partition then position order::

      {"kind": "event", "partition": "520102", "position": 17, "case_id": "…",
       "case_no": "GD-…", "version": 3, "type": "Dispatched", "at": "…Z",
       "prev_hash": "…", "hash": "…", "payload": {…}, "chain_prev": "…", "chain": "…"}

  ``payload`` is exactly the hashed payload (who / role / channel / reason / command / from
  and to status and the event's own fields), so
  ``hash = sha256(canonical_json({"prev": prev_hash, "case": case_id, "v": version,
  "type": type, "at": at, "data": payload}))`` (``aggregates.integrity``), and
  ``chain = link(chain_prev, partition, position, case_id, version, hash)``
  (``projections.audit.chain``). ``chain_prev`` is the chain value of the previous event of the
  partition's log (exported or not), so each event of a partial export is bound to the log;
  both are null for an event the relay has not sealed yet;
* last line ``{"kind": "trailer", "events": N, "heads": {partition: {"position", "chain"}}}``
  with the sealed head of each exported partition at export time.

``tools/verify_export.py FILE.jsonl`` checks all of this with the standard library only.
Everything is read in one REPEATABLE READ, READ ONLY transaction: a consistent snapshot.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg

from aggregates.integrity import HASH_ALGORITHM, iso_utc
from core.eventlog import table_name
from core.ids import case_no_for_id
from projections.audit.chain import CHAIN_ALGORITHM, GENESIS
from projections.audit.history import (
    _department_events,
    _needle,
    cases_mentioning,
    events_of_cases,
    locate_case,
)
from projections.audit.rows import (
    COMMON_FIELDS,
    EVENT_COLUMNS,
    StoredRow,
    connect,
    qualified,
    store_partitions,
    table_exists,
    to_row,
)

FORMAT = "griddispatch-audit-export/1"
CSV_COLUMNS = (
    "partition", "position", "case_no", "case_id", "version", "type", "at",
    *COMMON_FIELDS, "prev_hash", "hash", "chain", "data",
)


@dataclass(frozen=True)
class ExportScope:
    """What to export: one case, a filter, or everything (no field set)."""

    case_no: str | None = None
    grid: str | None = None
    department: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    partitions: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        if self.case_no:
            return "case"
        if any(v is not None for v in (self.grid, self.department, self.actor, self.since,
                                       self.until)):
            return "filter"
        return "all"

    def describe(self) -> dict[str, Any]:
        return {
            "case_no": self.case_no,
            "grid": self.grid,
            "department": self.department,
            "actor": self.actor,
            "since": iso_utc(self.since) if self.since else None,
            "until": iso_utc(self.until) if self.until else None,
        }

    def validate(self) -> None:
        chosen = [k for k in ("case_no", "grid", "department", "actor") if getattr(self, k)]
        if len(chosen) > 1:
            raise ValueError(f"give at most one of case, grid, department, actor (got {chosen})")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")

    def within(self, at: str) -> bool:
        return (self.since is None or at >= iso_utc(self.since)) and (
            self.until is None or at < iso_utc(self.until)
        )


def _record(row: StoredRow, case_no: str, chain: str | None, chain_prev: str | None
            ) -> dict[str, Any]:
    out = {"kind": "event", **row.as_export()}
    out["case_no"] = case_no
    out["chain_prev"] = chain_prev
    out["chain"] = chain
    return out


def _heads(conn: psycopg.Connection[Any], schema: str, partitions: Sequence[str]
           ) -> dict[str, dict[str, Any]]:
    if not table_exists(conn, schema, "log_chain"):
        return {}
    rows = conn.execute(
        f"SELECT DISTINCT ON (partition) partition, position, chain FROM {schema}.log_chain "
        "WHERE partition = ANY(%s) ORDER BY partition, position DESC",
        (list(partitions),),
    ).fetchall()
    return {str(r[0]): {"position": int(r[1]), "chain": str(r[2])} for r in rows}


def _everything(
    conn: psycopg.Connection[Any], schema: str, partition: str, scope: ExportScope,
    has_chain: bool,
) -> Iterator[dict[str, Any]]:
    """A whole partition in log order with its seals (one server-side cursor)."""
    table = qualified(schema, partition)
    if has_chain:
        sql = (
            "SELECT e.notification_id, e.originator_id::text, e.originator_version, e.topic, "
            "e.state, l.chain, l.chain_prev FROM "
            f"{table} e LEFT JOIN (SELECT position, chain, "
            "lag(chain, 1, '') OVER (ORDER BY position) AS chain_prev "
            f"FROM {schema}.log_chain WHERE partition = %s) l ON l.position = e.notification_id "
            "ORDER BY e.notification_id"
        )
        params: tuple[Any, ...] = (partition,)
    else:
        sql = f"SELECT {EVENT_COLUMNS}, NULL, NULL FROM {table} ORDER BY notification_id"
        params = ()
    case_nos: dict[str, str] = {}
    with conn.cursor(name=f"export_{partition}", binary=True) as cur:
        cur.execute(sql, params)
        while True:
            batch = cur.fetchmany(2000)
            if not batch:
                return
            for record in batch:
                row = to_row(partition, record[:5])
                if row.version == 1 and "case_no" in row.state:
                    case_nos[row.case_id] = str(row.state["case_no"])
                case_no = case_nos.get(row.case_id) or case_no_for_id(UUID(row.case_id))
                if scope.within(row.at):
                    yield _record(row, case_no, record[5], record[6])


def _selected_rows(
    conn: psycopg.Connection[Any], schema: str, partition: str, scope: ExportScope
) -> list[StoredRow]:
    """The rows a case / grid / department / actor filter selects in one partition."""
    table = qualified(schema, partition)
    if scope.case_no:
        ref = locate_case(conn, schema, scope.case_no, [partition])
        by_case = events_of_cases(conn, table, partition, [ref.case_id])
    elif scope.actor is not None:
        needle = _needle("actor", scope.actor)
        where = "position(%s::bytea in state) > 0" if needle else "TRUE"
        records = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM {table} WHERE {where} ORDER BY notification_id",
            (needle,) if needle else (),
        ).fetchall()
        return [r for r in (to_row(partition, x) for x in records)
                if r.state.get("actor") == scope.actor]
    else:
        key, value = (("grid", scope.grid) if scope.grid is not None
                      else ("department", scope.department))
        assert value is not None
        by_case = cases_mentioning(conn, table, partition, key, value)
    picked: list[StoredRow] = []
    for rows in by_case.values():
        if scope.grid is not None:
            if rows[0].state.get("grid") == scope.grid:
                picked.extend(rows)
        elif scope.department is not None:
            picked.extend(_department_events(rows, scope.department))
        else:
            picked.extend(rows)
    return sorted(picked, key=lambda r: r.position)


def _seals_for(
    conn: psycopg.Connection[Any], schema: str, partition: str, positions: Sequence[int]
) -> dict[int, tuple[str, str]]:
    """``{position: (chain, chain_prev)}`` for sealed positions (index lookups)."""
    out: dict[int, tuple[str, str]] = {}
    for start in range(0, len(positions), 1000):
        chunk = list(positions[start : start + 1000])
        for position, chain, prev in conn.execute(
            f"SELECT l.position, l.chain, COALESCE((SELECT p.chain FROM {schema}.log_chain p "
            "WHERE p.partition = l.partition AND p.position < l.position "
            "ORDER BY p.position DESC LIMIT 1), '') "
            f"FROM {schema}.log_chain l WHERE l.partition = %s AND l.position = ANY(%s)",
            (partition, chunk),
        ).fetchall():
            out[int(position)] = (str(chain), str(prev))
    return out


def _case_nos(
    conn: psycopg.Connection[Any], schema: str, partition: str, rows: Sequence[StoredRow]
) -> dict[str, str]:
    ids = sorted({r.case_id for r in rows})
    out = {cid: case_no_for_id(UUID(cid)) for cid in ids}
    for r in rows:
        if r.version == 1 and "case_no" in r.state:
            out[r.case_id] = str(r.state["case_no"])
    missing = [cid for cid in ids if not any(r.case_id == cid and r.version == 1 for r in rows)]
    if missing:
        for record in conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM {qualified(schema, partition)} "
            "WHERE originator_id = ANY(%s::uuid[]) AND originator_version = 1",
            (missing,),
        ).fetchall():
            row = to_row(partition, record)
            out[row.case_id] = str(row.state.get("case_no") or out[row.case_id])
    return out


def export_records(
    database_url: str,
    schema: str,
    scope: ExportScope,
    exported_by: str | None = None,
    now: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Header, events, trailer (see the module docstring). Blocking; a generator that keeps
    one connection and transaction open while it is consumed."""
    scope.validate()
    with connect(database_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        partitions = list(scope.partitions) or store_partitions(conn, schema)
        if scope.case_no:
            ref = locate_case(conn, schema, scope.case_no, partitions)
            partitions = [ref.partition]
        has_chain = table_exists(conn, schema, "log_chain")
        yield {
            "kind": "header",
            "format": FORMAT,
            "hash_algorithm": HASH_ALGORITHM,
            "chain_algorithm": CHAIN_ALGORITHM,
            "genesis": GENESIS,
            "scope": scope.kind,
            "filter": scope.describe(),
            "partitions": partitions,
            "exported_at": iso_utc(now or datetime.now(UTC)),
            "exported_by": exported_by,
        }
        count = 0
        for partition in partitions:
            if not table_exists(conn, schema, table_name(partition)):
                continue
            if scope.kind == "all" or (
                scope.kind == "filter"
                and scope.grid is None and scope.department is None and scope.actor is None
            ):
                for record in _everything(conn, schema, partition, scope, has_chain):
                    count += 1
                    yield record
                continue
            rows = [r for r in _selected_rows(conn, schema, partition, scope)
                    if scope.within(r.at)]
            seals = _seals_for(conn, schema, partition, [r.position for r in rows]) \
                if has_chain else {}
            nos = _case_nos(conn, schema, partition, rows)
            for row in rows:
                chain, prev = seals.get(row.position, (None, None))
                count += 1
                yield _record(row, nos[row.case_id], chain, prev)
        yield {"kind": "trailer", "events": count, "heads": _heads(conn, schema, partitions)}
        conn.rollback()


def jsonl(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """One JSON object per line (UTF-8)."""
    for record in records:
        yield orjson.dumps(record) + b"\n"


def csv_rows(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    """CSV with a header row: one row per event; event-specific fields as JSON in ``data``.

    For people and spreadsheets; verify with the JSONL export."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for record in records:
        if record.get("kind") != "event":
            continue
        buffer.seek(0)
        buffer.truncate()
        payload = record["payload"]
        data = {k: v for k, v in payload.items() if k not in COMMON_FIELDS}
        writer.writerow(
            [
                record["partition"], record["position"], record["case_no"], record["case_id"],
                record["version"], record["type"], record["at"],
                *(payload.get(k) for k in COMMON_FIELDS),
                record["prev_hash"], record["hash"], record["chain"] or "",
                orjson.dumps(data).decode(),
            ]
        )
        yield buffer.getvalue()
