"""Tamper evidence for case histories: canonical JSON and the per-case hash chain (哈希链).

Why: auditors must be able to prove that no stored event was changed or removed. Every case
event carries the hash of its predecessor (`prev_hash`) and its own `hash`; changing, dropping
or reordering an event breaks the chain at that point. This module is pure (no I/O, no
clock) so the same code runs in the aggregate, in `gridctl audit verify`, and in tests, and
the algorithm below is specified precisely enough for an outside tool to recompute it.

Algorithm (version 1)
---------------------
For the event with version ``v`` (1, 2, 3, ... in the case's stream)::

    hash_v = lowercase_hex( SHA-256( canonical_json({
        "prev": prev_hash,        # hash_{v-1}; GENESIS = "" (empty string) for v = 1
        "case": case_id,          # the case UUID as canonical lowercase 8-4-4-4-12 string
        "v":    v,                # integer version (eventsourcing originator_version)
        "type": event_type,       # event class name, e.g. "Reported", "Dispatched"
        "at":   at,               # the event timestamp (the command's time)
        "data": payload,          # the event's own fields, see aggregates/case.py
    }) ) )

``canonical_json(obj)`` is UTF-8 bytes of JSON with:

* object keys sorted by Unicode code point, no insignificant whitespace (separators ``,``
  and ``:``), non-ASCII characters written as raw UTF-8 (not ``\\uXXXX``); string escaping as
  Python's ``json.dumps(..., ensure_ascii=False)``: ``\\"``, ``\\\\``, ``\\n``, ``\\r``,
  ``\\t``, ``\\b``, ``\\f``, other code points below U+0020 as ``\\u00xx`` (lowercase hex);
  ``/`` is not escaped;
* ``true`` / ``false`` / ``null`` for booleans and None; integers in decimal;
* floats as Python's ``repr(float)``: the shortest string that round-trips, always with a
  ``.`` or an exponent (``2.0``, ``0.1``, ``1e-07``, ``1e+16``); NaN and infinities are refused;
* datetimes must be timezone-aware and are converted to UTC and written as the string
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fractional digits); naive datetimes are refused;
* UUIDs as their canonical lowercase hyphenated string; tuples as lists; Enum members as their
  value; dict keys must be strings. Any other type is refused (TypeError).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from enum import Enum
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

#: prev_hash of the first event of every case.
GENESIS = ""

#: Version of the algorithm above; exported with audits so a verifier knows which to apply.
HASH_ALGORITHM = "griddispatch-case-chain-v1/sha256"


@lru_cache(maxsize=8192)
def iso_utc(value: datetime) -> str:
    """Canonical timestamp text: UTC, microseconds, 'Z' (e.g. 2024-05-01T02:03:04.000000Z).

    Naive datetimes are refused because their meaning depends on the machine's zone, which
    would make the same history hash differently on two machines.

    Remembered for the last few thousand moments: an event writes its time, its deadline and
    the case's running deadlines, mostly the same few datetimes again (equal moments in
    other zones are equal keys and have the same UTC text).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime not allowed: {value!r}")
    utc = value.astimezone(UTC)
    if utc.year >= 1000:  # same text as strftime, which does not pad years below 1000
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _normalise(obj: Any) -> Any:
    """Turn `obj` into plain JSON types following the module docstring's rules.

    Exact-type checks come first because this runs for every field of every event on the
    write path; subclasses (Enum members, bool) fall through to the slower isinstance checks.
    """
    kind = type(obj)
    if kind is str or kind is int or obj is None or kind is bool:
        return obj
    if kind is dict:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise TypeError(f"dict keys must be str, got {type(key).__name__}: {key!r}")
                key = str(key.value) if isinstance(key, Enum) else str(key)
            vkind = type(value)
            out[key] = value if vkind is str or vkind is int or value is None else _normalise(value)
        return out
    if kind is list or kind is tuple:
        return [v if type(v) is str else _normalise(v) for v in obj]
    if kind is float:
        if not math.isfinite(obj):
            raise ValueError(f"non-finite float not allowed: {obj!r}")
        return obj
    if isinstance(obj, datetime):
        return iso_utc(obj)
    if isinstance(obj, Enum):
        return _normalise(obj.value)
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _normalise(float(obj))
    if isinstance(obj, UUID):
        return str(obj)
    if isinstance(obj, dict | list | tuple):
        return _normalise(dict(obj) if isinstance(obj, dict) else list(obj))
    raise TypeError(f"type not allowed in canonical JSON: {type(obj).__name__}")


#: Leaves orjson writes exactly as the rules above say (datetimes reach ``_fast_default``).
_FAST_LEAVES = frozenset({str, int, bool, type(None), datetime, UUID})
_FAST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def _fast_ok(obj: Any) -> bool:
    """True when orjson's output for `obj` is the canonical form, checked value by value.

    orjson (sorted keys, compact, raw UTF-8, the same string escapes) agrees with the rules for
    exact str / int / bool / None / UUID, dicts and lists of them, and floats written in plain
    notation; it spells floats below 1e-4 differently (``1e-7`` for ``1e-07``) and writes NaN as
    ``null``, so those — and every other type (Enum, subclasses, Decimal …) — go the reference
    way (``_normalise`` + ``json.dumps``). Non-string keys and integers beyond 64 bits make
    orjson raise, which also falls back. The unit tests compare both ways on random values.
    """
    stack: list[Any] = [obj]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            values: Any = item.values()
        elif kind is list or kind is tuple:
            values = item
        else:
            values = (item,)
        for value in values:
            vkind = type(value)
            if vkind in _FAST_LEAVES:
                continue
            if vkind is float:
                if not (value == 0.0 or 1e-4 <= abs(value) < 1e16):  # False for NaN too
                    return False
            elif vkind is dict or vkind is list or vkind is tuple:
                push(value)
            else:
                return False
    return True


def _fast_default(obj: Any) -> str:
    if type(obj) is datetime:
        return iso_utc(obj)  # a naive datetime raises here: the reference path refuses it
    raise TypeError(f"type not allowed in canonical JSON: {type(obj).__name__}")


def canonical_json(obj: Any) -> bytes:
    """Deterministic UTF-8 JSON bytes of `obj` (rules in the module docstring).

    Written by orjson when it produces exactly these bytes (``_fast_ok``; about 3× faster,
    the hash sits on the write path of every event), else by the reference implementation.
    """
    if _fast_ok(obj):
        try:
            return orjson.dumps(obj, default=_fast_default, option=_FAST_OPTIONS)
        except orjson.JSONEncodeError:
            pass  # naive datetime, non-string key, huge int …: the reference path decides
    return _reference_json(obj)


def _reference_json(obj: Any) -> bytes:
    """The reference implementation of `canonical_json` (stdlib json over `_normalise`)."""
    return json.dumps(
        _normalise(obj),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def event_hash(
    prev_hash: str,
    case_id: str,
    version: int,
    event_type: str,
    at: datetime,
    payload: dict[str, Any],
) -> str:
    """Lowercase hex SHA-256 of one case event, chained to `prev_hash` (GENESIS for v1)."""
    envelope = {
        "prev": prev_hash,
        "case": str(case_id),
        "v": int(version),
        "type": event_type,
        "at": at,
        "data": payload,
    }
    return hashlib.sha256(canonical_json(envelope)).hexdigest()
