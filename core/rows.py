"""Reading the fields of an imported row (CSV or GeoJSON properties) under their aliases.

Cities bring their registers in their own column names — ``lat``, ``纬度``, ``y`` … —, so each
importer (standard addresses ``core/places.py``, components ``core/components.py``) lists the
aliases of its fields and reads a row through :class:`RowFields`, which refuses a bad value
with the importer's own exception (its message goes into the rejected-rows report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class RowFields:
    """The fields of one kind of import: ``aliases`` per field, ``rejected`` the exception a
    bad value raises (a ``ValueError`` subclass whose message names the field and why)."""

    def __init__(
        self, aliases: Mapping[str, tuple[str, ...]], rejected: type[ValueError]
    ) -> None:
        self.aliases = aliases
        self.rejected = rejected

    def get(self, raw: Mapping[str, Any], key: str) -> Any:
        """The first non-empty value under one of ``key``'s aliases, else None."""
        for alias in self.aliases[key]:
            if alias in raw and raw[alias] not in (None, ""):
                return raw[alias]
        return None

    def text(self, raw: Mapping[str, Any], key: str, limit: int) -> str | None:
        """The field as stripped text (None when empty); refused beyond ``limit`` characters."""
        value = self.get(raw, key)
        if value is None:
            return None
        text = str(value).strip()
        if len(text) > limit:
            raise self.rejected(f"{key} 超过 {limit} 个字符")
        return text or None

    def coordinate(self, raw: Mapping[str, Any], key: str) -> float:
        """The field as a finite number; refused when missing or not a number."""
        value = self.get(raw, key)
        if value is None:
            raise self.rejected(f"缺少 {key}")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise self.rejected(f"{key} 不是数字: {str(value)[:30]!r}") from None
        if not math.isfinite(number):
            raise self.rejected(f"{key} 不是有限数值")
        return number
