"""The household's state (户情): what the register, the worklist and the visit form show.

Changed only by applying events (``aggregates.households.aggregate``). Containers are
replaced, never changed in place, so a stored event and a state never share a list or dict.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from aggregates.integrity import iso_utc


@dataclass
class HouseholdState:
    household_id: str = ""
    household_no: str = ""
    grid: str = ""
    community: str = ""
    district: str = ""
    address: str = ""
    address_code: str | None = None  # the city's standard address (标准地址) where it has one
    members: list[dict[str, Any]] = field(default_factory=list)
    #: Active must-visit flags: flag → {reason, since, by}.
    flags: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every set / lift in order: {flag, change: set|lifted, reason, at, by}.
    flag_history: list[dict[str, Any]] = field(default_factory=list)
    inspector: str | None = None  # 责任网格员 (user id)
    party_member: str | None = None  # 联系党员 (name or user id)
    registered_at: datetime | None = None
    archived: bool = False
    visits: list[dict[str, Any]] = field(default_factory=list)
    last_visit_at: datetime | None = None
    #: Cases raised from this household's needs: {case_no, category, description, raised_at,
    #: visit_id}.
    cases: list[dict[str, Any]] = field(default_factory=list)
    #: The visit deadline running (None: no flag, nothing due), when it started, by which flag.
    due: datetime | None = None
    due_started_at: datetime | None = None
    due_flag: str | None = None
    #: Since when the household has had at least one flag without a break.
    flagged_since: datetime | None = None
    version: int = 0
    last_hash: str = ""
    applied_commands: list[str] = field(default_factory=list)

    def copy(self) -> HouseholdState:
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (datetimes as ISO-8601 UTC text); equal for equal histories."""
        out = asdict(self)
        out.pop("applied_commands")
        return _iso(out)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso(v) for v in value]
    return value
