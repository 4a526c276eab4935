"""The case queue read model: one row per case, what dispatchers list, filter and open.

The row is made of recorded facts only: the ``Reported`` event's own fields, then after every
event its ``to_status``, the deadline running after it (``due`` / ``due_step``) and its
``summary`` (the case's list fields after the event, the traffic lights and the actions each
role is offered next). No rule of the case is repeated here; the aggregate decided, the event
says what it decided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import asyncpg

from core.envelope import parse_time
from core.vocabulary import TERMINAL as TERMINAL_STATUSES
from projections.base import Envelope, as_given, insert_rows, json_rows, rows_of_known_cases
from projections.nearby import INDEX_DDL as NEARBY_INDEX

TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)

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
    "answers",
    "media_url",
    "proposal",
    "reported_at",
    "updated_at",
    "due_at",
    "due_step",
    "due_started_at",
    "warning_at",
    "warning",
    "overdue",
    "supervised",
    "supervision_orders",
    "escalations",
    "rework_count",
    "return_count",
    "extension_count",
    "pending_extension",
    "offers",
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
    warning_at timestamptz,
    warning boolean NOT NULL DEFAULT false,
    overdue boolean NOT NULL DEFAULT false,
    supervised boolean NOT NULL DEFAULT false,
    supervision_orders integer NOT NULL DEFAULT 0,
    escalations integer NOT NULL DEFAULT 0,
    rework_count integer NOT NULL DEFAULT 0,
    return_count integer NOT NULL DEFAULT 0,
    extension_count integer NOT NULL DEFAULT 0,
    pending_extension jsonb,
    offers jsonb NOT NULL DEFAULT '{}',
    satisfaction text,
    duplicate_of text,
    closed_at timestamptz,
    version integer NOT NULL,
    last_event text NOT NULL,
    last_position bigint NOT NULL
);
ALTER TABLE case_queue ADD COLUMN IF NOT EXISTS offers jsonb NOT NULL DEFAULT '{}';
ALTER TABLE case_queue ADD COLUMN IF NOT EXISTS answers jsonb NOT NULL DEFAULT '{}';
ALTER TABLE case_queue ADD COLUMN IF NOT EXISTS media_url text;
ALTER TABLE case_queue ADD COLUMN IF NOT EXISTS warning_at timestamptz;
-- No planner statistics for the offers: no query's estimate uses them (the lists filter on
-- ``(offers -> role) ? action``, an expression the column's statistics do not describe),
-- and sorting every row's offers for them was half of ANALYZE's time on this table (a
-- rebuild's VACUUM (ANALYZE), autovacuum's ANALYZE).
ALTER TABLE case_queue ALTER COLUMN offers SET STATISTICS 0;
CREATE INDEX IF NOT EXISTS case_queue_status_idx
    ON case_queue (status, reported_at DESC, case_no DESC);
CREATE INDEX IF NOT EXISTS case_queue_district_idx
    ON case_queue (district, status, reported_at DESC, case_no DESC);
CREATE INDEX IF NOT EXISTS case_queue_grid_idx ON case_queue (grid, status);
CREATE INDEX IF NOT EXISTS case_queue_dept_idx ON case_queue (department, status, due_at);
CREATE INDEX IF NOT EXISTS case_queue_due_idx ON case_queue (due_at) WHERE due_at IS NOT NULL;
-- The SLA watcher's pass (gateways/watcher.py OPEN_DEADLINES_SQL): the deadlines whose yellow
-- moment has come, and those whose moment was not recorded (events from before it was).
CREATE INDEX IF NOT EXISTS case_queue_yellow_idx ON case_queue (warning_at)
    WHERE NOT warning AND warning_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS case_queue_yellow_unknown_idx ON case_queue (due_at)
    WHERE NOT warning AND warning_at IS NULL AND due_at IS NOT NULL
      AND coalesce(due_step, 'handle') <> 'review';
CREATE INDEX IF NOT EXISTS case_queue_reported_idx ON case_queue (reported_at DESC, case_no DESC);
-- The command centre's other sort orders (gateways/http/centre.py SORTS), expression for
-- expression, so a page is an index walk, not a sort of every match, at a million cases.
CREATE INDEX IF NOT EXISTS case_queue_due_sort_idx
    ON case_queue ((coalesce(due_at, '9999-12-31T00:00:00Z'::timestamptz)), case_no);
CREATE INDEX IF NOT EXISTS case_queue_priority_sort_idx ON case_queue (
    (CASE priority WHEN 'urgent' THEN 0 WHEN 'important' THEN 1 ELSE 2 END),
    (coalesce(due_at, '9999-12-31T00:00:00Z'::timestamptz)), case_no);
CREATE INDEX IF NOT EXISTS case_queue_updated_idx ON case_queue (updated_at DESC, case_no DESC);
-- The call-taker's list of return visits due, oldest closing first
-- (projections/return_visits.py): a page is a walk of the few closed, unvisited cases.
CREATE INDEX IF NOT EXISTS case_queue_visit_due_idx ON case_queue (closed_at, case_no)
    WHERE status = 'closed' AND satisfaction IS NULL;
""" + NEARBY_INDEX  # open cases of a category near a point (projections/nearby.py)


#: Summary fields (``aggregates.state.CaseState``) shown as queue columns of the same name.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "level", "node", "department", "priority", "supervised", "supervision_orders",
    "escalations", "rework_count", "return_count", "extension_count", "pending_extension",
    "satisfaction", "duplicate_of", "closed_at", "offers", "overdue",
)
#: Columns a case's first event sets from its summary; later events change the ones named in
#: theirs.


_SUMMARY_SET = frozenset(SUMMARY_COLUMNS)


def apply_event(row: dict[str, Any] | None, env: Envelope) -> dict[str, Any] | None:
    """Pure: the row after one event (None stays None for events of unknown cases), a copy
    with its times parsed — the reference :func:`fold_event` is held to
    (``tests/unit/test_bulk_envelopes.py``)."""
    if env["type"] == "Reported":
        row = _reported(env, parse_time(env["at"]))
    elif row is None:
        return None
    else:
        row = dict(row)
    _change(row, env, parse_time)
    return row


def fold_event(row: dict[str, Any] | None, env: Envelope) -> dict[str, Any] | None:
    """:func:`apply_event` for callers that own their rows — the live apply (rows read for
    this batch) and the rebuild: ``row`` is changed in place (no copy of its ~50 fields per
    event) and the times stay as the envelope gives them (the codec's text; the live apply
    writes them as JSON, the rebuild's :func:`_record` parses them once), so the row is the
    same."""
    if env["type"] == "Reported":
        row = _reported(env, env["at"])
    elif row is None:
        return None
    _change(row, env, as_given)
    return row


def _reported(env: Envelope, at: Any) -> dict[str, Any]:
    """The row a ``Reported`` event starts (its summary, status and deadline: ``_change``)."""
    data: dict[str, Any] = env.get("data") or {}
    reporter = data.get("reporter") or {}
    row = dict.fromkeys(COLUMNS)
    row.update(
        case_id=env["case_id"],
        case_no=data.get("case_no"),
        partition=env["partition"],
        category=data.get("category"),
        kind=data.get("kind"),
        grid=data.get("grid"),
        community=data.get("community"),
        district=data.get("district"),
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
        answers=data.get("answers") or {},
        media_url=data.get("media_url"),
        reported_at=at,
    )
    return row


def _change(row: dict[str, Any], env: Envelope, time: Callable[[Any], Any]) -> None:
    """What every event sets, in place; ``time`` turns the envelope's times into the row's."""
    data: dict[str, Any] = env.get("data") or {}
    if "proposal" in data:  # a new routing proposal (on report and on escalation)
        row["proposal"] = data["proposal"]
    summary: dict[str, Any] = data.get("summary") or {}  # what the event changed
    for column, value in summary.items():  # an event changes a few of them
        if column in _SUMMARY_SET:
            row[column] = value
    row["warning"] = bool(summary.get("warned") or summary.get("overdue"))  # yellow or worse
    if "due_since" in summary:
        row["due_started_at"] = time(summary["due_since"])
    row["status"] = data["to_status"]
    row["due_at"] = time(data.get("due"))
    row["due_step"] = data.get("due_step")
    row["warning_at"] = time(data.get("due_warn"))  # absent in events older than it: None
    row["updated_at"] = time(env["at"])
    row["version"] = env["version"]
    row["last_event"] = env["type"]
    row["last_position"] = env["position"]


class QueueProjection:
    """Maintains ``case_queue`` with one read and one upsert per batch."""

    name = "queue"
    tables = ("case_queue",)

    def ddl(self) -> str:
        return DDL

    async def apply(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        existing = await rows_of_known_cases(
            conn, "SELECT * FROM case_queue WHERE case_id = ANY($1::uuid[])", envelopes
        )
        rows: dict[str, dict[str, Any] | None] = {str(r["case_id"]): dict(r) for r in existing}
        for env in envelopes:  # the rows are this batch's own: folded in place
            rows[env["case_id"]] = fold_event(rows.get(env["case_id"]), env)
        # One row per case (``rows`` is keyed by case): ON CONFLICT touches each row once.
        # One statement for the whole batch (an executor run per row was the pipeline's
        # largest PostgreSQL cost), its rows as one JSON parameter; times go as they came.
        changed = [r for r in rows.values() if r is not None]
        if changed:
            await conn.execute(_UPSERT, json_rows(changed))


#: The PostgreSQL type of each column of ``case_queue`` (the arrays' element types).
TYPES: dict[str, str] = {
    "case_id": "uuid", "case_no": "text", "partition": "text", "status": "text",
    "category": "text", "kind": "text", "grid": "text", "community": "text",
    "district": "text", "level": "text", "node": "text", "department": "text",
    "priority": "text", "description": "text", "address": "text",
    "lat": "double precision", "lon": "double precision", "reporter_name": "text",
    "reporter_phone": "text", "reporter_type": "text", "source": "text", "channel": "text",
    "photos": "jsonb", "answers": "jsonb", "media_url": "text", "proposal": "jsonb",
    "reported_at": "timestamptz",
    "updated_at": "timestamptz", "due_at": "timestamptz", "due_step": "text",
    "due_started_at": "timestamptz", "warning_at": "timestamptz", "warning": "boolean",
    "overdue": "boolean",
    "supervised": "boolean", "supervision_orders": "integer", "escalations": "integer",
    "rework_count": "integer", "return_count": "integer", "extension_count": "integer",
    "pending_extension": "jsonb", "offers": "jsonb", "satisfaction": "text", "duplicate_of": "text",
    "closed_at": "timestamptz", "version": "integer", "last_event": "text",
    "last_position": "bigint",
}

#: Every column of :data:`COLUMNS` with its type, in order (the batch's JSON rows are read so).
_TYPED = {c: TYPES[c] for c in COLUMNS}

_UPSERT = (
    insert_rows("case_queue", _TYPED)
    + " ON CONFLICT (case_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "case_id")
)


_TIME_COLUMNS = (
    "reported_at", "updated_at", "due_at", "due_started_at", "warning_at", "closed_at"
)


_TIME_AT = tuple(COLUMNS.index(c) for c in _TIME_COLUMNS)
_VALUES = itemgetter(*COLUMNS)
assert COLUMNS[0] == "case_id"


def _record(row: dict[str, Any]) -> tuple[Any, ...]:
    """The row's values in :data:`COLUMNS` order: the case id as text, times as datetimes."""
    try:
        out = list(_VALUES(row))
    except KeyError:  # a row without some column: None for it
        out = [row.get(col) for col in COLUMNS]
    out[0] = str(out[0])
    for i in _TIME_AT:
        if isinstance(out[i], str):
            out[i] = parse_time(out[i])
    return tuple(out)


def is_open(status: str) -> bool:
    return status not in TERMINAL


__all__ = ["DDL", "QueueProjection", "apply_event", "datetime", "is_open"]
