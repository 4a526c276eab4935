"""One JSON codec for every message on NATS (orjson: fast, strict, datetime-aware)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson


def dumps(obj: Any) -> bytes:
    """Serialise to compact UTF-8 JSON; datetimes as RFC 3339, UUIDs as strings."""
    return orjson.dumps(obj, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC, default=_default)


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ``orjson.JSONDecodeError`` (a ValueError) on garbage."""
    return orjson.loads(data)


def _default(obj: Any) -> Any:
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, UUID):  # asyncpg's own UUID type, which orjson does not know
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
