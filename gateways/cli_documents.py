"""``gridctl documents``: the leadership's documents from a terminal (the same files as
``GET /v1/documents/…``).

    gridctl documents case-file GD-XXXX-XXXX-XXXX            # 案卷 PDF → case-file-<no>.pdf
    gridctl documents supervision GD-XXXX-XXXX-XXXX          # 督办单 PDF
    gridctl documents evaluation --month 2026-11             # 综合评价 Excel (default)
    gridctl documents evaluation --from 2026-11-01 --to 2026-11-15 --format pdf -o 上半月.pdf

Reads the read models at ``DATABASE_URL`` (schema ``GRID_DB_SCHEMA``) or the embedded
PostgreSQL of a running ``gridctl up``; photos of the case file come from NATS (``NATS_URL``
or the box's) when reachable, else they are listed without the picture. Reporter names and
phones are masked unless ``--personal`` is given (the operator answers for it).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from core.settings import Settings
from gateways.cli_help import ZhGroup

app = typer.Typer(cls=ZhGroup, help="文书: 案卷、督办单 (PDF), 综合评价报告 (Excel / PDF)。",
                  no_args_is_help=True)
err = Console(stderr=True)

OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="输出文件 (默认按编号命名)")]
PersonalOpt = Annotated[bool, typer.Option("--personal", help="不遮盖上报人姓名和电话")]
CaseArg = Annotated[str, typer.Argument(help="案件编号, 如 GD-7K3Q-M9XA-2BCD")]


def _where(settings: Settings) -> dict[str, Any]:
    from gateways.cli_status import locate

    where = locate(settings)
    if not where["database_url"]:
        from gateways.cli_projections import database_url

        where["database_url"] = database_url(settings, None)
    return where


async def _connect(settings: Settings, url: str) -> Any:
    import asyncpg

    from core.db import _init_connection  # JSON columns as Python values, as in the pools

    try:
        conn = await asyncpg.connect(url, timeout=5,
                                     server_settings={"search_path": settings.db_schema})
    except (OSError, asyncpg.PostgresError) as exc:
        err.print(f"[red]无法连接 PostgreSQL[/] {url}: {exc}")
        raise typer.Exit(2) from exc
    await _init_connection(conn)
    return conn


async def _photos(settings: Settings, nats_url: str | None, digests: list[str]) -> dict[str, bytes]:
    if not nats_url or not digests:
        return {}
    import nats

    from core.messaging import Topology
    from core.photos import PhotoStore

    try:
        nc = await nats.connect(nats_url, connect_timeout=2, allow_reconnect=False)
    except Exception:  # photos are optional: the file lists them by name
        err.print("[yellow]NATS 不可达: 照片只列出名称[/]")
        return {}
    try:
        store = PhotoStore(nc.jetstream(), Topology(settings.stream_prefix))
        out = {}
        for d in digests:
            blob = await store.get(d)
            if blob is not None:
                out[d] = blob
        return out
    finally:
        await nc.close()


def _case_document(which: Literal["file", "supervision"], case_no: str, out: Path | None,
                   personal: bool) -> None:
    from core.refdata import load_reference
    from gateways import documents as render
    from gateways.http.privacy import mask_personal_data
    from projections import documents as docs

    settings = Settings()
    ref = load_reference(settings)
    where = _where(settings)

    async def main() -> bytes:
        conn = await _connect(settings, where["database_url"])
        try:
            data = await (docs.case_file(conn, case_no) if which == "file"
                          else docs.supervision_order(conn, case_no))
        finally:
            await conn.close()
        if data is None:
            err.print(f"[red]没有案件 {case_no}[/]")
            raise typer.Exit(1)
        render.with_names(ref, data)  # people and departments by name, not code
        if not personal:
            data["case"] = mask_personal_data(data["case"])
            data["timeline"] = mask_personal_data(data["timeline"])
        place = render.place_names(ref, data["case"])
        now = datetime.now(UTC)
        if which == "supervision":
            if not data["orders"]:
                err.print(f"[red]案件 {case_no} 没有督办记录[/]")
                raise typer.Exit(1)
            return render.supervision_pdf(data, place, ref.jurisdiction.name_zh, now)
        images = await _photos(settings, where["nats_url"], [p["digest"] for p in data["photos"]])
        return render.case_file_pdf(data, place, ref.jurisdiction.name_zh, now, images)

    body = asyncio.run(main())
    path = out or Path(f"{'case-file' if which == 'file' else 'supervision'}-{case_no}.pdf")
    path.write_bytes(body)
    Console().print(f"已生成 [bold]{path}[/]({len(body):,} 字节)")


@app.command("case-file")
def case_file(case_no: CaseArg, out: OutOpt = None, personal: PersonalOpt = False) -> None:
    """案卷 (PDF): 案件信息、办理过程 (谁在何时做了什么)、照片。"""
    _case_document("file", case_no, out, personal)


@app.command()
def supervision(case_no: CaseArg, out: OutOpt = None, personal: PersonalOpt = False) -> None:
    """督办单 (PDF): 督办事项、案件情况、办理要求。"""
    _case_document("supervision", case_no, out, personal)


def month_period(month: str | None, day_from: str | None, day_to: str | None,
                 today: date) -> tuple[date, date]:
    """A month (YYYY-MM), a from/to range, or last month."""
    try:
        if month:
            start = date.fromisoformat(f"{month}-01")
            end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            return start, end
        if day_from or day_to:
            end = date.fromisoformat(day_to) if day_to else today
            start = date.fromisoformat(day_from) if day_from else end.replace(day=1)
            if start > end:
                raise ValueError("from is after to")
            return start, end
    except (ValueError, OverflowError) as exc:
        err.print(f"[red]统计期不对[/]: {exc} (月份写 2026-11, 日期写 2026-11-01)")
        raise typer.Exit(2) from exc
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


@app.command()
def evaluation(
    month: Annotated[str | None, typer.Option(help="月份 YYYY-MM (默认上月)")] = None,
    day_from: Annotated[str | None, typer.Option("--from", help="起始日 YYYY-MM-DD")] = None,
    day_to: Annotated[str | None, typer.Option("--to", help="截止日 YYYY-MM-DD (含)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="xlsx 或 pdf")] = "xlsx",
    rank_by: Annotated[str, typer.Option(help="排名依据的指标")] = "on_time_closure_rate",
    out: OutOpt = None,
) -> None:
    """综合评价报告: 区县、部门、社区、网格按公布的指标排名 (Excel 或 PDF)。"""
    from core.refdata import load_reference
    from gateways import documents as render
    from projections import documents as docs
    from projections import metrics as m

    if fmt not in ("xlsx", "pdf"):
        err.print("[red]--format 只能是 xlsx 或 pdf[/]")
        raise typer.Exit(2)
    if rank_by not in m.METRICS:
        err.print(f"[red]没有指标 {rank_by}[/]; 可用: {', '.join(m.METRICS)}")
        raise typer.Exit(2)
    settings = Settings()
    ref = load_reference(settings)
    where = _where(settings)
    start, end = month_period(month, day_from, day_to, datetime.now(m.METRIC_TZ).date())

    async def main() -> dict[str, Any]:
        conn = await _connect(settings, where["database_url"])
        try:
            return await docs.evaluation(conn, ref.jurisdiction, start, end, rank_by)
        finally:
            await conn.close()

    report = asyncio.run(main())
    now = datetime.now(UTC)
    body = render.evaluation_xlsx(report, now) if fmt == "xlsx" else render.evaluation_pdf(
        report, now)
    path = out or Path(f"evaluation-{start}-{end}.{fmt}")
    path.write_bytes(body)
    Console().print(f"已生成 [bold]{path}[/]: {ref.jurisdiction.name_zh} {start} 至 {end} 综合评价"
                    f"({len(body):,} 字节)")
