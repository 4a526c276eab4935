"""The watcher's query (``OPEN_DEADLINES_SQL``, paged by ``open_deadlines``) takes exactly the
open deadlines the SLA policy may act on now (``aggregates.sla.may_need_decision``), all of
them page by page: neither open cases with nothing due, nor a backlog of cases that need
nothing, nor a page full of earlier deadlines hides a case behind them."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from aggregates.sla import may_need_decision
from core.db import _init_connection
from gateways.watcher import open_deadlines
from projections.queue import DDL
from tests.conftest import database_url, unique_name

NOW = datetime(2026, 6, 3, 9, tzinfo=UTC)


@pytest.fixture
async def conn() -> AsyncIterator[asyncpg.Connection]:
    schema = unique_name("watchsel")
    connection = await asyncpg.connect(database_url())
    await connection.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
    await _init_connection(connection)  # JSON columns as the app's pool reads them
    await connection.execute(DDL)
    try:
        yield connection
    finally:
        await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        await connection.close()


async def _insert(conn: asyncpg.Connection, n: int, row: dict[str, Any]) -> str:
    case_no = f"GD-SEL-{n:05d}"
    await conn.execute(
        "INSERT INTO case_queue (case_id, case_no, partition, status, category, grid, "
        "reported_at, updated_at, due_at, due_step, warning_at, warning, overdue, offers, "
        "version, last_event, last_position) VALUES ($1, $2, '520102', $3, 'BJ0101', "
        "'520102001001', $4, $4, $5, $6, $7, $8, $9, $10, 1, 'Filed', $11)",
        uuid.uuid4(), case_no, row.get("status", "filed"), NOW - timedelta(days=60),
        row["due_at"], row["due_step"], row.get("warning_at"), row["warning"], row["overdue"],
        row["offers"], n,
    )
    return case_no


async def _selected(conn: asyncpg.Connection, batch: int = 1000) -> list[str]:
    return [r["case_no"] async for rows in open_deadlines(conn, NOW, batch) for r in rows]


async def test_the_query_takes_exactly_the_rows_the_policy_may_act_on(
    conn: asyncpg.Connection,
) -> None:
    expected = set()
    # step × warned × overdue × escalation offered × deadline passed or not × yellow moment
    # passed, to come or not recorded — states the aggregate never records included.
    combos = itertools.product([None, "review", "handle"], [False, True], [False, True],
                               [False, True], [-1.0, 5.0], [-2.0, 2.0, None])
    for n, (step, warning, overdue, escalate, due_h, yellow_h) in enumerate(combos):
        row = {"due_step": step, "warning": warning, "overdue": overdue,
               "due_at": NOW + timedelta(hours=due_h, minutes=-n),
               "warning_at": None if yellow_h is None else NOW + timedelta(hours=yellow_h),
               "offers": {"system": ["escalate"]} if escalate else {"dispatcher": ["dispatch"]}}
        case_no = await _insert(conn, n, row)
        if may_need_decision(row, NOW):
            expected.add(case_no)
    # Closed cases are never taken.
    await _insert(conn, 1000, {"due_step": "handle", "warning": False, "overdue": False,
                               "due_at": NOW, "offers": {}, "status": "closed"})
    selected = await _selected(conn)
    assert set(selected) == expected
    assert 0 < len(expected) < 144


async def test_open_cases_with_nothing_due_are_not_read(conn: asyncpg.Connection) -> None:
    """Most open cases on most passes: deadline and yellow moment still to come. None of
    them is read; the one whose recorded yellow moment has come is."""
    for n in range(30):
        await _insert(conn, n, {"due_step": "handle", "warning": False, "overdue": False,
                                "due_at": NOW + timedelta(days=3, hours=n),
                                "warning_at": NOW + timedelta(days=2, hours=n), "offers": {}})
    yellow = await _insert(conn, 30, {"due_step": "handle", "warning": False, "overdue": False,
                                      "due_at": NOW + timedelta(days=1),
                                      "warning_at": NOW - timedelta(minutes=1), "offers": {}})
    assert await _selected(conn) == [yellow]


async def test_a_backlog_that_needs_nothing_does_not_hide_a_case_that_does(
    conn: asyncpg.Connection,
) -> None:
    # Three old cases at the top level: warned, overdue, no escalation offered. Before, they
    # came first (earliest deadline) and a batch of three never reached the fourth.
    for n in range(3):
        await _insert(conn, n, {"due_step": "handle", "warning": True, "overdue": True,
                                "due_at": NOW - timedelta(days=20 - n), "offers": {}})
    fresh = await _insert(conn, 3, {"due_step": "handle", "warning": False, "overdue": False,
                                    "due_at": NOW - timedelta(hours=1), "offers": {}})
    assert await _selected(conn, batch=2) == [fresh]


async def test_every_page_is_read_so_a_later_deadline_is_not_left_behind(
    conn: asyncpg.Connection,
) -> None:
    # Seven cases that may need a decision (two with the same deadline, across a page
    # boundary), read three at a time: all seven, each once, in deadline order.
    same = NOW - timedelta(hours=3)
    nos = []
    for n in range(7):
        due = same if n in (2, 3) else NOW - timedelta(hours=10 - n)
        nos.append(await _insert(conn, n, {"due_step": "handle", "warning": False,
                                           "overdue": False, "due_at": due, "offers": {}}))
    selected = await _selected(conn, batch=3)
    assert sorted(selected) == sorted(nos) and len(selected) == 7
    rows = [r async for page in open_deadlines(conn, NOW, 3) for r in page]
    assert [r["due_at"] for r in rows] == sorted(r["due_at"] for r in rows)
