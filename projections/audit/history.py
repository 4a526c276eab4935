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
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
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
from eventsourcing.utils import resolve_topic

from aggregates.case import Case, json_view
from aggregates.integrity import iso_utc
from aggregates.state import FIELDS as STATE_FIELDS
from core.db import check_schema
from core.eventlog import table_name
from core.ids import case_no_for_id
from core.logging import get_logger
from core.vocabulary import STATUS_LABELS
from projections.audit.rows import (
    COMMON_FIELDS,
    EVENT_COLUMNS,
    NOT_HASHED,
    StoredRow,
    existing_tables,
    fast_loads,
    qualified,
    store_partitions,
    table_exists,
    to_row,
)
from projections.audit.verify import CHAIN_TABLES, SealedReads, check_case

log = get_logger("audit")

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


def _from_queue(
    conn: psycopg.Connection[Any], schema: str, case_no: str
) -> tuple[str, str, frozenset[str]] | None:
    """(partition, case id, which of :data:`CHAIN_TABLES` exist) from the queue, in one
    statement; None if the queue does not know the case (or does not exist: then the
    transaction is rolled back — everything here only reads)."""
    checked = check_schema(schema)
    try:
        row = conn.execute(
            "SELECT partition, case_id::text, "
            + ", ".join(["to_regclass(%s) IS NOT NULL"] * len(CHAIN_TABLES))
            + f" FROM {checked}.case_queue WHERE case_no = %s",
            (*(f"{checked}.{t}" for t in CHAIN_TABLES), case_no),
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        conn.rollback()  # no read model (yet): the store is searched instead
        return None
    if row is None:
        return None
    tables = frozenset(t for t, found in zip(CHAIN_TABLES, row[2:], strict=True) if found)
    return str(row[0]), str(row[1]), tables


def _search_store(
    conn: psycopg.Connection[Any], schema: str, case_no: str, partitions: Sequence[str]
) -> CaseRef:
    """The case whose stored ``Reported`` event carries ``case_no`` (scans the partitions)."""
    needle = _needle("case_no", case_no)
    if needle is None:
        raise NotFound(f"case {case_no} not found")
    for partition in partitions or store_partitions(conn, schema):
        if not table_exists(conn, schema, table_name(partition)):
            continue
        for (case_id,) in conn.execute(
            f"SELECT originator_id::text FROM {qualified(schema, partition)} "
            "WHERE originator_version = 1 AND position(%s::bytea in state) > 0",
            (needle,),
        ).fetchall():
            if _reported_case_no(conn, schema, partition, case_id) == case_no:
                return CaseRef(partition, str(case_id), case_no)
    raise NotFound(f"case {case_no} not found")


def locate_case(
    conn: psycopg.Connection[Any], schema: str, case_no: str, partitions: Sequence[str] = ()
) -> CaseRef:
    """(partition, case id) of a case number: the queue as index, else a search of the store.

    The answer is checked against the store: the stored ``Reported`` event must carry it."""
    found = _from_queue(conn, schema, case_no)
    if found is not None and _reported_case_no(conn, schema, found[0], found[1]) == case_no:
        return CaseRef(found[0], found[1], case_no)
    return _search_store(conn, schema, case_no, partitions)


def _reported_case_no(
    conn: psycopg.Connection[Any], schema: str, partition: str, case_id: str
) -> str | None:
    record = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM {qualified(schema, partition)} "
        "WHERE originator_id = %s AND originator_version = 1",
        (case_id,),
    ).fetchone()
    return _case_no_of(partition, record)


def _case_no_of(partition: str, record: tuple[Any, ...] | None) -> str | None:
    """The case number a stored version-1 (``Reported``) row carries, if it is one."""
    if record is None or int(record[2]) != 1:
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


@dataclass
class LoadedCase:
    """One case as read from the store (and, if asked, its sealed side) in one go."""

    ref: CaseRef
    records: list[tuple[Any, ...]]
    rows: list[StoredRow]
    sealed_rows: list[tuple[Any, ...]] = field(default_factory=list)
    head: int = 0


def _read_case(
    conn: psycopg.Connection[Any], schema: str, partition: str, case_id: str,
    tables: frozenset[str] | None,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """The case's stored records and (if ``tables`` is given) its sealed rows and the sealed
    head: up to three statements in one pipeline (one round trip). On an autocommit
    connection they share one REPEATABLE READ snapshot (else the caller's transaction), so
    the store and the sealed log are compared as of one moment."""
    own = conn.autocommit
    with conn.pipeline():
        if own:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        events = conn.cursor(binary=True)
        events.execute(
            f"SELECT {EVENT_COLUMNS} FROM {qualified(schema, partition)} "
            "WHERE originator_id = %s ORDER BY originator_version",
            (case_id,),
        )
        sealed = (
            SealedReads(conn, check_schema(schema), partition, case_id, tables)
            if tables is not None else None
        )
        if own:
            conn.execute("COMMIT")
    records = events.fetchall()
    sealed_rows, head = sealed.result() if sealed is not None else ([], 0)
    return records, sealed_rows, head


def load_case(
    conn: psycopg.Connection[Any], schema: str, case_no: str, partitions: Sequence[str] = (),
    *, sealed: bool = False,
) -> LoadedCase:
    """Locate a case (as :func:`locate_case`) and read its stored events — and with
    ``sealed`` its ``log_chain`` rows and sealed head for :func:`verify.check_case` — in
    two round trips when the queue knows the case (the usual way)."""
    found = _from_queue(conn, schema, case_no)
    if found is not None:
        partition, case_id, tables = found
        records, sealed_rows, head = _read_case(
            conn, schema, partition, case_id, tables if sealed else None
        )
        if records and _case_no_of(partition, records[0]) == case_no:
            rows = [to_row(partition, r) for r in records]
            return LoadedCase(CaseRef(partition, case_id, case_no), records, rows,
                              sealed_rows, head)
    ref = _search_store(conn, schema, case_no, partitions)
    known = existing_tables(conn, schema, CHAIN_TABLES) if sealed else None
    records, sealed_rows, head = _read_case(conn, schema, ref.partition, ref.case_id, known)
    if not records:
        raise NotFound(f"case {case_no} has no stored events")
    rows = [to_row(ref.partition, r) for r in records]
    return LoadedCase(ref, records, rows, sealed_rows, head)


# --------------------------------------------------------------------------- replay


def _domain_event(record: tuple[Any, ...]) -> Any:
    """The stored row as the event object eventsourcing's mapper makes of it (same class,
    same attributes), decoded by orjson (``rows.fast_loads``): the stdlib decoder with an
    object hook per dict was a fifth of a history request. Anything unusual (a class
    version, JSON orjson may read differently, a typed value other than the store's three)
    goes through the mapper itself."""
    _, case_id, version, topic, state = record
    data = bytes(state)
    cls = resolve_topic(topic)
    if getattr(cls, "class_version", 1) == 1:
        attrs = fast_loads(data)
        if type(attrs) is dict and "class_version" not in attrs:
            typed = data.count(b'"_type_"')
            if not typed or _decode_typed(attrs, typed) == typed:
                attrs["originator_id"] = UUID(case_id)
                attrs["originator_version"] = int(version)
                event = object.__new__(cls)
                object.__setattr__(event, "__dict__", attrs)
                return event
    return _MAPPER.to_domain_event(
        StoredEvent(
            originator_id=UUID(case_id),
            originator_version=int(version),
            topic=topic,
            state=data,
        )
    )


#: eventsourcing's typed values in stored JSON (``core.eventstore``'s transcodings), decoded
#: as its transcoder does.
_TYPED: dict[str, Callable[[str], Any]] = {
    "datetime_iso": datetime.fromisoformat,
    "uuid_hex": UUID,
    "decimal_str": Decimal,
}


def _decode_typed(container: dict[str, Any] | list[Any], expected: int = 0) -> int:
    """Replace ``{"_type_": …, "_data_": …}`` values in place, at any depth, as the mapper's
    transcoder would; how many were replaced (-1: one it does not know, so the caller asks
    the mapper). Plain leaves are skipped without a call; with ``expected`` (the markers in
    the bytes) the top level is looked at first and the rest only if some are left (a case
    event's typed values are its own fields: its summary and reporter need no walk)."""
    if expected and type(container) is dict:
        top = 0
        for name, field in container.items():
            if type(field) is dict and len(field) == 2 and "_type_" in field:
                convert = _TYPED.get(field["_type_"])
                text = field.get("_data_")
                if convert is None or type(text) is not str:
                    return -1
                container[name] = convert(text)
                top += 1
        if top == expected:
            return top
        rest = _decode_typed(container)
        return -1 if rest < 0 else top + rest
    found = 0
    items = container.items() if type(container) is dict else enumerate(container)
    for key, value in items:
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                decode = _TYPED.get(value["_type_"])
                data = value["_data_"]
                if decode is None or type(data) is not str:
                    return -1
                container[key] = decode(data)  # type: ignore[index]
                found += 1
                continue
        elif kind is not list:
            continue
        inner = _decode_typed(value)
        if inner < 0:
            return -1
        found += inner
    return found


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


# Replaying a long case and building ``Case.snapshot_dict()`` after every event only to diff
# consecutive snapshots cost most of a history request (50 events: ~3 ms of snapshots against
# ~0.7 ms of replay). :func:`replay_changes` reads each snapshot field straight off the
# aggregate instead (plain values, converted to their JSON view only where they changed) and
# checks itself against the real ``snapshot_dict()`` after the first and the last event; if
# the two ever disagree (a field added to the snapshot that is not a plain attribute), it
# falls back to :func:`replay`, so the answer is always the snapshot's.

#: Snapshot fields that are not an attribute of the same name on ``Case``.
_DERIVED: dict[str, Callable[[Case], Any]] = {
    "id": operator.attrgetter("id"),
    "version": operator.attrgetter("version"),
    "status": lambda c: c.state.status.value,
    "status_zh": lambda c: STATUS_LABELS[c.state.status],
    "warned": lambda c: c.state.warned,
    "overdue": lambda c: c.state.overdue,
    "updated_at": operator.attrgetter("modified_on"),
}
#: Types whose JSON view is the value itself.
_LEAF = frozenset({str, int, float, bool, type(None)})


def _jv(value: Any) -> Any:
    """``aggregates.case.json_view`` (which it defers to for anything but plain JSON
    containers and leaves), several times faster on the small dicts / lists of a case."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _LEAF else _jv(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _LEAF else _jv(v) for v in value]
    return value if kind in _LEAF else json_view(value)


class _Mismatch(Exception):
    """The fast view disagrees with ``snapshot_dict()``."""


class _Viewer:
    """Reads the values of a snapshot off a ``Case``: plain attributes with one C call on
    the state's instance dict, the others through :data:`_DERIVED`. Values come in
    ``self.keys`` order (plain first), raw (see :meth:`view`)."""

    def __init__(self, snapshot: dict[str, Any], case: Case) -> None:
        fields = {f.name for f in STATE_FIELDS}
        plain = [k for k in snapshot if k not in _DERIVED and k in fields]
        derived = [k for k in snapshot if k not in plain]
        self.keys = plain + derived
        self.rank = {k: i for i, k in enumerate(snapshot)}  # the snapshot's own key order
        self._plain = operator.attrgetter(*plain) if len(plain) > 1 else None
        self._one = plain[0] if len(plain) == 1 else None
        self._derived = [_DERIVED.get(k) or operator.attrgetter(k) for k in derived]
        self.watched = [i for i, k in enumerate(self.keys) if k not in BOOKKEEPING]

    def view(self, case: Case) -> list[Any]:
        """The values, raw: containers are compared as they are and converted only where
        they differ. Sound because an event replaces a container instead of changing it in
        place (``CaseEvent.evolve``; replayed events build the state from copies of their
        facts), so a value kept from the previous event still shows that event's state."""
        state = case.state
        if self._plain is not None:
            values = list(self._plain(state))
        else:
            values = [getattr(state, self._one)] if self._one is not None else []
        values.extend(get(case) for get in self._derived)
        return values

    def same(self, view: list[Any], snapshot: dict[str, Any]) -> bool:
        return {k: _jv(v) for k, v in zip(self.keys, view, strict=True)} == snapshot


def replay_changes(
    records: Sequence[tuple[Any, ...]],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``changes`` of every event (as :func:`changed_fields` of consecutive snapshots) and
    the final snapshot — what a history shows — without a snapshot per event."""
    try:
        return _replay_changes(records)
    except (_Mismatch, AttributeError, KeyError, TypeError):
        log.warning("audit.replay_fallback", note="snapshot fields differ from the fast view")
        states = replay(records)
        before: dict[str, Any] | None = None
        changes = []
        for state in states:
            changes.append(changed_fields(before, state))
            before = state
        return changes, states[-1] if states else None


def _replay_changes(
    records: Sequence[tuple[Any, ...]],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    changes: list[dict[str, Any]] = []
    case: Case | None = None
    viewer: _Viewer | None = None
    before: list[Any] = []
    for record in records:
        case = _domain_event(record).mutate(case)
        assert case is not None
        if viewer is None:
            first = case.snapshot_dict()
            viewer = _Viewer(first, case)
            before = [None] * len(viewer.keys)
            after = viewer.view(case)
            if not viewer.same(after, first):
                raise _Mismatch(viewer.keys)
        else:
            after = viewer.view(case)
        found = []
        for i in viewer.watched:
            old, new = before[i], after[i]
            if old is not new and old != new:
                old, new = _jv(old), _jv(new)
                if old != new:
                    key = viewer.keys[i]
                    found.append((viewer.rank[key], key, {"from": old, "to": new}))
        found.sort()
        changes.append({key: change for _, key, change in found})
        before = after
    if case is None or viewer is None:
        return changes, None
    final = case.snapshot_dict()
    if not viewer.same(before, final):
        raise _Mismatch(viewer.keys)
    return changes, final


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
    """A case's stored events; states are replayed only as far as a question needs."""

    ref: CaseRef
    rows: list[StoredRow]
    records: list[tuple[Any, ...]]
    _states: list[dict[str, Any]] | None = None

    @property
    def states(self) -> list[dict[str, Any]]:
        """The state after every event (a full replay, done once)."""
        if self._states is None:
            self._states = replay(self.records)
        return self._states

    def _snapshots(self, indexes: Iterable[int]) -> dict[int, dict[str, Any]]:
        """States after the events at ``indexes`` (replaying only up to the last one)."""
        wanted = set(indexes)
        if self._states is not None or not wanted:
            return {i: self.states[i] for i in wanted}
        out: dict[int, dict[str, Any]] = {}
        case: Case | None = None
        for i, record in enumerate(self.records[: max(wanted) + 1]):
            case = _domain_event(record).mutate(case)
            assert case is not None
            if i in wanted:
                out[i] = case.snapshot_dict()
        return out

    def entries(self) -> list[dict[str, Any]]:
        return self._entries_and_state()[0]

    def _entries_and_state(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        if self._states is not None:
            before: dict[str, Any] | None = None
            changes = []
            for state in self._states:
                changes.append(changed_fields(before, state))
                before = state
            final = self._states[-1] if self._states else None
        else:
            changes, final = replay_changes(self.records)
        out = []
        for row, changed in zip(self.rows, changes, strict=True):
            item = entry(row)
            item["changes"] = changed
            out.append(item)
        return out, final

    def as_dict(self) -> dict[str, Any]:
        events, state = self._entries_and_state()
        return {
            "case_no": self.ref.case_no,
            "case_id": self.ref.case_id,
            "partition": self.ref.partition,
            "source": "event_store",
            "events": events,
            "state": state,
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
        n = len(self.records)
        if version is not None:
            if not 1 <= version <= n:
                raise NotFound(f"case {self.ref.case_no} has versions 1–{n}, not {version}")
            index = version - 1
        elif at is not None:
            index = self.index_at(at)
            if index < 0:
                raise NotFound(f"case {self.ref.case_no} did not exist at {iso_utc(at)}")
        else:
            index = n - 1
        row = self.rows[index]
        return {
            "case_no": self.ref.case_no,
            "as_of": iso_utc(at) if at is not None else row.at,
            "version": row.version,
            "event": {"type": row.type, "at": row.at, "position": row.position,
                      "hash": row.hash},
            "state": self._snapshots([index])[index],
        }

    def diff(self, a: int, b: int) -> dict[str, Any]:
        n = len(self.records)
        for v in (a, b):
            if not 0 <= v <= n:
                raise NotFound(f"case {self.ref.case_no} has versions 1–{n}, not {v}")
        lo, hi = sorted((a, b))
        states = self._snapshots(i - 1 for i in (lo, hi) if i > 0)
        before = states[lo - 1] if lo > 0 else None
        after = states[hi - 1] if hi > 0 else {}
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
    """A case's history from the store (located through the queue, else by a search)."""
    loaded = load_case(conn, schema, case_no, partitions)
    return CaseHistory(loaded.ref, loaded.rows, loaded.records)


def history_report(
    conn: psycopg.Connection[Any], schema: str, case_no: str, partitions: Sequence[str] = ()
) -> dict[str, Any]:
    """What ``GET /v1/audit/cases/{no}/history`` answers: the history (:meth:`CaseHistory.
    as_dict`) plus ``integrity`` (:func:`verify.verify_case`), both from ONE read of the
    case's rows (two round trips when the queue knows the case)."""
    loaded = load_case(conn, schema, case_no, partitions, sealed=True)
    out = CaseHistory(loaded.ref, loaded.rows, loaded.records).as_dict()
    out["integrity"] = check_case(loaded.ref.partition, loaded.rows, loaded.sealed_rows,
                                  loaded.head)
    return out


# --------------------------------------------------------------------------- activity


def _needle(key: str, value: str) -> bytes | None:
    """The bytes ``"key":"value"`` as eventsourcing stores them (None if escaping could make
    the stored form differ, then no pre-filter is used)."""
    text = json.dumps({key: value}, ensure_ascii=False, separators=(",", ":"))[1:-1]
    return text.encode() if "\\" not in text else None


def cases_mentioning(
    conn: psycopg.Connection[Any], table: str, partition: str, key: str, value: str
) -> dict[str, list[StoredRow]]:
    """Every event, by case in version order, of the cases whose stored events may mention
    ``"key":"value"`` (the grid: in the report; a department: anywhere) — a byte pre-filter
    in SQL, so callers still check exactly."""
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
    return events_of_cases(conn, table, partition, ids)


def events_of_cases(
    conn: psycopg.Connection[Any], table: str, partition: str, ids: Sequence[str]
) -> dict[str, list[StoredRow]]:
    """Every event of the cases ``ids``, by case in version order."""
    by_case: dict[str, list[StoredRow]] = {}
    if not ids:
        return by_case
    records = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM {table} WHERE originator_id = ANY(%s::uuid[]) "
        "ORDER BY originator_id, originator_version",
        (list(ids),),
    ).fetchall()
    for record in records:
        row = to_row(partition, record)
        by_case.setdefault(row.case_id, []).append(row)
    return by_case


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
        if not table_exists(conn, schema, table_name(partition)):
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
        for case_id, case_rows in cases_mentioning(conn, table, partition, key, value).items():
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
