"""The household register on PostgreSQL without the rest of the system (issue 18): the
import with bad rows (and `gridctl households import/export/verify`), and the coverage
metric's SQL recomputed independently from the households' events.

Only PostgreSQL is needed: a schema of its own, the household tables, the application
service of the synchronous path.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from aggregates.households.coverage import coverage, deadlines
from core.db import create_pool
from core.refdata import load_reference
from gateways import household_files as files
from gateways.households import HouseholdApp, schedules_for
from projections import households as model
from tests.conftest import database_url, make_settings
from tests.unit.casekit import T0

SCHEMAS: dict[int, str] = {}
GRIDS = ["520102001001", "520102001002", "520103001001"]


@pytest.fixture
async def hh() -> AsyncIterator[HouseholdApp]:
    settings = make_settings()
    pool = await create_pool(database_url(), settings.db_schema, max_size=3)
    try:
        async with pool.acquire() as conn:
            await model.setup(conn)
            await conn.execute(  # the outcome join reads the cases' queue table
                "CREATE TABLE IF NOT EXISTS case_queue (case_no text, status text)")
        app = HouseholdApp(pool, load_reference(settings), schedules_for(settings.city_dir))
        SCHEMAS[id(app)] = settings.db_schema
        yield app
    finally:
        await pool.close()
        conn = await asyncpg.connect(database_url())
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {settings.db_schema} CASCADE")
        finally:
            await conn.close()


def _table() -> list[list[Any]]:
    header = files.IMPORT_COLUMNS
    good = ["A-1", GRIDS[0], "宝山路 1 号", "", "王秀英/户主/1941/13912345678;李明/儿子",
            "", "", "", "透析", "", "独居", "", "党员张三"]
    rows = [
        good,
        ["A-2", GRIDS[1], "宝山路 2 号", "", "", "低保", "", "", "", "", "", "", ""],
        ["A-3", "999999", "宝山路 3 号", "", "", "", "", "", "", "", "", "", ""],  # grid
        ["A-4", GRIDS[0], "", "", "", "", "", "", "", "", "", "", ""],  # no address
        ["A-5", GRIDS[0], "宝山路 5 号", "", "赵六/户主/一九五〇", "", "", "", "", "", "", "", ""],
        ["A-6", GRIDS[0], "宝山路 6 号", "", "钱七//1950/not-a-phone", "", "", "", "", "", "",
         "", ""],
        list(good),  # the same household twice
        ["", "", "", "", "", "", "", "", "", "", "", "", ""],  # empty rows are skipped
    ]
    return [header, *rows]


async def test_import_with_bad_rows_and_the_cli(
    hh: HouseholdApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = _table()
    parsed = files.parse_import(table, hh.ref.jurisdiction)
    assert [r.line for r in parsed.rows] == [2, 3]
    reasons = {r["line"]: r["reason"] for r in parsed.rejected}
    assert set(reasons) == {4, 5, 6, 7, 8}
    assert "未知网格 '999999'" in reasons[4] and reasons[5] == "地址: 不能为空"
    assert "出生年须为数字" in reasons[6] and reasons[7] == "成员 1 电话: 格式不对"
    assert reasons[8] == "与第 2 行是同一户"
    first = parsed.rows[0].args
    assert [f["flag"] for f in first["flags"]] == ["serious_illness", "elderly_alone"]
    assert first["members"][1] == {"name": "李明", "relation": "儿子", "birth_year": None,
                                   "phone": None, "note": None}

    # Through the CLI, as an xlsx file: 2 registered, a rejected-rows report, exit 1.
    source = tmp_path / "register.xlsx"
    source.write_bytes(files.write_table(table[0], table[1:], "xlsx"))
    monkeypatch.setenv("DATABASE_URL", database_url())
    monkeypatch.setenv("GRID_DB_SCHEMA", SCHEMAS[id(hh)])
    from gateways.cli import app as cli

    def run(*args: str) -> Any:  # the CLI runs its own event loop: in a thread
        return asyncio.to_thread(CliRunner().invoke, cli, ["households", *args])

    result = await run("import", str(source))
    assert result.exit_code == 1, result.output
    assert "新登记 2 户, 已存在 0 户, 拒收 5 行" in result.output
    report = (tmp_path / "register.rejected.csv").read_text(encoding="utf-8-sig")
    assert report.splitlines()[0].startswith("行号,原因,外部编号,网格")
    assert len(report.splitlines()) == 6 and "未知网格" in report
    again = await run("import", str(source))
    assert "新登记 0 户, 已存在 2 户, 拒收 5 行" in again.output
    out = tmp_path / "out.csv"
    assert (await run("export", str(out))).exit_code == 0
    exported = out.read_text(encoding="utf-8-sig")
    assert "王秀英/户主/1941/13912345678;李明/儿子" in exported and "透析" in exported
    assert (await run("verify")).exit_code == 0
    # Tampering with a stored event is found.
    async with hh.pool.acquire() as conn:
        await conn.execute("UPDATE household_events SET data = jsonb_set(data, '{address}', "
                           "'\"改过\"') WHERE version = 1 AND data->>'address' = '宝山路 2 号'")
    broken = await run("verify")
    assert broken.exit_code == 1 and "断链" in broken.output


async def test_coverage_sql_equals_the_definition(hh: HouseholdApp) -> None:
    rng = random.Random(1818)
    flags = ["elderly_alone", "hardship", "dispute"]
    ids: list[str] = []
    for n in range(24):
        grid = GRIDS[n % len(GRIDS)]
        at = T0 + timedelta(hours=rng.randint(0, 48))
        chosen = rng.sample(flags, rng.randint(0, 2))
        result = await hh.register(f"cov-{n}", {
            "grid": grid, "address": f"路 {n} 号",
            "flags": [{"flag": f, "reason": "r"} for f in chosen]},
            actor="t", role="system", channel="import", at=at)
        hid = result.household.id
        ids.append(hid)
        for k in range(rng.randint(0, 6)):
            at += timedelta(hours=rng.choice([20, 60, 100, 170, 300, 500]))
            action = rng.choice(["record_visit", "record_visit", "record_visit", "set_flag",
                                 "lift_flag"])
            state = result.household.state
            args: dict[str, Any] = {"findings": "f"}
            if action == "set_flag":
                missing = [f for f in flags if f not in state.flags]
                if not missing:
                    continue
                args = {"flag": rng.choice(missing), "reason": "r"}
            elif action == "lift_flag":
                if not state.flags:
                    continue
                args = {"flag": rng.choice(sorted(state.flags)), "reason": "r"}
            result = await hh.run(hid, action, args, actor="t",
                                  role="inspector" if action == "record_visit" else "system",
                                  channel="t", at=at, command_id=f"cov-{n}-{k}")
    async with hh.pool.acquire() as conn:
        histories = {hid: await model.load_events(conn, hid) for hid in ids}
        for days in (10, 30, 90):
            now = T0 + timedelta(days=days)
            for start in (T0, T0 + timedelta(days=days // 2)):
                sql = await model.coverage(conn, "grid", "TRUE", [], start, now, now)
                expected: dict[str, tuple[int, int]] = {}
                for events in histories.values():
                    grid = events[0].data["grid"]
                    on_time, due = coverage(deadlines(events), start, now, now)
                    old = expected.get(grid, (0, 0))
                    expected[grid] = (old[0] + on_time, old[1] + due)
                assert sql == {g: v for g, v in expected.items() if v[1]}, (days, start)
    assert any(v[1] for v in expected.values())
