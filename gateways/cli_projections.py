"""``gridctl projections …``: list the read models and rebuild them from the event store.

A rebuild replays every stored event into fresh tables in a scratch schema while the live
projector keeps running, then swaps them in under the projection's lock (see
``projections/rebuild.py``); the result has exactly the rows the live projection would have.
Rebuild after changing a projection's code, or to recover a damaged read model.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.settings import Settings, get_settings
from gateways.cli_help import ZhGroup

app = typer.Typer(
    cls=ZhGroup,
    help="读模型 (投影): 列出, 从事件存储重建。",
    no_args_is_help=True,
)
console = Console(stderr=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL 地址 (默认 DATABASE_URL, 否则为 gridctl up 的内置服务器)",
    ),
]


def database_url(settings: Settings, given: str | None) -> str:
    if given:
        return given
    if settings.database_url:
        return settings.database_url
    port = int(os.environ.get("GRID_PG_PORT", 5433))
    return f"postgresql://postgres@127.0.0.1:{port}/griddispatch"


def _projections(name: str | None) -> list[Any]:
    from projections.read_models import all_projections

    everything = all_projections()
    if name is None:
        return everything
    chosen = [p for p in everything if p.name == name]
    if not chosen:
        names = ", ".join(p.name for p in everything)
        console.print(f"[red]未知的读模型 {name!r}[/]; 可用: {names}")
        raise typer.Exit(2)
    return chosen


@app.command("list")
def list_projections(database: DatabaseOpt = None) -> None:
    """列出各读模型: 表、行数、已应用位置及落后事件存储的事件数。"""
    settings = get_settings()
    asyncio.run(_list(settings, database_url(settings, database)))


async def _list(settings: Settings, url: str) -> None:
    import asyncpg

    from core import eventlog
    from core.db import check_schema
    from core.refdata import load_reference

    schema = check_schema(settings.db_schema)
    ref = load_reference(settings)
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        heads = {p: await eventlog.head(conn, p) for p in ref.partitions}
        has_positions = await conn.fetchval("SELECT to_regclass('projection_positions')")
        table = Table(title=f"数据库模式 {schema} 中的读模型")
        for column in ("读模型", "表", "行数", "已应用", "存储位置", "延迟"):
            table.add_column(column, justify="right" if column in ("行数", "延迟") else "left")
        for projection in _projections(None):
            rows = []
            for t in projection.tables:
                exists = await conn.fetchval("SELECT to_regclass($1)", t)
                rows.append(
                    str(await conn.fetchval(f"SELECT count(*) FROM {t}")) if exists else "—"
                )
            positions: dict[str, int] = {}
            if has_positions:
                records = await conn.fetch(
                    "SELECT partition, position FROM projection_positions WHERE projection = $1",
                    projection.name,
                )
                positions = {r["partition"]: int(r["position"]) for r in records}
            lag = sum(max(0, heads[p] - positions.get(p, 0)) for p in heads)
            table.add_row(
                projection.name,
                "\n".join(projection.tables),
                "\n".join(rows),
                "\n".join(f"{p}: {positions.get(p, 0)}" for p in heads),
                "\n".join(f"{p}: {heads[p]}" for p in heads),
                str(lag),
            )
        Console().print(table)
    finally:
        await conn.close()


@app.command("rebuild")
def rebuild_command(
    name: Annotated[
        str | None, typer.Argument(help="要重建的读模型 (默认全部)")
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """把事件存储重放到 NAME 的表 (或全部读模型), 显示进度条;
    在线投影进程不停, 重建后从新位置继续。"""
    settings = get_settings()
    asyncio.run(_rebuild(settings, database_url(settings, database), name))


async def _rebuild(settings: Settings, url: str, name: str | None) -> None:
    from core.db import check_schema, ensure_schema
    from core.eventstore import StoreRegistry
    from core.refdata import load_reference
    from projections.rebuild import rebuild

    schema = check_schema(settings.db_schema)
    await ensure_schema(url, schema)
    ref = load_reference(settings)
    stores = StoreRegistry(url, schema)
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            for projection in _projections(name):
                task = progress.add_task(f"{projection.name:10}", total=None)

                def report(done: int, total: int, task: Any = task) -> None:
                    progress.update(task, completed=done, total=max(total, done) or None)

                result = await rebuild(
                    url, schema, projection, stores, ref.partitions, progress=report
                )
                progress.update(task, completed=result.events, total=max(result.events, 1))
                rate = result.events / result.seconds if result.seconds else 0.0
                progress.console.print(
                    f"[green]{projection.name}[/]: {result.events} 个事件, 用时 "
                    f"{result.seconds:.2f} 秒 ({rate:,.0f}/秒), 位置 {result.positions}"
                )
    finally:
        await asyncio.to_thread(stores.close)
