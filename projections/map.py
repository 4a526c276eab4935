"""The map read model: open cases per unit grid, with their traffic lights (红黄灯).

The command-centre map colours grid polygons from ``map_grid_counts`` (one row per grid:
open / warning / overdue / supervised / urgent) and never from per-case markers, so it stays
fast with hundreds of thousands of open cases. Community, district and city figures are sums
over the grids under them (the jurisdiction tree is configuration, so the roll-up happens at
query time in :func:`rollup`, for any number of levels).

``map_cases`` keeps the handful of fields of each case that can still change (a case leaves
the table once its last event offered no role anything: rejected, merged, or closed and
visited without a reopen to follow), so a batch can compute exact deltas: the counts a case
contributed before the batch are subtracted and the counts after it are added. Only open
cases count; a closed one waiting for its visit counts nothing.

Everything here is a recorded fact: every event says the status, the deadline and the case's
list fields after it (its ``summary``, with the yellow 黄灯 and red 红灯 lights of the running
deadline). *warning* here means "yellow, not yet red" and *overdue* means "red": the two are
disjoint and a legend can show open = green + yellow + red + no clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

import asyncpg

from core.envelope import parse_time
from projections.base import Envelope, insert_rows, json_rows, rows_of_known_cases
from projections.queue import TERMINAL

if TYPE_CHECKING:  # the type only: a rebuild's fold processes import this module, and
    # core.jurisdiction brings shapely and numpy (a third of their start)
    from core.jurisdiction import Jurisdiction

PRIORITY_RANK = {"urgent": 0, "important": 1, "ordinary": 2}


def iso(value: Any) -> str | None:
    """Canonical UTC ISO text of an envelope time (keys must compare equal after JSON, and
    whether the envelope came from NATS — text with ``Z`` — or from the store — datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.endswith("Z"):
            return value[:-1] + "+00:00"  # orjson's UTC form; same instant, same text
        if value.endswith("+00:00"):
            return value
    at = parse_time(value)
    return None if at is None else at.astimezone(UTC).isoformat()


def due_key(step: str | None, due: str | None) -> str | None:
    return None if due is None else f"{step}@{due}"


def inspector_of(env: Envelope) -> str | None:
    """The inspector (网格员) who reported a case: the reporter when it is an inspector, else
    the actor when it acted as one. Citizens' and Open311 reports have none."""
    data = env.get("data") or {}
    reporter = data.get("reporter") or {}
    if reporter.get("type") == "inspector" and reporter.get("id"):
        return str(reporter["id"])
    if env.get("role") == "inspector" and env.get("actor"):
        return str(env["actor"])
    return None


def track(state: dict[str, Any] | None, env: Envelope) -> dict[str, Any] | None:
    """Pure: the case facts the map and the metrics need after one event.

    Returns a new dict (the input is not changed); None for events of unknown cases. Fields:
    case_no, status, grid, community, district, level, node, department, priority,
    inspector, reported_at, due, due_step, warning_for, overdue_for, supervised.
    """
    return advance(dict(state) if state is not None else None, env)


def advance(state: dict[str, Any] | None, env: Envelope) -> dict[str, Any] | None:
    """:func:`track` changing ``state`` in place (projections own their batch's states)."""
    etype: str = env["type"]
    data: dict[str, Any] = env.get("data") or {}
    if etype == "Reported":
        # The place and reporter; the rest comes from the event's summary and deadline below
        # (a case's first summary names every field).
        state = {
            "case_no": data.get("case_no"),
            "grid": data.get("grid"),
            "community": data.get("community"),
            "district": data.get("district"),
            "inspector": inspector_of(env),
            "reported_at": iso(env["at"]),
        }
    elif state is None:
        return None
    summary: dict[str, Any] = data.get("summary") or {}
    due = iso(data.get("due"))
    step = data.get("due_step") if due is not None else None
    key = due_key(step, due)
    state.update({k: summary[k] for k in ("level", "node", "department", "priority",
                                          "supervised") if k in summary})
    state.update(
        status=data["to_status"],
        due=due,
        due_step=step,
        warning_for=key if summary.get("warned") else None,
        overdue_for=key if summary.get("overdue") else None,
    )
    # Nothing more can happen (no role is offered anything): the case leaves map_cases.
    if "offers" in summary:
        state["finished"] = not summary["offers"]
    else:
        state.setdefault("finished", False)  # only unfinished cases are kept between batches
    return state


def lights(state: dict[str, Any]) -> tuple[bool, bool]:
    """(warning, overdue) for the running deadline: yellow-not-red, and red."""
    key = due_key(state.get("due_step"), state.get("due"))
    overdue = key is not None and state.get("overdue_for") == key
    warning = key is not None and state.get("warning_for") == key and not overdue
    return warning, overdue


def is_open(state: dict[str, Any] | None) -> bool:
    return state is not None and state.get("status") not in TERMINAL


COUNT_FIELDS = ("open", "warning", "overdue", "supervised", "urgent")


def contribution(state: dict[str, Any] | None) -> tuple[int, int, int, int, int]:
    """What one case adds to its grid's counts (all zero once it is closed / terminal)."""
    if not is_open(state):
        return (0, 0, 0, 0, 0)
    assert state is not None
    warning, overdue = lights(state)
    return (
        1,
        int(warning),
        int(overdue),
        int(bool(state.get("supervised"))),
        int(state.get("priority") == "urgent"),
    )


DDL = """
CREATE TABLE IF NOT EXISTS map_cases (
    case_id uuid PRIMARY KEY,
    case_no text,
    status text NOT NULL,
    grid text NOT NULL,
    community text,
    district text,
    level text,
    node text,
    department text,
    priority text,
    inspector text,
    reported_at timestamptz,
    due_at timestamptz,
    due_step text,
    warning_for text,
    overdue_for text,
    warning boolean NOT NULL,
    overdue boolean NOT NULL,
    supervised boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS map_cases_grid_idx ON map_cases (grid);
CREATE TABLE IF NOT EXISTS map_grid_counts (
    grid text PRIMARY KEY,
    community text,
    district text,
    open integer NOT NULL DEFAULT 0,
    warning integer NOT NULL DEFAULT 0,
    overdue integer NOT NULL DEFAULT 0,
    supervised integer NOT NULL DEFAULT 0,
    urgent integer NOT NULL DEFAULT 0
);
"""

_CASE_COLUMNS = (
    "case_id, case_no, status, grid, community, district, level, node, department, priority, "
    "inspector, reported_at, due_at, due_step, warning_for, overdue_for, warning, overdue, "
    "supervised"
)


_CASE_TYPES = {
    "case_id": "uuid", "case_no": "text", "status": "text", "grid": "text", "community": "text",
    "district": "text", "level": "text", "node": "text", "department": "text",
    "priority": "text", "inspector": "text", "reported_at": "timestamptz",
    "due_at": "timestamptz", "due_step": "text", "warning_for": "text", "overdue_for": "text",
    "warning": "boolean", "overdue": "boolean", "supervised": "boolean",
}


_CASE_NAMES = tuple(c.strip() for c in _CASE_COLUMNS.split(","))

_UPSERT_CASES = (
    insert_rows("map_cases", {n: _CASE_TYPES[n] for n in _CASE_NAMES})
    + " ON CONFLICT (case_id) DO UPDATE SET "
    + ", ".join(f"{n} = EXCLUDED.{n}" for n in _CASE_NAMES[1:])
)

_GRID_DELTA = {"grid": "text", "community": "text", "district": "text"} | dict.fromkeys(
    COUNT_FIELDS, "int"
)

#: Each grid's change of counts added to its row; the grids whose counts all came to zero.
_ADD_COUNTS = (
    f"WITH up AS ({insert_rows('map_grid_counts', _GRID_DELTA)} "
    "ON CONFLICT (grid) DO UPDATE SET "
    + ", ".join(f"{f} = map_grid_counts.{f} + EXCLUDED.{f}" for f in COUNT_FIELDS)
    + f" RETURNING grid, {' + '.join(f'abs({f})' for f in COUNT_FIELDS)} AS total) "
    "SELECT grid FROM up WHERE total = 0"
)


def _state_of(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    return {
        "case_no": row["case_no"],
        "status": row["status"],
        "grid": row["grid"],
        "community": row["community"],
        "district": row["district"],
        "level": row["level"],
        "node": row["node"],
        "department": row["department"],
        "priority": row["priority"],
        "inspector": row["inspector"],
        "reported_at": iso(row["reported_at"]),
        "due": iso(row["due_at"]),
        "due_step": row["due_step"],
        "warning_for": row["warning_for"],
        "overdue_for": row["overdue_for"],
        "supervised": row["supervised"],
    }


def _case_record(case_id: str, s: dict[str, Any]) -> tuple[Any, ...]:
    warning, overdue = lights(s)
    return (
        case_id,
        s["case_no"],
        s["status"],
        s["grid"],
        s["community"],
        s["district"],
        s["level"],
        s["node"],
        s["department"],
        s["priority"],
        s["inspector"],
        parse_time(s["reported_at"]),
        parse_time(s["due"]),
        s["due_step"],
        s["warning_for"],
        s["overdue_for"],
        warning,
        overdue,
        bool(s["supervised"]),
    )


class MapProjection:
    """Keeps ``map_cases`` (open cases) and ``map_grid_counts`` (per-grid totals)."""

    name = "map"
    tables = ("map_cases", "map_grid_counts")

    def ddl(self) -> str:
        return DDL

    async def apply(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        ids = list(dict.fromkeys(e["case_id"] for e in envelopes))
        existing = await rows_of_known_cases(
            conn, f"SELECT {_CASE_COLUMNS} FROM map_cases WHERE case_id = ANY($1::uuid[])",
            envelopes,
        )
        before: dict[str, dict[str, Any] | None] = {
            str(r["case_id"]): _state_of(r) for r in existing
        }
        after = dict(before)
        for env in envelopes:
            after[env["case_id"]] = track(after.get(env["case_id"]), env)  # copies: keeps before
        deltas: dict[str, list[int]] = {}
        where: dict[str, tuple[str | None, str | None]] = {}
        upserts: list[dict[str, Any]] = []
        deletes: list[str] = []
        for case_id in ids:
            old, new = before.get(case_id), after.get(case_id)
            if new is None:
                continue
            grid = new["grid"]
            where[grid] = (new["community"], new["district"])
            delta = deltas.setdefault(grid, [0] * len(COUNT_FIELDS))
            for i, (a, b) in enumerate(zip(contribution(old), contribution(new), strict=True)):
                delta[i] += b - a
            if not new["finished"]:
                upserts.append(dict(zip(_CASE_NAMES, _case_record(case_id, new), strict=True)))
            elif old is not None:
                deletes.append(case_id)
        if upserts:
            await conn.execute(_UPSERT_CASES, json_rows(upserts))
        if deletes:
            await conn.execute("DELETE FROM map_cases WHERE case_id = ANY($1::uuid[])", deletes)
        if deltas:
            rows = [
                {"grid": g, "community": where[g][0], "district": where[g][1],
                 **dict(zip(COUNT_FIELDS, d, strict=True))}
                for g, d in deltas.items()
            ]
            # A grid with nothing open has no row: the table's content then depends only on
            # the events, never on how they were batched (rebuild equals live).
            zeros = await conn.fetch(_ADD_COUNTS, json_rows(rows))
            if zeros:
                await conn.execute(
                    "DELETE FROM map_grid_counts WHERE grid = ANY($1::text[]) AND open = 0 "
                    "AND warning = 0 AND overdue = 0 AND supervised = 0 AND urgent = 0",
                    [r["grid"] for r in zeros],
                )


# ---------------------------------------------------------------------------- queries


def rollup(
    j: Jurisdiction, counts: dict[str, dict[str, int]], node: str | None = None
) -> dict[str, Any]:
    """Counts of ``node`` (default the city) and of each child node / grid below it."""
    code = node or j.city_code
    children = j.children(code) if code not in j.grids else []
    grids = j.grids_under(code)
    zero = dict.fromkeys(COUNT_FIELDS, 0)

    def total(codes: Iterable[str]) -> dict[str, int]:
        out = dict(zero)
        for g in codes:
            for f, v in counts.get(g, zero).items():
                out[f] += v
        return out

    items = []
    for child in children:
        is_grid = child in j.grids
        place = j.grids[child] if is_grid else j.nodes[child]
        items.append(
            {
                "code": child,
                "name_zh": place.name_zh,
                "name_en": place.name_en,
                "level": j.level_of(child),
                "grids": 1 if is_grid else len(j.grids_under(child)),
                **total(j.grids_under(child)),
            }
        )
    place = j.grids[code] if code in j.grids else j.nodes[code]
    path = [
        {"code": n.code, "name_zh": n.name_zh, "name_en": n.name_en, "level": n.level}
        for n in reversed(j.ancestors(code))
    ]
    return {
        "node": {
            "code": code,
            "name_zh": place.name_zh,
            "name_en": place.name_en,
            "level": j.level_of(code),
        },
        "path": path,
        "totals": total(grids),
        "children": items,
        "grids": {g: counts[g] for g in grids if g in counts},
    }


async def grid_counts(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    rows = await conn.fetch(
        f"SELECT grid, {', '.join(COUNT_FIELDS)} FROM map_grid_counts"
    )
    return {r["grid"]: {f: int(r[f]) for f in COUNT_FIELDS} for r in rows}


def count_by(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for row in rows:
        for f, v in zip(COUNT_FIELDS, contribution(row), strict=True):
            out[f] += v
    return dict(out)


__all__ = [
    "COUNT_FIELDS",
    "MapProjection",
    "contribution",
    "grid_counts",
    "inspector_of",
    "lights",
    "rollup",
    "track",
]
