"""``gridctl components``: a city's 部件 (manholes, lamps, bins… with 16-digit codes).

    gridctl components import components.csv [--replace] [--rejects rejected.csv]
    gridctl components import components.geojson
    gridctl components sample --out deploy/cities/guiyang/components.csv

A CSV has a header with ``code, kind, name, lat, lon`` (or 部件编码, 部件类型, 名称, 纬度,
经度); a GeoJSON FeatureCollection has Point features with those properties. Each row is
checked on its own (``core.components.check``): 16-digit code, its district digits matching
where the point lies, the point inside a grid, a kind (or a class the catalogue knows).
Rejected rows are counted by reason, the first ones listed, all of them written with
``--rejects``; accepted rows are stored in one transaction (upsert by code; ``--replace``
empties the table first). Connects like ``gridctl places`` (``DATABASE_URL``, or the embedded
PostgreSQL of ``gridctl up``).

``sample`` places a city's components along the streets of its offline base map
(``basemap.geojson``, ``gridctl basemap sample``): lamps on both sides, manholes on the centre
line, bins and hydrants every so often, a bin at each landmark.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.progress import Progress

from core import components
from core.catalogue import Catalogue
from core.db import create_pool
from core.jurisdiction import Jurisdiction
from core.settings import Settings
from gateways.cli_help import ZhGroup
from gateways.cli_places import _progress, _refused
from gateways.cli_users import _database_url

app = typer.Typer(cls=ZhGroup, help="城市部件 (点图层): 导入、生成示例。", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def check_file(
    path: Path, j: Jurisdiction, catalogue: Catalogue, progress: Progress | None = None
) -> tuple[list[components.Component], list[components.Rejection]]:
    """``core.components.check_file`` with a progress bar."""
    if progress is None:
        return components.check_file(path, j, catalogue)
    total = None
    if path.suffix.lower() not in (".geojson", ".json"):
        with path.open("rb") as handle:
            total = max(sum(1 for _ in handle) - 1, 0)
    task = progress.add_task("检查", total=total, note="")

    def advance(rejected: int) -> None:
        progress.update(task, advance=1, note=f"拒收 {rejected} 行")

    return components.check_file(path, j, catalogue, advance)


async def _store(
    settings: Settings, items: list[components.Component], replace: bool, progress: Progress
) -> int:
    pool = await create_pool(_database_url(settings), settings.db_schema, max_size=1)
    try:
        async with pool.acquire() as conn:
            await components.setup(conn)
            task = progress.add_task("写入", total=len(items), note="单个事务")
            await components.store(conn, items, replace=replace)
            progress.update(task, completed=len(items))
            return await components.count(conn)
    finally:
        await pool.close()


@app.command("import")
def import_components(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV 或 GeoJSON 文件")],
    replace: Annotated[bool, typer.Option(help="先清空部件表")] = False,
    rejects: Annotated[
        Path | None, typer.Option(help="把所有拒收行写到此文件 (CSV: 行号, 原因, 内容)")
    ] = None,
) -> None:
    """导入城市部件; 列出拒收的行及原因。"""
    settings = Settings()
    j = Jurisdiction.load(settings.city_dir)
    catalogue = Catalogue.load(settings.categories_file)
    with _progress() as progress:
        try:
            items, rejected = check_file(path, j, catalogue, progress)
        except components.ComponentRejected as exc:
            err.print(f"[red]无法读取 {path}[/]: {exc}")
            raise typer.Exit(2) from exc
        try:
            total = asyncio.run(_store(settings, items, replace, progress))
        except (OSError, asyncpg.PostgresError) as exc:
            err.print(f"[red]无法写入部件[/] ({_database_url(settings)}): {exc}")
            raise typer.Exit(2) from exc
    by_kind = Counter(c.kind for c in items)
    out.print(
        f"[green]已导入 {len(items)} 个部件[/] "
        f"({', '.join(f'{k} {n}' for k, n in by_kind.most_common(6))}); "
        f"拒收 {len(rejected)} 行; 部件表共 {total} 个"
    )
    if rejected:
        _refused(rejected, rejects)


# --------------------------------------------------------------------------- sample city

#: (catalogue class, spacing along a street in metres, offset from the centre line in metres).
#: Sparser than a real street (a sample, not an inventory): about 9,000 in the sample city.
PLACEMENT = (
    ("0105", 270.0, 9.0),  # 路灯 street lamps, both sides (offset alternates)
    ("0103", 420.0, 0.0),  # 雨水井盖 storm-drain covers on the centre line
    ("0102", 660.0, 2.0),  # 污水井盖
    ("0101", 960.0, -2.0),  # 上水井盖
    ("0302", 780.0, 7.0),  # 垃圾箱 bins
    ("0106", 1300.0, -8.0),  # 消防栓 hydrants
)
M_PER_DEG_LAT = 110_540.0


def generate(j: Jurisdiction, layer: dict[str, Any], seed: int = 520) -> list[dict[str, Any]]:
    """Component rows along the layer's streets (and a bin beside each landmark); every point
    inside a grid, its code's district digits that grid's district."""
    rng = random.Random(seed)
    serial: Counter[tuple[str, str]] = Counter()
    rows: list[dict[str, Any]] = []

    def add(cls: str, lon: float, lat: float, name: str = "") -> None:
        grid = j.locate(lat, lon)
        if grid is None:
            return
        district = j.partition_of(grid.code)
        serial[(district, cls)] += 1
        rows.append({
            "code": f"{district}{cls}{serial[(district, cls)]:06d}", "kind": "",
            "name": name, "lat": round(lat, 7), "lon": round(lon, 7),
        })

    for feature in layer["features"]:
        props, geometry = feature["properties"], feature["geometry"]
        if props.get("layer") == "poi":
            lon, lat = geometry["coordinates"]
            add("0302", lon + 0.00008, lat, f"{props['name']}门前")
            continue
        if props.get("class") not in ("street", "lane"):
            continue
        path = geometry["coordinates"]
        for cls, spacing, offset in PLACEMENT:
            if props["class"] == "lane" and cls in ("0106", "0102"):
                continue
            travelled = rng.uniform(0, spacing)
            side = 1
            for (x1, y1), (x2, y2) in itertools.pairwise(path):
                kx = 111_320 * math.cos(math.radians((y1 + y2) / 2))
                dx, dy = (x2 - x1) * kx, (y2 - y1) * M_PER_DEG_LAT
                length = math.hypot(dx, dy)
                if length == 0:
                    continue
                while travelled <= length:
                    f = travelled / length
                    nx, ny = -dy / length, dx / length  # left normal, metres
                    off = offset * (side if cls == "0105" else 1)
                    lon = x1 + (dx * f + nx * off) / kx
                    lat = y1 + (dy * f + ny * off) / M_PER_DEG_LAT
                    add(cls, lon, lat, props["name"] if cls == "0105" else "")
                    side = -side
                    travelled += spacing
                travelled -= length
    return rows


@app.command("sample")
def sample(
    out_path: Annotated[Path, typer.Option("--out", help="输出的 CSV 文件")],
    layer_path: Annotated[
        Path | None, typer.Option("--layer", help="城市的 basemap.geojson (默认在城市目录)")
    ] = None,
    seed: Annotated[int, typer.Option(help="随机种子 (同一种子生成相同结果)")] = 520,
) -> None:
    """沿离线底图的街道生成示例城市的部件 (结果确定)。"""
    settings = Settings()
    j = Jurisdiction.load(settings.city_dir)
    layer = json.loads((layer_path or settings.city_dir / "basemap.geojson").read_text("utf-8"))
    rows = generate(j, layer, seed)
    with out_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["code", "kind", "name", "lat", "lon"])
        writer.writeheader()
        writer.writerows(rows)
    out.print(f"已写入 {out_path}: {len(rows)} 行部件")
