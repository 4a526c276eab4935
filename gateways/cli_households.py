"""``gridctl households``: import and export the household register (xlsx / csv), verify
the households' hash chains.

Runs against the database of the environment (``DATABASE_URL`` / ``GRID_DB_SCHEMA``, as the
other ``gridctl`` commands). Imports act as ``system`` with the actor given (recorded in every
event); rows that cannot be taken are written to a rejected-rows report (csv) next to the
file, each with its row number and the reason. Exports are the full register (an operator's
tool; the API's export masks by role).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console

from core.db import create_pool
from core.refdata import load_reference
from core.settings import Settings
from gateways import household_files as files
from gateways.cli_help import ZhGroup
from gateways.cli_users import _database_url
from gateways.households import HouseholdApp, import_rows, schedules_for
from projections import households as model

app = typer.Typer(cls=ZhGroup, help="户情与六必访: 导入、导出、校验。",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _run(work: Callable[[HouseholdApp], Awaitable[T]]) -> T:
    settings = Settings()

    async def main() -> T:
        try:
            pool = await create_pool(_database_url(settings), settings.db_schema, max_size=2)
        except (OSError, asyncpg.PostgresError) as exc:
            err.print(f"[red]无法连接 PostgreSQL[/]: {exc}")
            raise typer.Exit(2) from exc
        try:
            async with pool.acquire() as conn:
                await model.setup(conn)
            ref = load_reference(settings)
            return await work(HouseholdApp(pool, ref, schedules_for(settings.city_dir)))
        finally:
            await pool.close()

    return asyncio.run(main())


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="户情登记表 (.xlsx 或 .csv)")],
    actor: Annotated[str, typer.Option(help="导入人 (记入事件)")] = "import",
    rejected: Annotated[
        Path | None, typer.Option(help="拒收行报告的输出位置 (csv)")
    ] = None,
) -> None:
    """登记表格中的住户; 同一文件再次导入不产生变化。"""
    data = path.read_bytes()

    async def work(hh: HouseholdApp) -> tuple[int, int, list[dict[str, Any]]]:
        parsed = files.parse_import(files.read_table(data, path.name), hh.ref.jurisdiction)
        made, existing, refused = await import_rows(
            hh, parsed.rows, actor=actor, role="system", channel="import",
            at=datetime.now(UTC))
        return made, existing, [*parsed.rejected, *refused]

    made, existing, bad = _run(work)
    out.print(f"新登记 {made} 户, 已存在 {existing} 户, 拒收 {len(bad)} 行")
    if bad:
        target = rejected or path.with_name(path.stem + ".rejected.csv")
        target.write_bytes(files.rejected_report(bad))
        out.print(f"拒收行: {target}")
        for item in bad[:10]:
            out.print(f"  第 {item['line']} 行: {item['reason']}")
        raise typer.Exit(1)


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="输出文件 (.xlsx 或 .csv)")],
    grid: Annotated[str | None, typer.Option(help="只导出此网格")] = None,
) -> None:
    """导出户情登记 (全部住户, 不遮盖: 运维人员留存)。"""

    async def work(hh: HouseholdApp) -> int:
        async with hh.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM household_register WHERE NOT archived AND "
                "($1::text IS NULL OR grid = $1) ORDER BY grid, address", grid)
            await model.log_read(conn, "cli", "system", "export",
                                 [r["household_id"] for r in rows], True, str(path))
        fmt = "csv" if path.suffix.lower() == ".csv" else "xlsx"
        path.write_bytes(files.write_table(
            files.EXPORT_COLUMNS, (files.export_cells({**dict(r), "details": "full"})
                                   for r in rows), fmt))
        return len(rows)

    count = _run(work)
    out.print(f"已写入 {path}: {count} 户")


@app.command()
def verify() -> None:
    """校验每户的哈希链; 有断链时列出并以退出码 1 结束。"""

    async def work(hh: HouseholdApp) -> list[tuple[str, int]]:
        from aggregates.households import verify_chain

        broken = []
        async with hh.pool.acquire() as conn:
            ids = [r["household_id"] for r in await conn.fetch(
                "SELECT DISTINCT household_id FROM household_events")]
            for hid in ids:
                at = verify_chain(await model.load_events(conn, hid))
                if at is not None:
                    broken.append((hid, at))
        return broken

    broken = _run(work)
    for hid, version in broken:
        out.print(f"[red]断链[/] {hid} 版本 {version}")
    if broken:
        raise typer.Exit(1)
    out.print("所有住户的哈希链完好")
