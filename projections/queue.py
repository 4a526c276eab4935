"""The case queue read model: one row per case, what dispatchers list, filter and open.

Status and deadline per event type are mapped here from the event *facts* (the event says
what happened; this table says what the row shows). The mapping is deliberately a plain
dict so that a reviewer can compare it line by line with aggregates/states.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from aggregates.states import TERMINAL as TERMINAL_STATUSES
from core import codec
from core.envelope import parse_time
from projections.base import Envelope

# Every event also carries ``to_status`` (the aggregate's own answer); this table is the
# fallback for events recorded before that field existed.
STATUS_AFTER: dict[str, str] = {
    "Reported": "reported",
    "Filed": "filed",
    "Rejected": "rejected",
    "MarkedDuplicate": "merged",
    "Dispatched": "dispatched",
    "Accepted": "in_progress",
    "Returned": "returned",
    "Suspended": "suspended",
    "Resumed": "in_progress",
    "ResultReported": "awaiting_verification",
    "VerificationPassed": "verified",
    "VerificationFailed": "dispatched",
    "Escalated": "filed",
    "Closed": "closed",
}
TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)  # the rule: aggregates/states.py

# event type -> (data field holding the new deadline, step it belongs to); mirrors the
# aggregate's ``_set_due`` calls in aggregates/case.py one for one. A missing field clears the
# deadline (the clock stops), exactly as the aggregate does.
DUE_AFTER: dict[str, tuple[str | None, str | None]] = {
    "Reported": ("file_due", "file"),
    "Filed": ("dispatch_due", "dispatch"),
    "Rejected": (None, None),
    "MarkedDuplicate": (None, None),
    "Dispatched": ("handle_due", "handle"),
    "Returned": ("dispatch_due", "dispatch"),
    "ExtensionApproved": ("new_due", None),  # keeps the running step
    "Suspended": ("review_at", "review"),
    "Resumed": ("new_due", "handle"),
    "ResultReported": ("verify_due", "verify"),
    "VerificationPassed": ("close_due", "close"),
    "VerificationFailed": ("new_due", "handle"),
    "Escalated": ("dispatch_due", "dispatch"),
    "Closed": (None, None),
}

COLUMNS: tuple[str, ...] = (
    "case_id",
    "case_no",
    "partition",
    "status",
    "category",
    "kind",
    "grid",
    "community",
    "district",
    "level",
    "node",
    "department",
    "priority",
    "description",
    "address",
    "lat",
    "lon",
    "reporter_name",
    "reporter_phone",
    "reporter_type",
    "source",
    "channel",
    "photos",
    "proposal",
    "reported_at",
    "updated_at",
    "due_at",
    "due_step",
    "due_started_at",
    "warning",
    "overdue",
    "supervised",
    "supervision_orders",
    "escalations",
    "rework_count",
    "return_count",
    "extension_count",
    "pending_extension",
    "satisfaction",
    "duplicate_of",
    "closed_at",
    "version",
    "last_event",
    "last_position",
)

DDL = """
CREATE TABLE IF NOT EXISTS case_queue (
    case_id uuid PRIMARY KEY,
    case_no text NOT NULL UNIQUE,
    partition text NOT NULL,
    status text NOT NULL,
    category text NOT NULL,
    kind text,
    grid text NOT NULL,
    community text,
    district text,
    level text,
    node text,
    department text,
    priority text,
    description text,
    address text,
    lat double precision,
    lon double precision,
    reporter_name text,
    reporter_phone text,
    reporter_type text,
    source text,
    channel text,
    photos jsonb NOT NULL DEFAULT '[]',
    proposal jsonb,
    reported_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    due_at timestamptz,
    due_step text,
    due_started_at timestamptz,
    warning boolean NOT NULL DEFAULT false,
    overdue boolean NOT NULL DEFAULT false,
    supervised boolean NOT NULL DEFAULT false,
    supervision_orders integer NOT NULL DEFAULT 0,
    escalations integer NOT NULL DEFAULT 0,
    rework_count integer NOT NULL DEFAULT 0,
    return_count integer NOT NULL DEFAULT 0,
    extension_count integer NOT NULL DEFAULT 0,
    pending_extension jsonb,
    satisfaction text,
    duplicate_of text,
    closed_at timestamptz,
    version integer NOT NULL,
    last_event text NOT NULL,
    last_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS case_queue_status_idx
    ON case_queue (status, reported_at DESC, case_no DESC);
CREATE INDEX IF NOT EXISTS case_queue_district_idx
    ON case_queue (district, status, reported_at DESC, case_no DESC);
CREATE INDEX IF NOT EXISTS case_queue_grid_idx ON case_queue (grid, status);
CREATE INDEX IF NOT EXISTS case_queue_dept_idx ON case_queue (department, status, due_at);
CREATE INDEX IF NOT EXISTS case_queue_due_idx ON case_queue (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS case_queue_reported_idx ON case_queue (reported_at DESC, case_no DESC);
-- The command centre's other sort orders (gateways/http/centre.py SORTS), expression for
-- expression, so a page is an index walk, not a sort of every match, at a million cases.
CREATE INDEX IF NOT EXISTS case_queue_due_sort_idx
    ON case_queue ((coalesce(due_at, '9999-12-31T00:00:00Z'::timestamptz)), case_no);
CREATE INDEX IF NOT EXISTS case_queue_priority_sort_idx ON case_queue (
    (CASE priority WHEN 'urgent' THEN 0 WHEN 'important' THEN 1 ELSE 2 END),
    (coalesce(due_at, '9999-12-31T00:00:00Z'::timestamptz)), case_no);
CREATE INDEX IF NOT EXISTS case_queue_updated_idx ON case_queue (updated_at DESC, case_no DESC);
"""


def apply_event(row: dict[str, Any] | None, env: Envelope) -> dict[str, Any] | None:
    """Pure: the row after one event (None stays None for events of unknown cases)."""
    etype: str = env["type"]
    data: dict[str, Any] = env.get("data") or {}
    at = parse_time(env["at"])
    if etype == "Reported":
        reporter = data.get("reporter") or {}
        row = {c: None for c in COLUMNS}
        row.update(
            case_id=env["case_id"],
            case_no=data.get("case_no"),
            partition=env["partition"],
            category=data.get("category"),
            kind=data.get("kind"),
            grid=data.get("grid"),
            community=data.get("community"),
            district=data.get("district"),
            level=data.get("level"),
            node=(data.get("proposal") or {}).get("node"),
            priority=data.get("priority"),
            description=data.get("description"),
            address=data.get("address"),
            lat=data.get("lat"),
            lon=data.get("lon"),
            reporter_name=reporter.get("name"),
            reporter_phone=reporter.get("phone"),
            reporter_type=reporter.get("type"),
            source=data.get("source"),
            channel=env.get("channel"),
            photos=data.get("photos") or [],
            proposal=data.get("proposal"),
            reported_at=at,
            warning=False,
            overdue=False,
            supervised=False,
            supervision_orders=0,
            escalations=0,
            rework_count=0,
            return_count=0,
            extension_count=0,
        )
    elif row is None:
        return None
    else:
        row = dict(row)
    _apply_changes(row, etype, data)
    status = data.get("to_status") or STATUS_AFTER.get(etype)
    if status:
        row["status"] = status
        if status != "in_progress":
            row["pending_extension"] = None  # as the aggregate: only pending while handling
        if row["status"] == "closed":
            row["closed_at"] = at
    if etype in DUE_AFTER:
        field, step = DUE_AFTER[etype]
        due = parse_time(data.get(field)) if field else None
        row["due_at"] = due
        row["due_step"] = (step or row.get("due_step") or "handle") if due is not None else None
        row["due_started_at"] = at if due is not None else None
        row["warning"] = row["overdue"] = False
    row["updated_at"] = at
    row["version"] = env["version"]
    row["last_event"] = etype
    row["last_position"] = env["position"]
    return row


def _apply_changes(row: dict[str, Any], etype: str, data: dict[str, Any]) -> None:
    """Field changes other than status and deadline."""
    if etype == "Dispatched":
        row.update(
            department=data.get("department"),
            level=data.get("level"),
            node=data.get("node"),
            priority=data.get("priority"),
        )
    elif etype == "Returned":
        row["return_count"] += 1
    elif etype == "ExtensionRequested":
        row["pending_extension"] = {"hours": data.get("hours"), "reason": data.get("reason")}
    elif etype == "ExtensionApproved":
        row["extension_count"] += 1
        row["pending_extension"] = None
    elif etype == "ExtensionRefused":
        row["pending_extension"] = None
    elif etype == "VerificationFailed":
        row["rework_count"] += 1
    elif etype == "Escalated":
        row["escalations"] += 1
        row.update(level=data.get("to_level"), node=data.get("to_node"), department=None)
        if data.get("proposal"):
            row["proposal"] = data["proposal"]
    elif etype == "Supervised":
        row["supervised"] = True
        row["supervision_orders"] += 1
    elif etype == "ReturnVisited":
        row["satisfaction"] = data.get("satisfaction")
    elif etype == "MarkedDuplicate":
        row["duplicate_of"] = data.get("of_case_no")
    elif etype == "WarningMarked":
        row["warning"] = True
    elif etype == "OverdueMarked":
        row["overdue"] = True
        row["warning"] = True


class QueueProjection:
    """Maintains ``case_queue`` with one read and one upsert per batch."""

    name = "queue"
    tables = ("case_queue",)

    def ddl(self) -> str:
        return DDL

    async def apply(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        ids = list({e["case_id"] for e in envelopes})
        existing = await conn.fetch("SELECT * FROM case_queue WHERE case_id = ANY($1::uuid[])", ids)
        rows: dict[str, dict[str, Any] | None] = {str(r["case_id"]): dict(r) for r in existing}
        for env in envelopes:
            rows[env["case_id"]] = apply_event(rows.get(env["case_id"]), env)
        # One row per case (``rows`` is keyed by case): ON CONFLICT touches each row once.
        records = [_record(r) for r in rows.values() if r is not None]
        if not records:
            return
        # One statement for the whole batch (an executor run per row was the pipeline's
        # largest PostgreSQL cost): the rows as one array per column.
        columns = [list(col) for col in zip(*records, strict=True)]
        for i in _JSON_AT:
            columns[i] = [None if v is None else codec.dumps(v).decode() for v in columns[i]]
        await conn.execute(_UPSERT, *columns)


#: The PostgreSQL type of each column of ``case_queue`` (the arrays' element types).
TYPES: dict[str, str] = {
    "case_id": "uuid", "case_no": "text", "partition": "text", "status": "text",
    "category": "text", "kind": "text", "grid": "text", "community": "text",
    "district": "text", "level": "text", "node": "text", "department": "text",
    "priority": "text", "description": "text", "address": "text",
    "lat": "double precision", "lon": "double precision", "reporter_name": "text",
    "reporter_phone": "text", "reporter_type": "text", "source": "text", "channel": "text",
    "photos": "jsonb", "proposal": "jsonb", "reported_at": "timestamptz",
    "updated_at": "timestamptz", "due_at": "timestamptz", "due_step": "text",
    "due_started_at": "timestamptz", "warning": "boolean", "overdue": "boolean",
    "supervised": "boolean", "supervision_orders": "integer", "escalations": "integer",
    "rework_count": "integer", "return_count": "integer", "extension_count": "integer",
    "pending_extension": "jsonb", "satisfaction": "text", "duplicate_of": "text",
    "closed_at": "timestamptz", "version": "integer", "last_event": "text",
    "last_position": "bigint",
}

#: JSON columns travel as text and are cast back: asyncpg would read a JSON list (``photos``)
#: inside a ``jsonb[]`` array as one more array dimension. NULL stays NULL.
_JSON = frozenset(c for c, t in TYPES.items() if t == "jsonb")
_JSON_AT = [i for i, c in enumerate(COLUMNS) if c in _JSON]

_UPSERT = (
    f"INSERT INTO case_queue ({', '.join(COLUMNS)}) SELECT "
    + ", ".join(f"{c}::jsonb" if c in _JSON else c for c in COLUMNS)
    + " FROM unnest("
    + ", ".join(
        f"${i + 1}::{'text' if c in _JSON else TYPES[c]}[]" for i, c in enumerate(COLUMNS)
    )
    + f") AS u ({', '.join(COLUMNS)}) ON CONFLICT (case_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "case_id")
)


_TIME_COLUMNS = ("reported_at", "updated_at", "due_at", "due_started_at", "closed_at")


def _record(row: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for col in COLUMNS:
        value = row.get(col)
        if col == "case_id":
            value = str(value)
        elif isinstance(value, str) and col in _TIME_COLUMNS:
            value = parse_time(value)
        out.append(value)
    return tuple(out)


def is_open(status: str) -> bool:
    return status not in TERMINAL


__all__ = ["DDL", "QueueProjection", "apply_event", "datetime", "is_open"]
