"""Finding cases for an auditor: the queue read model is the index (case number or its start,
reporter name or phone, grid, day reported); the history itself always comes from the event
store (:mod:`.history`, which also finds a full case number the index does not know yet)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import asyncpg

CST = timezone(timedelta(hours=8))  # 北京时间: "date" filters are local days
COLUMNS = (
    "case_no, status, category, grid, district, department, reporter_name, reporter_phone, "
    "reported_at, updated_at, version, description"
)


async def find_in_queue(
    conn: asyncpg.Connection,
    *,
    q: str | None = None,
    reporter: str | None = None,
    grid: str | None = None,
    day: date | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Queue rows matching every filter given, newest report first."""
    where: list[str] = []
    params: list[Any] = []
    if q:
        params.append(q.strip().upper() + "%")
        where.append(f"upper(case_no) LIKE ${len(params)}")
    if reporter:
        params.append("%" + reporter.strip().replace("%", r"\%").replace("_", r"\_") + "%")
        where.append(f"(reporter_name ILIKE ${len(params)} OR reporter_phone ILIKE "
                     f"${len(params)})")
    if grid:
        params.append(grid)
        where.append(f"grid = ${len(params)}")
    if day:
        start = datetime(day.year, day.month, day.day, tzinfo=CST)
        params.extend([start, start + timedelta(days=1)])
        where.append(f"reported_at >= ${len(params) - 1} AND reported_at < ${len(params)}")
    params.append(limit)
    records = await conn.fetch(
        f"SELECT {COLUMNS} FROM case_queue "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY reported_at DESC, case_no LIMIT ${len(params)}",
        *params,
    )
    return [dict(r) for r in records]
