"""Case histories for auditors, read from the EVENT STORE (never from the read models).

* :func:`case_history` — every event of a case in order: who (actor, role), how (channel),
  when, why (reason), the status it moved from / to, its hashes and position in the log, and
  the fields of the case state that the event changed (``changes``: ``{field: {"from", "to"}}``,
  computed by replaying the aggregate one event at a time).
* :func:`state_at` — the case state (``Case.snapshot_dict()``) after the last event at or
  before a time, or at a version: the same replay the write side does, so it is the state the
  system acted on at that moment.
* :func:`diff_versions` — changed fields and the events between two versions.
* :func:`activity` — the events of a grid, a department or an actor (e.g. an inspector) over a
  period, scanning the partitions' tables (with a byte pre-filter in SQL, then an exact check).

The read model is used only as an index from case number to (partition, case id); when a case
is missing there (a rebuild in progress), the store itself is searched.

Functions here are blocking (psycopg): the HTTP layer runs them in a worker thread.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)

from aggregates.case import Case
from aggregates.integrity import iso_utc
from core.ids import case_no_for_id
from gateways.audit.rows import (
    COMMON_FIELDS,
    EVENT_COLUMNS,
    NOT_HASHED,
    StoredRow,
    qualified,
    store_partitions,
    table_exists,
    to_row,
)

#: State fields every event changes; left out of ``changes`` (they are in the entry itself).
BOOKKEEPING = frozenset({"version", "updated_at", "last_hash"})


class NotFound(LookupError):
    """No such case (or no state at that time / version)."""


@dataclass(frozen=True)
class CaseRef:
    partition: str
    case_id: str
    case_no: str


def _mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DecimalAsStr())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)


_MAPPER = _mapper()


# --------------------------------------------------------------------------- finding a case


def locate_case(
    conn: psycopg.Connection[Any], schema: str, case_no: str, partitions: Sequence[str] = ()
) -> CaseRef:
    """(partition, case id) of a case number: the queue as index, else a search of the store.

    The answer is checked against the store: the stored ``Reported`` event must carry it."""
    if table_exists(conn, schema, "case_queue"):
        row = conn.execute(
            f"SELECT partition, case_id::text FROM {schema}.case_queue WHERE case_no = %s",
            (case_no,),
        ).fetchone()
        if row is not None and _reported_case_no(conn, schema, row[0], row[1]) == case_no:
            return CaseRef(str(row[0]), str(row[1]), case_no)
    needle = _needle("case_no", case_no)
    if needle is None:
        raise NotFound(f"case {case_no} not found")
    for partition in partitions or store_partitions(conn, schema):
        if not table_exists(conn, schema, f"cases_{partition.lower()}_events"):
            continue
        for (case_id,) in conn.execute(
            f"SELECT originator_id::text FROM {qualified(schema, partition)} "
            "WHERE originator_version = 1 AND position(%s::bytea in state) > 0",
            (needle,),
        ).fetchall():
            if _reported_case_no(conn, schema, partition, case_id) == case_no:
                return CaseRef(partition, str(case_id), case_no)
    raise NotFound(f"case {case_no} not found")


def _reported_case_no(
    conn: psycopg.Connection[Any], schema: str, partition: str, case_id: str
) -> str | None:
    record = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM {qualified(schema, partition)} "
        "WHERE originator_id = %s AND originator_version = 1",
        (case_id,),
    ).fetchone()
    if record is None:
        return None
    try:
        value = to_row(partition, record).state.get("case_no")
    except ValueError:
        return None
    return str(value) if value is not None else None


def load_rows(conn: psycopg.Connection[Any], schema: str, ref: CaseRef) -> list[StoredRow]:
    records = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM {qualified(schema, ref.partition)} "
        "WHERE originator_id = %s ORDER BY originator_version",
        (ref.case_id,),
    ).fetchall()
    if not records:
        raise NotFound(f"case {ref.case_no} has no stored events")
    return [to_row(ref.partition, r) for r in records]


# --------------------------------------------------------------------------- replay


def _domain_event(record: tuple[Any, ...]) -> Any:
    _, case_id, version, topic, state = record
    return _MAPPER.to_domain_event(
        StoredEvent(
            originator_id=UUID(case_id),
            originator_version=int(version),
            topic=topic,
            state=bytes(state),
        )
    )


def replay(records: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The case state after each stored event (``Case.snapshot_dict()``), in order."""
    states: list[dict[str, Any]] = []
    case: Case | None = None
    for record in records:
        event = _domain_event(record)
        case = event.mutate(case)
        assert case is not None
        states.append(case.snapshot_dict())
    return states


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """``{field: {"from": old, "to": new}}`` for the state fields that differ."""
    before = before or {}
    return {
        k: {"from": before.get(k), "to": v}
        for k, v in after.items()
        if k not in BOOKKEEPING and before.get(k) != v
    }


def entry(row: StoredRow) -> dict[str, Any]:
    """One history entry (without ``changes``) from a stored row."""
    state = row.state
    return {
        "position": row.position,
        "version": row.version,
        "type": row.type,
        "at": row.at,
        **{k: state.get(k) for k in COMMON_FIELDS},
        "prev_hash": row.prev_hash,
        "hash": row.hash,
        "data": {
            k: v for k, v in state.items() if k not in NOT_HASHED and k not in COMMON_FIELDS
        },
    }


@dataclass
class CaseHistory:
    ref: CaseRef
    rows: list[StoredRow]
    records: list[tuple[Any, ...]]
    states: list[dict[str, Any]]

    def entries(self) -> list[dict[str, Any]]:
        out = []
        before: dict[str, Any] | None = None
        for row, state in zip(self.rows, self.states, strict=True):
            item = entry(row)
            item["changes"] = changed_fields(before, state)
            out.append(item)
            before = state
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_no": self.ref.case_no,
            "case_id": self.ref.case_id,
            "partition": self.ref.partition,
            "source": "event_store",
            "events": self.entries(),
            "state": self.states[-1] if self.states else None,
        }

    def index_at(self, at: datetime) -> int:
        """Index of the last event with timestamp <= ``at`` (-1 if none)."""
        when = iso_utc(at)
        index = -1
        for i, row in enumerate(self.rows):
            if row.at <= when:  # canonical UTC text sorts as time
                index = i
        return index

    def state_at(self, at: datetime | None = None, version: int | None = None) -> dict[str, Any]:
        if version is not None:
            if not 1 <= version <= len(self.states):
                raise NotFound(
                    f"case {self.ref.case_no} has versions 1–{len(self.states)}, not {version}"
                )
            index = version - 1
        elif at is not None:
            index = self.index_at(at)
            if index < 0:
                raise NotFound(f"case {self.ref.case_no} did not exist at {iso_utc(at)}")
        else:
            index = len(self.states) - 1
        row = self.rows[index]
        return {
            "case_no": self.ref.case_no,
            "as_of": iso_utc(at) if at is not None else row.at,
            "version": row.version,
            "event": {"type": row.type, "at": row.at, "position": row.position,
                      "hash": row.hash},
            "state": self.states[index],
        }

    def diff(self, a: int, b: int) -> dict[str, Any]:
        n = len(self.states)
        for v in (a, b):
            if not 0 <= v <= n:
                raise NotFound(f"case {self.ref.case_no} has versions 1–{n}, not {v}")
        lo, hi = sorted((a, b))
        before = self.states[lo - 1] if lo > 0 else None
        after = self.states[hi - 1] if hi > 0 else {}
        return {
            "case_no": self.ref.case_no,
            "from_version": lo,
            "to_version": hi,
            "changes": changed_fields(before, after),
            "events": [entry(r) for r in self.rows[lo:hi]],
        }


def case_history(
    conn: psycopg.Connection[Any], schema: str, case_no: str, partitions: Sequence[str] = ()
) -> CaseHistory:
    ref = locate_case(conn, schema, case_no, partitions)
    records = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM {qualified(schema, ref.partition)} "
        "WHERE originator_id = %s ORDER BY originator_version",
        (ref.case_id,),
    ).fetchall()
    if not records:
        raise NotFound(f"case {case_no} has no stored events")
    rows = [to_row(ref.partition, r) for r in records]
    return CaseHistory(ref, rows, records, replay(records))


# --------------------------------------------------------------------------- activity


def _needle(key: str, value: str) -> bytes | None:
    """The bytes ``"key":"value"`` as eventsourcing stores them (None if escaping could make
    the stored form differ, then no pre-filter is used)."""
    text = json.dumps({key: value}, ensure_ascii=False, separators=(",", ":"))[1:-1]
    return text.encode() if "\\" not in text else None


def _within(at: str, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or at >= iso_utc(since)) and (until is None or at < iso_utc(until))


def _case_nos(
    conn: psycopg.Connection[Any], schema: str, partition: str, case_ids: Sequence[str]
) -> dict[str, str]:
    """Case numbers from the cases' ``Reported`` events."""
    out = {cid: case_no_for_id(UUID(cid)) for cid in case_ids}
    if case_ids:
        for record in conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM {qualified(schema, partition)} "
            "WHERE originator_id = ANY(%s::uuid[]) AND originator_version = 1",
            (list(case_ids),),
        ).fetchall():
            with contextlib.suppress(ValueError):
                row = to_row(partition, record)
                out[row.case_id] = str(row.state.get("case_no") or out[row.case_id])
    return out


def activity(
    conn: psycopg.Connection[Any],
    schema: str,
    partitions: Sequence[str],
    *,
    grid: str | None = None,
    department: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> dict[str, Any]:
    """Events of a grid (every event of cases located in it), a department (events while a
    case was dispatched to it, from the dispatch to the return / escalation / re-dispatch), or
    an actor (events they did), with ``since <= at < until``; oldest first, at most ``limit``.
    """
    if sum(x is not None for x in (grid, department, actor)) != 1:
        raise ValueError("give exactly one of grid, department, actor")
    found: list[dict[str, Any]] = []
    for partition in partitions:
        if not table_exists(conn, schema, f"cases_{partition.lower()}_events"):
            continue
        table = qualified(schema, partition)
        if actor is not None:
            needle = _needle("actor", actor)
            where, params = (
                ("position(%s::bytea in state) > 0", (needle,)) if needle else ("TRUE", ())
            )
            records = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM {table} WHERE {where} ORDER BY notification_id",
                params,
            ).fetchall()
            rows = [to_row(partition, r) for r in records]
            rows = [
                r for r in rows if r.state.get("actor") == actor and _within(r.at, since, until)
            ]
            nos = _case_nos(conn, schema, partition, sorted({r.case_id for r in rows}))
            found.extend({"case_no": nos[r.case_id], "case_id": r.case_id,
                          "partition": partition, **entry(r)} for r in rows)
            continue
        key, value = ("grid", grid) if grid is not None else ("department", department)
        assert value is not None
        needle = _needle(key, value)
        condition = "position(%s::bytea in state) > 0" if needle else "TRUE"
        version_filter = "originator_version = 1 AND " if key == "grid" else ""
        ids = [
            str(r[0])
            for r in conn.execute(
                f"SELECT DISTINCT originator_id::text FROM {table} "
                f"WHERE {version_filter}{condition}",
                (needle,) if needle else (),
            ).fetchall()
        ]
        if not ids:
            continue
        records = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM {table} WHERE originator_id = ANY(%s::uuid[]) "
            "ORDER BY originator_id, originator_version",
            (ids,),
        ).fetchall()
        by_case: dict[str, list[StoredRow]] = {}
        for record in records:
            row = to_row(partition, record)
            by_case.setdefault(row.case_id, []).append(row)
        for case_id, case_rows in by_case.items():
            case_no = str(case_rows[0].state.get("case_no") or case_no_for_id(UUID(case_id)))
            if key == "grid":
                if case_rows[0].state.get("grid") != grid:
                    continue
                picked = case_rows
            else:
                picked = _department_events(case_rows, value)
            found.extend(
                {"case_no": case_no, "case_id": case_id, "partition": partition, **entry(r)}
                for r in picked
                if _within(r.at, since, until)
            )
    found.sort(key=lambda e: (e["at"], e["partition"], e["position"]))
    return {
        "filter": {"grid": grid, "department": department, "actor": actor,
                   "since": iso_utc(since) if since else None,
                   "until": iso_utc(until) if until else None},
        "source": "event_store",
        "count": min(len(found), limit),
        "truncated": len(found) > limit,
        "cases": len({e["case_id"] for e in found}),
        "events": found[:limit],
    }


def _department_events(rows: Sequence[StoredRow], department: str) -> list[StoredRow]:
    """Events of one case from each dispatch to ``department`` until the case leaves it."""
    picked: list[StoredRow] = []
    current: str | None = None
    for row in rows:
        state = row.state
        before = current
        if row.type == "Dispatched":
            current = state.get("department")
        elif row.type in ("Returned", "Escalated"):
            current = None
        if department in (before, current):
            picked.append(row)
    return picked
