"""What every read model is: a name, its tables, and how a batch of events changes them.

The runner (projections/runner.py) owns delivery and exactly-once bookkeeping; a projection
only says how rows change. Because ``apply`` runs inside the runner's transaction together
with the position update, a crash anywhere either keeps both or neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg

from core import codec

Envelope = dict[str, Any]

POSITIONS_DDL = """
CREATE TABLE IF NOT EXISTS projection_positions (
    projection text NOT NULL,
    partition text NOT NULL,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, partition)
);
"""


class Projection(Protocol):
    """A read model fed by event envelopes in per-partition order."""

    name: str

    @property
    def tables(self) -> Sequence[str]:
        """The tables this projection owns (dropped and recreated by a rebuild)."""
        ...

    def ddl(self) -> str:
        """CREATE statements (idempotent) for the model's tables and indexes."""
        ...

    async def apply(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        """Apply new events (already de-duplicated by position) inside the open transaction."""
        ...


def insert_rows(table: str, columns: Mapping[str, str], param: int = 1) -> str:
    """``INSERT INTO <table> (<columns>) SELECT <columns> FROM json_to_recordset($<param>::
    text::json) AS u (<column> <type>, …)``: how every read model writes a batch, its rows as
    one parameter made by :func:`json_rows` (the caller adds its ``ON CONFLICT …``).

    Why not one array per column through ``unnest`` (how every read model wrote before):
    asyncpg encodes an array element by element, checking each against ``collections.abc``
    (a tenth of the projector's CPU at saturation, py-spy), and PostgreSQL unpacks as many
    arrays as there are columns. With one JSON document per statement the six read models of
    the projector process cost it 70–89 µs per report in batches of 50 instead of 101–138,
    and 607–790 instead of 824–1,014 one report at a time; PostgreSQL parses the JSON for
    about 10–20 µs more per report in batches and less one at a time
    (``python -m benchmarks.read_models``, docs/performance.md, seventh session).
    The parameter is text, cast in SQL, so the connection's JSON codec (or its absence) does
    not matter. JSON keys are the column names; a missing key or ``null`` is NULL; a ``json``
    or ``jsonb`` column takes the value as it is (a list, an object, a string)."""
    names = ", ".join(columns)
    typed = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    return (f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM json_to_recordset(${param}::text::json) AS u ({typed})")


def as_given(value: Any) -> Any:
    """An envelope's time as the row's: its RFC 3339 text, for rows written as JSON (and for
    the rebuild's rows, whose times are parsed once when they are copied)."""
    return value


def json_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows of an :func:`insert_rows` parameter (datetimes as RFC 3339, UUIDs as text)."""
    return codec.dumps(list(rows)).decode()


#: The event that creates a case: no read model has a row of the case before it.
CREATING_EVENT = "Reported"


async def rows_of_known_cases(
    conn: asyncpg.Connection, query: str, envelopes: Sequence[Envelope]
) -> list[asyncpg.Record]:
    """``query`` (one ``$1::uuid[]`` of case ids) for the batch's cases that may have rows
    already: every case except those whose first event in the batch creates them. An intake
    storm's batches are mostly new cases, and each read model read its rows for them anyway
    — a statement per read model per batch that could only come back empty."""
    first: dict[str, str] = {}
    for env in envelopes:
        first.setdefault(env["case_id"], env["type"])
    known = [case_id for case_id, kind in first.items() if kind != CREATING_EVENT]
    return list(await conn.fetch(query, known)) if known else []
