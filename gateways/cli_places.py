"""``gridctl places``: the standard address list (标准地址库).

    gridctl places import addresses.csv [--replace] [--rejects rejected.csv]
    gridctl places import addresses.geojson
    gridctl places search 中华北路            # what GET /v1/places?q= answers
    gridctl places sample --count 6000 --out deploy/cities/guiyang/places.csv

A CSV has a header with ``road, number, building, poi, lat, lon`` (or 道路, 门牌号, 楼栋,
名称, 纬度, 经度; an optional ``id``); a GeoJSON FeatureCollection has Point features with
those properties. Each row is checked on its own (``core.places.check``): rejected rows are
counted by reason, the first ones listed, all of them written with ``--rejects``. Accepted
rows are stored in one transaction (upsert by id; ``--replace`` empties the list first), with
one ``road`` entry per road. Connects like ``gridctl users`` (``DATABASE_URL``, or the
embedded PostgreSQL of ``gridctl up``).

``sample`` generates a city's addresses from its grids (roads crossing each community, house
numbers along them, odd on one side, even on the other, some buildings and POIs), each point
inside the grid it is filed under: the sample city's ``places.csv`` is made by it.
"""

from __future__ import annotations

import asyncio
import csv
import math
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from shapely.geometry import LineString, Point
from shapely.ops import unary_union

from core import places
from core.db import create_pool
from core.jurisdiction import Jurisdiction
from core.settings import Settings
from gateways.cli_help import ZhGroup
from gateways.cli_users import _database_url

app = typer.Typer(cls=ZhGroup, help="标准地址库: 导入、查询、生成示例。", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

#: Rejected rows listed on the terminal (all of them go to ``--rejects``).
SHOWN_REJECTS = 20


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=out,
    )


def check_file(
    path: Path, j: Jurisdiction, progress: Progress | None = None
) -> tuple[list[places.Place], list[tuple[int, str, dict[str, Any]]]]:
    """``core.places.check_file`` with a progress bar."""
    if progress is None:
        return places.check_file(path, j)
    task = progress.add_task("检查", total=places.count_rows(path), note="")

    def advance(rejected: int) -> None:
        progress.update(task, advance=1, note=f"拒收 {rejected} 行")

    return places.check_file(path, j, advance)


async def _store(
    settings: Settings, entries: list[places.Place], replace: bool, progress: Progress
) -> int:
    pool = await create_pool(_database_url(settings), settings.db_schema, max_size=1)
    try:
        async with pool.acquire() as conn:
            await places.setup(conn)
            task = progress.add_task("写入", total=len(entries), note="单个事务")
            stored = await places.store(conn, entries, replace=replace)
            progress.update(task, completed=len(entries))
            return await places.count(conn) if stored else 0
    finally:
        await pool.close()


@app.command("import")
def import_places(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV 或 GeoJSON 文件")],
    replace: Annotated[bool, typer.Option(help="先清空地址库")] = False,
    rejects: Annotated[
        Path | None, typer.Option(help="把所有拒收行写到此文件 (CSV: 行号, 原因, 内容)")
    ] = None,
) -> None:
    """导入城市的标准地址; 列出拒收的行及原因。"""
    settings = Settings()
    j = Jurisdiction.load(settings.city_dir)
    with _progress() as progress:
        try:
            entries, rejected = check_file(path, j, progress)
        except (places.PlaceRejected, ValueError) as exc:
            err.print(f"[red]无法读取 {path}[/]: {exc}")
            raise typer.Exit(2) from exc
        try:
            total = asyncio.run(_store(settings, entries, replace, progress))
        except (OSError, asyncpg.PostgresError) as exc:
            err.print(f"[red]无法写入地址[/] ({_database_url(settings)}): {exc}")
            raise typer.Exit(2) from exc
    roads = sum(1 for e in entries if e.kind == "road")
    out.print(
        f"[green]已导入 {len(entries) - roads} 个地址和兴趣点[/] + {roads} 条道路; "
        f"拒收 {len(rejected)} 行; 地址库共 {total} 条"
    )
    if rejected:
        _refused(rejected, rejects)


def _refused(rejected: list[tuple[int, str, dict[str, Any]]], rejects: Path | None) -> None:
    """An import that rejected rows: the report, every row in ``rejects`` (CSV: line, reason,
    row; Excel-friendly UTF-8) when asked, and exit code 1 (``gridctl places`` and
    ``gridctl components``)."""
    _report(rejected)
    if rejects is not None:
        with rejects.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "reason", "row"])
            for line, reason, raw in rejected:
                writer.writerow([line, reason, raw])
        out.print(f"全部拒收行: {rejects}")
    raise typer.Exit(1)


def _report(rejected: list[tuple[int, str, dict[str, Any]]]) -> None:
    reasons = Counter(_reason_kind(reason) for _, reason, _ in rejected)
    summary = Table(title="拒收行 (按原因)")
    summary.add_column("原因")
    summary.add_column("行数", justify="right")
    for reason, n in reasons.most_common():
        summary.add_row(reason, str(n))
    out.print(summary)
    detail = Table(title=f"前 {min(len(rejected), SHOWN_REJECTS)} 个拒收行")
    detail.add_column("行号", justify="right")
    detail.add_column("原因")
    detail.add_column("内容")
    for line, reason, raw in rejected[:SHOWN_REJECTS]:
        shown = {k: v for k, v in raw.items() if v not in (None, "")}
        detail.add_row(str(line), reason, str(shown)[:80])
    out.print(detail)


def _reason_kind(reason: str) -> str:
    """A reason without its values ("(26.1, 106.2) 不在贵阳市范围内" → "… 不在贵阳市范围内",
    "与第 3 行重复" → "与第 … 行重复", "lat 不是数字: 'x'" → "lat 不是数字")."""
    if reason.startswith("("):
        return "…" + reason[reason.index(")") + 1:]
    kind = reason.split(":")[0]
    return re.sub(r"第 \d+ 行", "第 … 行", re.sub(r"(?<![\w.])\d{6}(?![\w.])", "…", kind))


@app.command("search")
def search_places(
    q: Annotated[str, typer.Argument(help="查询词 (如 中华北路 或 zhbl)")],
    limit: Annotated[
        int, typer.Option(min=1, max=places.MAX_RESULTS, help="最多返回条数")
    ] = 10,
) -> None:
    """像页面一样查询地址库 (前缀、拼音首字母、全拼)。"""
    settings = Settings()

    async def main() -> list[dict[str, Any]]:
        pool = await create_pool(_database_url(settings), settings.db_schema, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await places.search(conn, q, limit)
        finally:
            await pool.close()

    table = Table(title=f"匹配 {q!r} 的地址")
    for column in ("类型", "名称", "网格", "纬度", "经度"):
        table.add_column(column)
    for item in asyncio.run(main()):
        table.add_row(item["kind"], item["label"], item["grid"], f"{item['lat']:.6f}",
                      f"{item['lon']:.6f}")
    out.print(table)


# --------------------------------------------------------------------------- sample city

ROAD_BASES = (
    "中华", "延安", "宝山", "北京", "遵义", "富水", "瑞金", "省府", "都司", "公园", "解放",
    "市府", "文昌", "威清", "沙冲", "花果园", "新华", "油榨", "兴关", "观水", "浣纱", "飞山",
    "箭道", "护国", "友谊", "合群", "陕西", "黔灵", "枣山", "金阳", "长岭", "林城", "观山",
    "石林", "黔桂", "珠江", "黄河", "长江", "清水江", "湘江", "甲秀", "南明", "太慈", "花溪",
    "溪北", "贵筑", "清溪", "世纪城", "金华园", "会展", "贵黄", "小河", "松花江", "明珠",
    "碧海", "阳关", "云潭", "兴筑", "诚信", "宾阳", "北京西", "龙泉", "普陀", "未来方舟",
)
DIRECTIONS = ("", "东", "西", "南", "北", "中")
SUFFIXES = ("路", "街", "巷", "大道")
POI_KINDS = (
    "小学", "中学", "幼儿园", "医院", "社区卫生服务站", "超市", "农贸市场", "派出所",
    "社区服务中心", "公园", "酒店", "药店", "加油站", "银行网点", "菜场", "停车场",
)
CHINESE_NUMBERS = "一二三四五六七八九十"
#: Guiyang's best-known roads come first (the docs' examples: "zhbl" → 中华北路).
FAMOUS = ("中华北路", "中华中路", "中华南路", "延安东路", "延安西路", "宝山北路", "北京路",
          "遵义路", "瑞金北路", "省府路", "富水北路", "解放路", "花溪大道", "林城东路")


def road_names(rng: random.Random) -> Iterator[str]:
    """Unique road names: the famous ones, base + direction + suffix, then numbered lanes
    (中华北路三巷)."""
    names = [f"{b}{d}{s}" for b in ROAD_BASES for d in DIRECTIONS for s in SUFFIXES
             if f"{b}{d}{s}" not in FAMOUS]
    rng.shuffle(names)
    names = [*FAMOUS, *names]
    yield from names
    lanes = [f"{n}{CHINESE_NUMBERS[i % 10]}{'' if i < 10 else str(i // 10)}巷"
             for i in range(100) for n in names]
    yield from lanes


def generate(j: Jurisdiction, count: int, seed: int = 12319) -> list[dict[str, Any]]:
    """About ``count`` address rows of roads crossing each community of ``j``; every point
    lies inside a grid of the community (checked with the same locate as a report)."""
    rng = random.Random(seed)
    names = road_names(rng)
    communities: dict[str, list[Any]] = {}
    for code in sorted(j.grids):
        grid = j.grid(code)
        communities.setdefault(grid.parent, []).append(grid.geometry)
    per_road = 40
    roads_per_community = max(1, math.ceil(count / per_road / len(communities)))
    rows: list[dict[str, Any]] = []
    for community, shapes in communities.items():
        area = unary_union(shapes)
        west, south, east, north = area.bounds
        for _ in range(roads_per_community):
            name = next(names)
            line = _road_line(rng, area, west, south, east, north)
            if line is None:
                continue
            rows.extend(_along(rng, j, community, name, line, per_road))
    return rows


def _road_line(
    rng: random.Random, area: Any, west: float, south: float, east: float, north: float
) -> LineString | None:
    for _ in range(20):
        if rng.random() < 0.5:  # east-west
            y = rng.uniform(south, north)
            candidate = LineString([(west, y), (east, y + rng.uniform(-0.004, 0.004))])
        else:  # north-south
            x = rng.uniform(west, east)
            candidate = LineString([(x, south), (x + rng.uniform(-0.004, 0.004), north)])
        piece = candidate.intersection(area)
        parts = list(getattr(piece, "geoms", [piece]))
        best = max(parts, key=lambda g: g.length, default=None)
        if isinstance(best, LineString) and best.length > 0.004:
            return best
    return None


def _along(
    rng: random.Random, j: Jurisdiction, community: str, road: str, line: LineString, n: int
) -> Iterator[dict[str, Any]]:
    offset = 0.00012  # ~13 m either side of the centre line
    for number in range(1, n + 1):
        at = line.interpolate((number - 0.5) / n, normalized=True)
        ahead = line.interpolate(min(1.0, number / n), normalized=True)
        dx, dy = ahead.x - at.x, ahead.y - at.y
        norm = math.hypot(dx, dy) or 1.0
        side = 1 if number % 2 else -1  # odd numbers on the left, even on the right
        point = Point(at.x - side * dy / norm * offset, at.y + side * dx / norm * offset)
        grid = j.locate(point.y, point.x)
        if grid is None or grid.parent != community:
            continue
        poi = None
        if rng.random() < 0.06:
            stem = road[:-1] if road.endswith(("路", "街", "巷")) else road
            poi = f"{stem}{rng.choice(POI_KINDS)}"
        base = {"road": road, "number": str(number), "building": "", "poi": poi or "",
                "lat": round(point.y, 7), "lon": round(point.x, 7)}
        yield base
        if rng.random() < 0.15:  # a residential compound: numbered buildings
            for building in range(1, rng.randint(2, 6)):
                lat = round(point.y + side * building * 0.00003, 7)
                inside = j.locate(lat, point.x)
                if inside is not None and inside.code == grid.code:
                    yield {**base, "building": f"{building}栋", "poi": "", "lat": lat}


@app.command("sample")
def sample(
    out_path: Annotated[Path, typer.Option("--out", help="输出的 CSV 文件")],
    count: Annotated[int, typer.Option(min=1, help="大约生成的地址条数")] = 6000,
    seed: Annotated[int, typer.Option(help="随机种子 (同一种子生成相同结果)")] = 12319,
) -> None:
    """由网格生成示例城市的地址 (结果确定)。"""
    j = Jurisdiction.load(Settings().city_dir)
    rows = generate(j, count, seed)
    with out_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["road", "number", "building", "poi", "lat", "lon"])
        writer.writeheader()
        writer.writerows(rows)
    out.print(f"已写入 {out_path}: {len(rows)} 行地址")
