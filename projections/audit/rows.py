"""Reading the event store's rows directly, for auditors: no aggregate, no eventsourcing mapper.

Why not the eventsourcing mapper: an auditor's tool must read exactly what is stored and be
fast over millions of rows. A row of ``cases_<p>_events`` is ``(notification_id,
originator_id, originator_version, topic, state)``; ``state`` is the UTF-8 JSON that
eventsourcing's JSON transcoder wrote for the event's fields, where datetimes are
``{"_type_": "datetime_iso", "_data_": "<isoformat>"}`` and UUIDs
``{"_type_": "uuid_hex", "_data_": "<32 hex>"}``.

:func:`decode_state` turns ``state`` into plain JSON values with those two types already in
their canonical text (``aggregates.integrity``: UTC ``…ffffffZ`` and hyphenated UUIDs), so the
hashed payload of an event is ``state`` minus :data:`NOT_HASHED`, and canonical JSON of it is
one serialiser call (:func:`canonical_bytes`) — identical bytes to ``canonical_json`` of the
event object, which ``tests/unit/test_audit_rows.py`` pins.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg

from aggregates.integrity import iso_utc
from core import eventlog
from core.db import check_schema
from core.eventlog import EVENT_COLUMNS as EVENT_COLUMNS
from core.eventlog import store_partitions as store_partitions

#: Keys of ``state`` that are not in the hashed payload: the timestamp is hashed as "at",
#: ``originator_topic`` is storage metadata of the first event, the hashes themselves, and
#: eventsourcing's ``class_version`` marker. (originator_id / version are columns.)
NOT_HASHED = frozenset({"timestamp", "originator_topic", "prev_hash", "hash", "class_version"})

#: Fields common to every case event (who / how / why), shown first in histories.
COMMON_FIELDS = ("actor", "role", "channel", "reason", "command_id", "from_status", "to_status")

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
#: A number token orjson may write differently from Python's ``repr(float)``: an exponent, or
#: a magnitude below 1e-4 (Python switches to ``1e-05`` there, orjson writes ``0.00001``).
#: Strings can trigger it too (``"a,0.00001"``): then the reference encoder is used, which is
#: only slower. Everywhere else the bytes are identical (tests/unit/test_audit_rows.py).
_RISKY_NUMBER = re.compile(rb"(?:^|[:,\[])-?(?:0\.0000|[0-9.]+[eE])")
#: The same without ``^`` (a leading class lets the engine skip ahead; twice as fast on an
#: event); :func:`_risky` adds the match at the start.
_RISKY_INSIDE = re.compile(rb"[:,\[]-?(?:0\.0000|[0-9.]+[eE])")
_RISKY_AT_START = re.compile(rb"-?(?:0\.0000|[0-9.]+[eE])")


def _risky(out: bytes) -> bool:
    """``_RISKY_NUMBER.search(out)``, faster."""
    return _RISKY_INSIDE.search(out) is not None or _RISKY_AT_START.match(out) is not None


class UndecodableEvent(ValueError):
    """A stored ``state`` that is not the JSON eventsourcing writes."""


def _iso(text: str) -> str:
    """Canonical UTC text of an eventsourcing ``datetime.isoformat()`` string."""
    if len(text) == 32 and text.endswith("+00:00") and text[19] == ".":
        return text[:26] + "Z"
    if len(text) == 25 and text.endswith("+00:00"):
        return text[:19] + ".000000Z"
    return iso_utc(datetime.fromisoformat(text))


def _uuid(text: str) -> str:
    if len(text) == 32 and text == text.lower():
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return str(UUID(text))


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
        kind, data = obj["_type_"], obj["_data_"]
        if kind == "datetime_iso":
            return _iso(data)
        if kind == "uuid_hex":
            return _uuid(data)
        raise UndecodableEvent(f"unsupported stored type {kind!r}")
    return obj


def _no_constants(name: str) -> Any:
    raise UndecodableEvent(f"{name} is not a JSON value eventsourcing writes")


_DECODER = json.JSONDecoder(object_hook=_hook, parse_constant=_no_constants)

#: Digits → ``0`` (for finding a long run of digits with one substring search).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
#: 19 digits in a row: possibly an integer orjson would read as a float (beyond 64 bits).
_LONG_RUN = b"0" * 19


def fast_loads(data: bytes) -> Any:
    """``json.loads`` of stored JSON by orjson (three times faster), or None where orjson
    could answer differently: JSON it refuses (NaN, lone surrogates …: the stdlib decides)
    and integers beyond 64 bits, which it reads as floats — any run of 19 digits sends the
    row the stdlib way (hex digests rarely have one; then it is only slower)."""
    if _LONG_RUN in data.translate(_DIGITS_AS_ZERO):
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _canonical_typed(attrs: dict[str, Any], typed: int) -> bool:
    """:func:`_hook` on a decoded state, in place, when its ``typed`` markers are all
    values of its own keys (as every case event writes them); False (nothing to trust)
    when some are deeper or not what :func:`_hook` would accept."""
    found = 0
    for key, value in attrs.items():
        if type(value) is dict and "_type_" in value:
            data = value.get("_data_")
            if len(value) != 2 or type(data) is not str:
                return False
            kind = value["_type_"]
            if kind == "datetime_iso":
                attrs[key] = _iso(data)
            elif kind == "uuid_hex":
                attrs[key] = _uuid(data)
            else:
                return False
            found += 1
    return found == typed


def decode_state(state: bytes | memoryview | str) -> dict[str, Any]:
    """The stored fields of one event as plain JSON values (datetimes / UUIDs as canonical
    text). Raises :class:`UndecodableEvent`.

    orjson first (:func:`fast_loads`) when every typed value is a top-level field (the
    count of markers in the bytes says so); the stdlib decoder with :func:`_hook` for
    everything else, and for what the fast way cannot vouch for."""
    if not isinstance(state, str):
        data = bytes(state)
        value = fast_loads(data)
        if type(value) is dict:
            typed = data.count(b'"_type_"')
            if not typed:
                return value
            try:
                if _canonical_typed(value, typed):
                    return value
            except (ValueError, TypeError):
                pass  # the stdlib way says what is wrong
    try:
        text = state if isinstance(state, str) else bytes(state).decode("utf-8")
        value = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise UndecodableEvent(str(exc)) from exc
    if not isinstance(value, dict):
        raise UndecodableEvent("state is not a JSON object")
    return value


def event_type(topic: str) -> str:
    """``aggregates.case:Case.Dispatched`` → ``Dispatched``."""
    return topic.rpartition(":")[2].rpartition(".")[2]


def payload_of(state: dict[str, Any]) -> dict[str, Any]:
    """The hashed payload: every stored field except :data:`NOT_HASHED`."""
    return {k: v for k, v in state.items() if k not in NOT_HASHED}


def digest(
    prev: str, case_id: str, version: int, etype: str, at: str, payload: dict[str, Any]
) -> str:
    """The per-case hash (``aggregates.integrity.event_hash``) of decoded values.

    Raises ValueError for values canonical JSON refuses (NaN, infinities)."""
    envelope = {"prev": prev, "case": case_id, "v": version, "type": etype, "at": at,
                "data": payload}
    return hashlib.sha256(canonical_bytes(envelope)).hexdigest()


def canonical_bytes(obj: Any) -> bytes:
    """``aggregates.integrity.canonical_json`` of decoded JSON values (dict / list / str / int
    / float / bool / None, as :func:`decode_state` returns: never NaN or infinities, which
    orjson would write as null): orjson with sorted keys where it writes the same bytes
    (faster), else the reference ``json.dumps``."""
    try:
        out = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return _ENCODER.encode(obj).encode("utf-8")
    if _risky(out):
        return _ENCODER.encode(obj).encode("utf-8")
    return out


@dataclass
class StoredRow:
    """One decoded row of a partition's events table."""

    partition: str
    position: int
    case_id: str
    version: int
    type: str
    state: dict[str, Any]

    @property
    def at(self) -> str:
        return str(self.state.get("timestamp"))

    @property
    def prev_hash(self) -> str:
        return str(self.state.get("prev_hash", ""))

    @property
    def hash(self) -> str:
        return str(self.state.get("hash", ""))

    def payload(self) -> dict[str, Any]:
        return payload_of(self.state)

    def recompute(self, prev: str | None = None) -> str:
        """The hash this row's content gives, chained to ``prev`` (default: its prev_hash)."""
        return digest(
            self.prev_hash if prev is None else prev,
            self.case_id,
            self.version,
            self.type,
            self.at,
            self.payload(),
        )

    def as_export(self) -> dict[str, Any]:
        """The export shape: exactly what the per-case hash covers, plus location."""
        return {
            "partition": self.partition,
            "position": self.position,
            "case_id": self.case_id,
            "version": self.version,
            "type": self.type,
            "at": self.at,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "payload": self.payload(),
        }


# --------------------------------------------------------------------------- SQL access


def connect(database_url: str) -> psycopg.Connection[Any]:
    """A plain psycopg connection (autocommit off; callers open READ ONLY transactions)."""
    return psycopg.connect(database_url, application_name="griddispatch-audit")


def qualified(schema: str, partition: str) -> str:
    """The partition's events table in ``schema`` (``core.eventlog`` names it)."""
    return eventlog.qualified(partition, schema)


def table_exists(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f"{check_schema(schema)}.{table}",)).fetchone()
    return row is not None and row[0] is not None


def existing_tables(
    conn: psycopg.Connection[Any], schema: str, tables: Sequence[str]
) -> frozenset[str]:
    """Which of ``tables`` exist in ``schema`` (one query for all of them)."""
    if not tables:
        return frozenset()
    checked = check_schema(schema)
    row = conn.execute(
        "SELECT " + ", ".join(["to_regclass(%s) IS NOT NULL"] * len(tables)),
        [f"{checked}.{t}" for t in tables],
    ).fetchone()
    return frozenset(t for t, found in zip(tables, row or (), strict=False) if found)


def to_row(partition: str, record: tuple[Any, ...]) -> StoredRow:
    position, case_id, version, topic, state = record
    return StoredRow(partition, int(position), case_id, int(version), event_type(topic),
                     decode_state(state))


def case_rows(
    conn: psycopg.Connection[Any], schema: str, partition: str, case_id: str
) -> list[StoredRow]:
    """Every stored event of one case, in version order."""
    records = eventlog.select_events(
        conn, schema, partition, "originator_id = %s", (case_id,), order="originator_version"
    )
    return [to_row(partition, r) for r in records]
