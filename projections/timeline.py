"""The case timeline read model: every event of every case, in order, for the case panel.

The auditor's authoritative history is read from the event store itself (it must prove
integrity); this table serves the command centre's timeline fast and filterable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from core.envelope import parse_time
from projections.base import Envelope, as_given, insert_rows, json_rows

DDL = """
CREATE TABLE IF NOT EXISTS case_timeline (
    case_id uuid NOT NULL,
    version integer NOT NULL,
    partition text NOT NULL,
    position bigint NOT NULL,
    type text NOT NULL,
    at timestamptz NOT NULL,
    actor text,
    role text,
    channel text,
    reason text,
    command_id text,
    data jsonb NOT NULL,
    prev_hash text,
    hash text,
    PRIMARY KEY (case_id, version)
);
CREATE INDEX IF NOT EXISTS case_timeline_actor_idx ON case_timeline (actor, at);
CREATE INDEX IF NOT EXISTS case_timeline_at_idx ON case_timeline (at);
"""


class TimelineProjection:
    """Appends one row per event; a replayed event (same case and version) is ignored."""

    name = "timeline"
    tables = ("case_timeline",)

    def ddl(self) -> str:
        return DDL

    async def apply(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        # One statement for the whole batch, its rows as one JSON parameter. A replayed event
        # (same case and version) is ignored; within one batch the first copy is kept, as it
        # was when the rows were inserted one by one.
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for e in envelopes:
            key = (str(e["case_id"]), e["version"])
            if key not in rows:
                rows[key] = dict(zip(COLUMNS, record(e, time=as_given), strict=True))
        if rows:
            await conn.execute(_INSERT, json_rows(rows.values()))


COLUMNS = (
    "case_id", "version", "partition", "position", "type", "at", "actor", "role", "channel",
    "reason", "command_id", "data", "prev_hash", "hash",
)


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    """The event's facts as the timeline shows them: without its ``summary`` (what changed in
    the read models' fields — the queue row already shows the result)."""
    if "summary" not in data:
        return data
    shown = dict(data)  # a C-level copy: cheaper than a comprehension filtering one key
    del shown["summary"]
    return shown


def record(e: Envelope, time: Callable[[Any], Any] = parse_time) -> tuple[Any, ...]:
    """The row of one event, in :data:`COLUMNS` order (live inserts and rebuild COPY);
    ``time`` makes the envelope's time the row's (JSON rows keep its text)."""
    return (
        e["case_id"],
        e["version"],
        e["partition"],
        e["position"],
        e["type"],
        time(e["at"]),
        e.get("actor"),
        e.get("role"),
        e.get("channel"),
        e.get("reason"),
        e.get("command_id"),
        _shown(e.get("data") or {}),
        e.get("prev_hash"),
        e.get("hash"),
    )


TYPES = (
    "uuid", "integer", "text", "bigint", "text", "timestamptz", "text", "text", "text",
    "text", "text", "jsonb", "text", "text",
)

_INSERT = (
    insert_rows("case_timeline", dict(zip(COLUMNS, TYPES, strict=True)))
    + " ON CONFLICT (case_id, version) DO NOTHING"
)

