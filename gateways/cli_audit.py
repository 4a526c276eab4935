"""``gridctl audit …`` and ``gridctl replay --check``: the auditor's terminal tools.

* ``gridctl audit case NO`` — the whole history of a case from the event store (who, role,
  channel, when, why, fields changed), its integrity; ``--at`` / ``--version`` for the state at
  a moment, ``--diff A B`` for what changed between two versions, ``--json`` for machines;
* ``gridctl audit verify`` — recompute both hash chains over the whole store with a progress
  bar; names the first altered / removed / inserted / reordered event; exit 1 if any;
* ``gridctl audit export`` — JSONL (verifiable with ``tools/verify_export.py``) or CSV, for a
  case, a grid / department / actor and period, or everything;
* ``gridctl audit activity`` — a grid's, department's or person's events over a period;
* ``gridctl audit heads`` / ``gridctl audit reads`` — chain heads; the auditors' read log;
* ``gridctl replay --check`` — rebuild every read model in a scratch schema and compare.

Connection: ``--database-url`` or DATABASE_URL (else the embedded server of ``gridctl up``),
schema GRID_DB_SCHEMA. Reads done here are written to ``audit_reads`` (method ``CLI``) with the
operating system user (or ``--as``), like the API's.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.settings import Settings, get_settings
from gateways.cli_help import ZhGroup

app = typer.Typer(
    cls=ZhGroup,
    help="审计: 案件历史、完整性校验、导出。",
    no_args_is_help=True,
)
console = Console(stderr=True)
out = Console()

DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="PostgreSQL 地址 (默认 DATABASE_URL, 否则为 "
                 "gridctl up 的内置服务器)"),
]
AsOpt = Annotated[str | None, typer.Option("--as", help="查阅人 (默认为操作系统用户)")]


def _url(settings: Settings, given: str | None) -> str:
    from gateways.cli_projections import database_url

    return database_url(settings, given)


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{name}: 不是 ISO 8601 时间 ({value!r})") from exc
    if when.tzinfo is None:
        raise typer.BadParameter(f"{name}: 请带时区, 如 2026-11-23T10:00+08:00")
    return when


def record_read(url: str, schema: str, who: str | None, what: str, case_no: str | None = None
                ) -> None:
    """Write a CLI read to ``audit_reads`` (the identity module's table) when it exists."""
    from projections.audit.rows import connect, table_exists

    try:
        with connect(url) as conn:
            if not table_exists(conn, schema, "audit_reads"):
                return
            conn.execute(
                f"INSERT INTO {schema}.audit_reads (user_id, role, method, path, query, case_no) "
                "VALUES (%s, 'auditor', 'CLI', %s, NULL, %s)",
                (who or f"os:{getpass.getuser()}", what[:2000], case_no),
            )
            conn.commit()
    except Exception as exc:  # the read itself must not fail because of the log
        console.print(f"[yellow]未能记录本次查阅: {exc}[/]")


def _partitions(settings: Settings) -> list[str]:
    try:
        from core.refdata import load_reference

        return load_reference(settings).partitions
    except Exception:
        return []


# --------------------------------------------------------------------------- case


@app.command("case")
def case_command(
    case_no: Annotated[str, typer.Argument(help="案件编号, 如 GD-7K3Q-M9XA-2BCD")],
    at: Annotated[str | None, typer.Option(help="此时刻的状态 (ISO 8601, 带时区)")] = None,
    version: Annotated[int | None, typer.Option(help="此版本的状态")] = None,
    diff: Annotated[tuple[int, int] | None, typer.Option(help="版本 A 与 B 之间的变化")
                    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="机器可读的 JSON 输出")] = False,
    database: DatabaseOpt = None,
    who: AsOpt = None,
) -> None:
    """案件的完整经过: 谁在何时、因何、通过什么渠道做了什么 —— 并校验其完整性。"""
    from projections.audit import history as hist
    from projections.audit.rows import connect
    from projections.audit.verify import verify_case

    settings = get_settings()
    url, schema = _url(settings, database), settings.db_schema
    record_read(url, schema, who, f"gridctl audit case {case_no}", case_no)
    try:
        with connect(url) as conn:
            conn.read_only = True
            h = hist.case_history(conn, schema, case_no, _partitions(settings))
            integrity = verify_case(conn, schema, h.ref.partition, h.ref.case_id)
    except hist.NotFound as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    try:
        if diff is not None:
            result: dict[str, Any] = h.diff(*diff)
        elif at is not None or version is not None:
            result = h.state_at(at=_time(at, "--at"), version=version)
        else:
            result = {**h.as_dict(), "integrity": integrity}
    except hist.NotFound as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if as_json:
        out.print_json(json.dumps(result, ensure_ascii=False, default=str))
        return
    if diff is not None or at is not None or version is not None:
        _print_state_or_diff(result)
        return
    _print_history(h, integrity)


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_history(h: Any, integrity: dict[str, Any]) -> None:
    state = h.states[-1]
    out.print(f"[bold]{h.ref.case_no}[/]  {state.get('status_zh')} ({state.get('status')})  "
              f"类别 {state.get('category')}  网格 {state.get('grid')}  "
              f"分区 {h.ref.partition}  id {h.ref.case_id}")
    table = Table(show_lines=False, header_style="bold")
    for col in ("版本", "位置", "时间 (UTC)", "事件", "操作人", "角色", "渠道", "原因",
                "状态", "变更字段"):
        table.add_column(col, overflow="fold")
    for e in h.entries():
        changes = ", ".join(
            f"{k}: {_short(c['from'], 20)} → {_short(c['to'], 24)}"
            for k, c in e["changes"].items() if k not in ("status_zh",)
        )
        table.add_row(
            str(e["version"]), str(e["position"]), e["at"].replace("T", " ")[:19], e["type"],
            str(e["actor"]), str(e["role"]), str(e["channel"]), _short(e["reason"] or "", 30),
            f"{e['from_status'] or '—'} → {e['to_status']}", changes,
        )
    out.print(table)
    if integrity["ok"]:
        out.print(f"[green]✓ 完整性校验通过[/]: {integrity['events']} 个事件, "
                  f"{integrity['sealed']} 个已封存于日志链; 最后哈希 "
                  f"{integrity['last_hash']}")
    else:
        first = integrity["first_problem"]
        out.print(f"[red]✗ 完整性校验失败[/]: {first['kind']} 位置 "
                  f"{first['position']} 版本 {first['version']}: {first['detail']}")


def _print_state_or_diff(result: dict[str, Any]) -> None:
    if "changes" in result:
        table = Table(title=f"{result['case_no']} v{result['from_version']} → "
                      f"v{result['to_version']}")
        for col in ("字段", "之前", "之后"):
            table.add_column(col, overflow="fold")
        for k, c in result["changes"].items():
            table.add_row(k, _short(c["from"], 50), _short(c["to"], 50))
        out.print(table)
        return
    table = Table(title=f"{result['case_no']} 截至 {result['as_of']} (版本 "
                  f"{result['version']}, {result['event']['type']} 之后)")
    table.add_column("字段")
    table.add_column("值", overflow="fold")
    for k, v in result["state"].items():
        table.add_row(k, _short(v, 90))
    out.print(table)


# --------------------------------------------------------------------------- verify


@app.command("verify")
def verify_command(
    partition: Annotated[list[str] | None, typer.Option(help="只校验这些分区")] = None,
    jobs: Annotated[int, typer.Option(help="并行校验的分区数 (进程数; 0 为自动)")] = 0,
    expect_head: Annotated[list[str] | None, typer.Option(
        help="先前记下的 分区:位置:链值; 必须仍在日志中, 可重复")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="机器可读的 JSON 输出")] = False,
    database: DatabaseOpt = None,
    who: AsOpt = None,
) -> None:
    """在整个事件存储上重新计算各案件的哈希链和日志链; 指出第一个被篡改、删除、插入或
    调换顺序的事件。有问题时退出码 1。"""
    import os

    from projections.audit.rows import connect
    from projections.audit.verify import expected_heads_missing, partitions_of, verify_store

    settings = get_settings()
    url, schema = _url(settings, database), settings.db_schema
    record_read(url, schema, who, "gridctl audit verify")
    parts = list(partition) if partition else partitions_of(url, schema)
    workers = jobs or min(len(parts), os.cpu_count() or 1) or 1
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=as_json,
    ) as bar:
        tasks: dict[str, TaskID] = {
            p: bar.add_task(f"分区 {p}", total=None, rate="") for p in parts
        }
        started = datetime.now()

        def progress(p: str, done: int, total: int) -> None:
            secs = max((datetime.now() - started).total_seconds(), 1e-6)
            bar.update(tasks[p], completed=done, total=max(total, done),
                       rate=f"{done / secs:,.0f} 事件/秒")

        report = verify_store(url, schema, parts, progress, jobs=workers)
    try:
        with connect(url) as conn:
            failures = expected_heads_missing(conn, schema, expect_head or [])
    except ValueError as exc:
        raise typer.BadParameter(f"--expect-head {exc}") from exc
    if as_json:
        data = report.as_dict()
        data["expected_heads"] = failures or "ok"
        out.print_json(json.dumps(data, ensure_ascii=False))
    else:
        table = Table(title=f"数据库模式 {schema} 的完整性")
        for col in ("分区", "事件", "已封存", "未封存", "链头 (位置:链值)", "问题"):
            table.add_column(col)
        for p in report.partitions:
            head = f"{p.head.position}:{p.head.chain}" if p.head else "—"
            table.add_row(p.partition, f"{p.events:,}", f"{p.sealed:,}", f"{p.unsealed:,}",
                          head, "[green]0[/]" if p.ok else f"[red]{p.problem_count}[/]")
        out.print(table)
        out.print(f"{report.events:,} 个事件, 用时 {report.seconds:.1f} 秒 "
                  f"({report.rate:,.0f} 事件/秒, {workers} 个进程)")
        first = report.first
        if first is None and not failures:
            out.print("[green]✓ 正常[/]: 每个事件与其哈希一致, 各案件哈希链和日志链完好")
        if first is not None:
            out.print(f"[red]✗ 第一个问题[/]: {first.describe()}")
            others = [x for p in report.partitions for x in p.problems if x is not first]
            for problem in others[:9]:
                out.print(f"  其后: {problem.describe()}")
        for text in failures:
            out.print(f"[red]✗ {text}[/]")
    if not report.ok or failures:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- export


@app.command("export")
def export_command(
    case: Annotated[str | None, typer.Option("--case", help="一个案件编号")] = None,
    grid: Annotated[str | None, typer.Option(help="位于此网格的案件")] = None,
    department: Annotated[str | None, typer.Option(help="派遣给此部门期间的事件")] = None,
    actor: Annotated[str | None, typer.Option(help="此用户做的事件")] = None,
    since: Annotated[str | None, typer.Option(help="起始时间 (ISO 8601, 带时区)")] = None,
    until: Annotated[str | None, typer.Option(help="截止时间, 不含 (ISO 8601, 带时区)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="格式: jsonl | csv")] = "jsonl",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="输出文件 (默认标准输出)")
                      ] = None,
    database: DatabaseOpt = None,
    who: AsOpt = None,
) -> None:
    """流式导出; 不加筛选即导出全部。JSONL 导出可在任何地方用
    python3 tools/verify_export.py FILE.jsonl 校验。"""
    from projections.audit.export import ExportScope, csv_rows, export_records, jsonl
    from projections.audit.history import NotFound

    if fmt not in ("jsonl", "csv"):
        raise typer.BadParameter("--format 只能是 jsonl 或 csv")
    settings = get_settings()
    url, schema = _url(settings, database), settings.db_schema
    scope = ExportScope(case_no=case, grid=grid, department=department, actor=actor,
                        since=_time(since, "--since"), until=_time(until, "--until"))
    try:
        scope.validate()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    record_read(url, schema, who, f"gridctl audit export {scope.describe()}", case)
    by = who or f"os:{getpass.getuser()}"
    records = export_records(url, schema, scope, exported_by=by)
    count = 0
    try:
        if fmt == "jsonl":
            sink = output.open("wb") if output else sys.stdout.buffer
            try:
                for line in jsonl(records):
                    sink.write(line)
                    count += 1
            finally:
                if output:
                    sink.close()
        else:
            text = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
            try:
                for row in csv_rows(records):
                    text.write(row)
                    count += 1
            finally:
                if output:
                    text.close()
    except NotFound as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if output:
        console.print(f"已写入 {output} ({count} 行)")


# --------------------------------------------------------------------------- activity etc.


@app.command("activity")
def activity_command(
    grid: Annotated[str | None, typer.Option(help="网格代码")] = None,
    department: Annotated[str | None, typer.Option(help="部门代码")] = None,
    actor: Annotated[str | None, typer.Option(help="用户 ID, 如某网格员")] = None,
    since: Annotated[str | None, typer.Option(help="起始时间 (ISO 8601, 带时区)")] = None,
    until: Annotated[str | None, typer.Option(help="截止时间 (ISO 8601, 带时区)")] = None,
    limit: Annotated[int, typer.Option(help="最多事件数")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="机器可读的 JSON 输出")] = False,
    database: DatabaseOpt = None,
    who: AsOpt = None,
) -> None:
    """某网格、部门或人员在一段时间内的事件 (取自事件存储)。"""
    from projections.audit.history import activity
    from projections.audit.rows import connect, store_partitions

    if sum(x is not None for x in (grid, department, actor)) != 1:
        raise typer.BadParameter("--grid、--department、--actor 三者须恰好给出一个")
    settings = get_settings()
    url, schema = _url(settings, database), settings.db_schema
    record_read(url, schema, who, f"gridctl audit activity grid={grid} department={department} "
                f"actor={actor} since={since} until={until}")
    with connect(url) as conn:
        conn.read_only = True
        result = activity(conn, schema, store_partitions(conn, schema), grid=grid,
                          department=department, actor=actor, since=_time(since, "--since"),
                          until=_time(until, "--until"), limit=limit)
    if as_json:
        out.print_json(json.dumps(result, ensure_ascii=False, default=str))
        return
    table = Table(title=f"{result['cases']} 个案件的 {result['count']} 个事件"
                  + (" (已截断)" if result["truncated"] else ""))
    for col in ("时间 (UTC)", "案件", "版本", "事件", "操作人", "角色", "渠道", "原因"):
        table.add_column(col, overflow="fold")
    for e in result["events"]:
        table.add_row(e["at"].replace("T", " ")[:19], e["case_no"], str(e["version"]), e["type"],
                      str(e["actor"]), str(e["role"]), str(e["channel"]),
                      _short(e["reason"] or "", 30))
    out.print(table)


@app.command("heads")
def heads_command(database: DatabaseOpt = None) -> None:
    """各分区日志链已封存的链头 (位置、链值): 记下 (或公布) 它们, 以后用
    verify --expect-head 发现改写。"""
    from projections.audit.rows import connect, table_exists
    from projections.audit.verify import sealed_heads

    settings = get_settings()
    url, schema = _url(settings, database), settings.db_schema
    with connect(url) as conn:
        if not table_exists(conn, schema, "log_chain"):
            console.print("还没有 log_chain 表 (由 relay 创建)")
            return
        heads = sealed_heads(conn, schema)
    for h in heads:
        if h["sealed"]:
            s = h["sealed"]
            out.print(f"{h['partition']}:{s['position']}:{s['chain']}  (封存于 {s['sealed_at']}, "
                      f"{h['unsealed']} 个尚未封存)")


@app.command("reads")
def reads_command(
    case_no: Annotated[str | None, typer.Option("--case", help="只看此案件")] = None,
    limit: Annotated[int, typer.Option(help="最多条数")] = 50,
    database: DatabaseOpt = None,
) -> None:
    """查阅日志: 哪位审计人员何时查看了什么 (API 与 CLI)。"""
    from projections.audit.rows import connect, table_exists

    settings = get_settings()
    url, schema = _url(settings, database), settings.db_schema
    with connect(url) as conn:
        if not table_exists(conn, schema, "audit_reads"):
            console.print("还没有 audit_reads 表")
            return
        where, params = ("WHERE case_no = %s", (case_no, limit)) if case_no else ("", (limit,))
        rows = conn.execute(
            f"SELECT at, user_id, role, method, path, query, case_no FROM {schema}.audit_reads "
            f"{where} ORDER BY at DESC, id DESC LIMIT %s",
            params,
        ).fetchall()
    table = Table(title="审计查阅记录")
    for col in ("时间", "用户", "角色", "方式", "内容", "案件"):
        table.add_column(col, overflow="fold")
    for at, user, role, method, path, query, case in rows:
        table.add_row(at.isoformat(), user, role, method, path + (f"?{query}" if query else ""),
                      case or "")
    out.print(table)


# --------------------------------------------------------------------------- replay --check


def replay(
    check: Annotated[bool, typer.Option("--check", help="只比较, 不改动 (必需)")
                     ] = False,
    projection: Annotated[str | None, typer.Option(help="只检查此读模型")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="机器可读的 JSON 输出")] = False,
    database: DatabaseOpt = None,
) -> None:
    """把所有读模型从事件存储重建到临时模式, 报告与在线读模型的差异。有差异时退出码 1。"""
    if not check:
        console.print("请用 `gridctl replay --check` (要替换读模型: "
                      "`gridctl projections rebuild`)")
        raise typer.Exit(2)
    settings = get_settings()
    results = asyncio.run(_replay_check(settings, _url(settings, database), projection, as_json))
    if any(not r.ok for r in results):
        raise typer.Exit(1)


async def _replay_check(
    settings: Settings, url: str, name: str | None, as_json: bool
) -> list[Any]:
    from core.eventstore import StoreRegistry
    from projections.audit.replay import check_all
    from projections.audit.rows import connect, store_partitions
    from projections.read_models import all_projections

    schema = settings.db_schema
    projections = [p for p in all_projections() if name is None or p.name == name]
    if not projections:
        console.print(f"[red]未知的读模型 {name!r}[/]")
        raise typer.Exit(2)
    with connect(url) as conn:
        partitions = store_partitions(conn, schema)
    stores = StoreRegistry(url, schema)
    try:
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=as_json,
        ) as bar:
            tasks = {p.name: bar.add_task(f"重建 {p.name}", total=None) for p in projections}

            def progress(p: str, done: int, total: int) -> None:
                bar.update(tasks[p], completed=done, total=max(total, done))

            results = await check_all(url, schema, stores, partitions, projections, progress)
    finally:
        await asyncio.to_thread(stores.close)
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in results], ensure_ascii=False,
                                  default=str))
        return results
    table = Table(title=f"数据库模式 {schema} 的读模型与事件存储重建结果对比")
    for col in ("读模型", "重放事件", "差异", "在线延迟"):
        table.add_column(col)
    for r in results:
        lag = ", ".join(f"{p}: {n}" for p, n in r.lag.items()) or "0"
        table.add_row(r.projection, f"{r.events:,}",
                      "[green]0[/]" if r.ok else f"[red]{len(r.differences)}[/]", lag)
    out.print(table)
    for r in results:
        for d in r.differences[:10]:
            cols = ", ".join(f"{k}: live={_short(v['live'], 30)} rebuilt={_short(v['rebuilt'], 30)}"
                             for k, v in (d.get("columns") or {}).items())
            out.print(f"[red]✗[/] {r.projection}.{d['table']} {d['side']} 键 {d['key']} {cols}")
    if all(r.ok for r in results):
        out.print("[green]✓ 每个读模型都与事件存储重建的结果一致[/]")
    return results
