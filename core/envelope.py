"""The event envelope: how a stored domain event travels on the EVENTS stream.

One documented, library-independent JSON shape, so projections, notifiers, auditors' exports
and other cities' systems read events without importing eventsourcing or our classes:

    {"partition": "520102", "position": 17, "case_id": "…uuid…", "version": 3,
     "type": "Dispatched", "at": "2026-11-23T08:00:00Z", "actor": "…", "role": "dispatcher",
     "channel": "web", "reason": null, "command_id": "…", "prev_hash": "…", "hash": "…",
     "data": {…event-specific fields…}}

``position`` is the event's notification id in its partition's log: the exactly-once key of
every consumer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

COMMON = ("actor", "role", "channel", "reason", "command_id", "prev_hash", "hash")
_INTERNAL = ("originator_id", "originator_version", "timestamp", "originator_topic")


def to_envelope(partition: str, position: int, event: Any) -> dict[str, Any]:
    """Turn a domain event object (as eventsourcing rebuilt it) into the envelope dict."""
    attrs = dict(vars(event))
    at = attrs.get("timestamp")
    envelope: dict[str, Any] = {
        "partition": partition,
        "position": position,
        "case_id": str(attrs["originator_id"]),
        "version": int(attrs["originator_version"]),
        "type": type(event).__name__,
        "at": _utc(at) if isinstance(at, datetime) else at,
    }
    for key in COMMON:
        envelope[key] = attrs.get(key)
    envelope["data"] = {
        k: _plain(v) for k, v in attrs.items() if k not in COMMON and k not in _INTERNAL
    }
    return envelope


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _plain(value: Any) -> Any:
    """Values as JSON-friendly Python (UUIDs to str); datetimes stay datetimes for orjson."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return _utc(value)
    if hasattr(value, "value") and not isinstance(value, int | float | str | bool):
        return value.value  # enums
    return value


def parse_time(value: Any) -> datetime | None:
    """Envelope times arrive as ISO strings after a trip through JSON."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def envelope_from_stored(
    partition: str, position: int, originator_id: Any, version: int, topic: str, state: bytes
) -> dict[str, Any]:
    """The same envelope as ``to_envelope``, straight from a stored row (no event objects).

    Why: rebuilding eventsourcing event objects only to turn them back into JSON cost the
    relay most of its CPU. The stored state is eventsourcing's JSON with typed values written
    as ``{"_type_": "uuid_hex" | "datetime_iso" | "decimal_str", "_data_": …}``; decoding that
    with orjson and a small walk gives identical envelopes (tests compare both paths).
    """
    attrs = orjson.loads(state)
    typed = state.count(b'"_type_"')
    if typed and _untype_top(attrs) < typed:
        _untype_in_place(attrs)  # typed values below the top level (rare): walk everything
    at = attrs.pop("timestamp", None)
    envelope: dict[str, Any] = {
        "partition": partition,
        "position": position,
        "case_id": str(originator_id),
        "version": int(version),
        "type": topic.rsplit(".", 1)[-1].rsplit(":", 1)[-1],
        "at": _utc(at) if isinstance(at, datetime) else at,
    }
    pop = attrs.pop
    for key in COMMON:
        envelope[key] = pop(key, None)
    for key in _INTERNAL:
        pop(key, None)
    envelope["data"] = attrs
    return envelope


def _untype_top(attrs: dict[str, Any]) -> int:
    """Replace the typed values among the event's own attributes; how many there were.

    Why not always walk the whole tree: an event's nested parts (its ``summary`` with every
    role's offers, a report's proposal and reporter) are plain JSON, and walking them was
    most of the cost of reading an event back. The caller counts the typed markers in the raw
    bytes and walks deeper only when some are left (a marker-like key anywhere only costs the
    full walk, never a wrong value).
    """
    found = 0
    for key, value in attrs.items():
        if type(value) is dict and len(value) == 2 and "_type_" in value and "_data_" in value:
            attrs[key] = _untype(value)
            found += 1
    return found


def _untype_in_place(container: dict[str, Any] | list[Any]) -> None:
    """Replace eventsourcing's typed values inside freshly parsed JSON, in place (no copies:
    this runs for every event the relay publishes)."""
    items = container.items() if type(container) is dict else enumerate(container)
    for key, value in items:
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                container[key] = _untype(value)  # type: ignore[index]
            else:
                _untype_in_place(value)
        elif kind is list:
            _untype_in_place(value)


def _untype(value: Any) -> Any:
    if isinstance(value, dict):
        kind = value.get("_type_")
        if kind is not None and "_data_" in value and len(value) == 2:
            data = value["_data_"]
            if kind == "datetime_iso":
                return _utc(datetime.fromisoformat(data))
            if kind == "uuid_hex":
                return str(UUID(data))
            return str(data) if kind == "decimal_str" else _untype(data)
        return {k: _untype(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untype(v) for v in value]
    return value
