"""The household read models: the register, visit deadlines (coverage), the read log.

Written in the same transaction as the household's events (``gateways/households.py``, the
synchronous path; docs/households.md says why), so they never lag. Everything here is derived
from recorded facts: the state after the events (``aggregates.households``) and each event's
visit deadline. Pure row builders first, then the SQL.

Tables:

* ``household_events`` — the truth: one row per event, hash-chained per household;
* ``household_register`` — one row per household (what the register, the worklist, the
  detail page and exports show, before masking: ``gateways/http/household_access.py``);
* ``household_deadlines`` — every visit deadline with how it ended (coverage,
  ``aggregates/households/coverage.py`` defines it);
* ``household_cases`` — case number → household (a need raised on a visit);
* ``household_reads`` — who read which household's details, when, with what shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from aggregates.households import Household, HouseholdEvent
from aggregates.households.coverage import deadlines
from aggregates.households.schedule import warning_at
from core.calendar import WorkCalendar
from core.visits import VisitSchedules
from core.vocabulary import SENSITIVE_CARE_FLAGS

DDL = """
CREATE TABLE IF NOT EXISTS household_events (
    household_id text NOT NULL,
    version integer NOT NULL,
    type text NOT NULL,
    at timestamptz NOT NULL,
    data jsonb NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    position bigserial UNIQUE,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (household_id, version)
);
CREATE TABLE IF NOT EXISTS household_register (
    household_id text PRIMARY KEY,
    household_no text NOT NULL UNIQUE,
    grid text NOT NULL,
    community text NOT NULL,
    district text NOT NULL,
    address text NOT NULL,
    address_code text,
    members jsonb NOT NULL DEFAULT '[]',
    flags jsonb NOT NULL DEFAULT '{}',
    flag_names text[] NOT NULL DEFAULT '{}',
    sensitive boolean NOT NULL DEFAULT false,
    flag_history jsonb NOT NULL DEFAULT '[]',
    inspector text,
    party_member text,
    registered_at timestamptz NOT NULL,
    archived boolean NOT NULL DEFAULT false,
    visits integer NOT NULL DEFAULT 0,
    recent_visits jsonb NOT NULL DEFAULT '[]',
    last_visit_at timestamptz,
    due_at timestamptz,
    due_started_at timestamptz,
    due_flag text,
    warning_at timestamptz,
    cases jsonb NOT NULL DEFAULT '[]',
    version integer NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS household_register_grid_idx ON household_register (grid);
CREATE INDEX IF NOT EXISTS household_register_due_idx ON household_register (inspector, due_at)
    WHERE due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS household_deadlines (
    household_id text NOT NULL,
    seq integer NOT NULL,
    grid text NOT NULL,
    community text NOT NULL,
    district text NOT NULL,
    inspector text,
    started_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    met_at timestamptz,
    replaced_at timestamptz,
    PRIMARY KEY (household_id, seq)
);
CREATE TABLE IF NOT EXISTS household_cases (
    case_no text PRIMARY KEY,
    household_id text NOT NULL
);
CREATE TABLE IF NOT EXISTS household_reads (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    user_id text NOT NULL,
    role text NOT NULL,
    what text NOT NULL,
    household_ids text[] NOT NULL,
    sensitive_shown boolean NOT NULL,
    path text
);
CREATE INDEX IF NOT EXISTS household_reads_at_idx ON household_reads (at);
"""

#: How many of the latest visits the register row keeps (the full list is in the events).
RECENT_VISITS = 10


async def setup(conn: asyncpg.Connection) -> None:
    await conn.execute(DDL)


# --------------------------------------------------------------------------- pure rows


def register_row(
    household: Household, schedules: VisitSchedules, calendar: WorkCalendar
) -> dict[str, Any]:
    """The register row of a household after its events."""
    s = household.state
    warn = None
    if s.due is not None and s.due_started_at is not None and s.due_flag is not None:
        warn = warning_at(s.due, s.due_started_at, s.due_flag, schedules, calendar)
    plain = s.to_json()
    return {
        "household_id": s.household_id,
        "household_no": s.household_no,
        "grid": s.grid,
        "community": s.community,
        "district": s.district,
        "address": s.address,
        "address_code": s.address_code,
        "members": plain["members"],
        "flags": plain["flags"],
        "flag_names": sorted(s.flags),
        "sensitive": bool(set(s.flags) & SENSITIVE_CARE_FLAGS),
        "flag_history": plain["flag_history"],
        "inspector": s.inspector,
        "party_member": s.party_member,
        "registered_at": s.registered_at,
        "archived": s.archived,
        "visits": len(s.visits),
        "recent_visits": plain["visits"][-RECENT_VISITS:][::-1],
        "last_visit_at": s.last_visit_at,
        "due_at": s.due,
        "due_started_at": s.due_started_at,
        "due_flag": s.due_flag,
        "warning_at": warn,
        "cases": plain["cases"],
        "version": s.version,
        "updated_at": household.modified_on,
    }


def deadline_rows(state_row: dict[str, Any], events: Sequence[HouseholdEvent]
                  ) -> list[tuple[Any, ...]]:
    """``household_deadlines`` rows of one household (its whole history: households have
    few events, and a rewrite keeps the rows exactly what :func:`deadlines` says)."""
    return [
        (state_row["household_id"], i, state_row["grid"], state_row["community"],
         state_row["district"], state_row["inspector"], d.started_at, d.due, d.met_at,
         d.replaced_at)
        for i, d in enumerate(deadlines(events))
    ]


# --------------------------------------------------------------------------- writes

_COLUMNS = (
    "household_id", "household_no", "grid", "community", "district", "address",
    "address_code", "members", "flags", "flag_names", "sensitive", "flag_history", "inspector",
    "party_member", "registered_at", "archived", "visits", "recent_visits", "last_visit_at",
    "due_at", "due_started_at", "due_flag", "warning_at", "cases", "version", "updated_at",
)
_UPSERT = (
    f"INSERT INTO household_register ({', '.join(_COLUMNS)}) VALUES "
    f"({', '.join(f'${i + 1}' for i in range(len(_COLUMNS)))}) "
    "ON CONFLICT (household_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])
)


async def load_events(conn: asyncpg.Connection, household_id: str) -> list[HouseholdEvent]:
    rows = await conn.fetch(
        "SELECT household_id, version, type, at, data, prev_hash, hash FROM household_events "
        "WHERE household_id = $1 ORDER BY version", household_id,
    )
    return [HouseholdEvent(**dict(r)) for r in rows]


async def append(
    conn: asyncpg.Connection,
    household: Household,
    events: Sequence[HouseholdEvent],
    history: Sequence[HouseholdEvent],
    schedules: VisitSchedules,
    calendar: WorkCalendar,
) -> None:
    """Store new events and update the read models (in the caller's transaction)."""
    await conn.executemany(
        "INSERT INTO household_events (household_id, version, type, at, data, prev_hash, hash) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(e.household_id, e.version, e.type, e.at, e.data, e.prev_hash, e.hash) for e in events],
    )
    row = register_row(household, schedules, calendar)
    await conn.execute(_UPSERT, *(row[c] for c in _COLUMNS))
    await conn.execute("DELETE FROM household_deadlines WHERE household_id = $1",
                       row["household_id"])
    rows = deadline_rows(row, [*history, *events])
    if rows:
        await conn.executemany(
            "INSERT INTO household_deadlines (household_id, seq, grid, community, district, "
            "inspector, started_at, due_at, met_at, replaced_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", rows,
        )
    links = [(c["case_no"], row["household_id"]) for c in row["cases"]]
    if links:
        await conn.executemany(
            "INSERT INTO household_cases (case_no, household_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING", links,
        )


async def log_read(
    conn: asyncpg.Connection, user_id: str, role: str, what: str, household_ids: list[str],
    sensitive_shown: bool, path: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO household_reads (user_id, role, what, household_ids, sensitive_shown, "
        "path) VALUES ($1, $2, $3, $4, $5, $6)",
        user_id, role, what, household_ids, sensitive_shown, path,
    )


# --------------------------------------------------------------------------- queries

#: Coverage as SQL over ``household_deadlines``: the same rule as
#: ``aggregates.households.coverage`` (a deadline replaced before it was due never counts;
#: one met on time ends at its visit; every other ends at its due moment).
_ENDS = (
    "CASE WHEN met_at IS NOT NULL AND met_at <= due_at THEN met_at "
    "WHEN met_at IS NULL AND replaced_at IS NOT NULL AND replaced_at < due_at THEN NULL "
    "ELSE due_at END"
)

UNITS = {"grid": "grid", "community": "community", "district": "district",
         "inspector": "inspector"}


async def coverage(
    conn: asyncpg.Connection, by: str, where: str, params: list[Any],
    start: datetime, end: datetime, now: datetime,
) -> dict[str, tuple[int, int]]:
    """{unit: (on time, due)} for deadlines ending in [start, end) and by ``now``;
    ``where`` limits rows (the caller's jurisdiction, over grid/community/district)."""
    col = UNITS[by]
    n = len(params)
    rows = await conn.fetch(
        f"SELECT {col} AS unit, count(*) FILTER (WHERE met_at IS NOT NULL AND met_at <= due_at)"
        f" AS on_time, count(*) AS due FROM (SELECT *, {_ENDS} AS ends_at "
        f"FROM household_deadlines WHERE {where}) d "
        f"WHERE ends_at >= ${n + 1} AND ends_at < ${n + 2} AND ends_at <= ${n + 3} "
        f"GROUP BY {col}",
        *params, start, end, now,
    )
    return {r["unit"]: (r["on_time"], r["due"]) for r in rows}


async def unit_counts(
    conn: asyncpg.Connection, by: str, where: str, params: list[Any], now: datetime
) -> list[dict[str, Any]]:
    """Per unit: households, flagged, overdue visits (red), yellow, and households per flag."""
    col = UNITS[by]
    n = len(params)
    rows = await conn.fetch(
        f"SELECT {col} AS unit, count(*) AS households, "
        "count(*) FILTER (WHERE cardinality(flag_names) > 0) AS flagged, "
        f"count(*) FILTER (WHERE due_at <= ${n + 1}) AS overdue, "
        f"count(*) FILTER (WHERE due_at > ${n + 1} AND warning_at <= ${n + 1}) AS warning "
        f"FROM household_register WHERE NOT archived AND {where} GROUP BY {col} ORDER BY 1",
        *params, now,
    )
    flags = await conn.fetch(
        f"SELECT {col} AS unit, flag, count(*) AS n FROM household_register, "
        f"unnest(flag_names) AS flag WHERE NOT archived AND {where} GROUP BY {col}, flag",
        *params,
    )
    per_flag: dict[Any, dict[str, int]] = {}
    for f in flags:
        per_flag.setdefault(f["unit"], {})[f["flag"]] = f["n"]
    return [
        {"unit": r["unit"], "households": r["households"], "flagged": r["flagged"],
         "overdue": r["overdue"], "warning": r["warning"], "per_flag": per_flag.get(r["unit"], {})}
        for r in rows
    ]
