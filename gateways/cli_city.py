"""``gridctl city import``: a city's districts, communities and grids from GIS files.

    gridctl city import --districts d.geojson --communities c.shp --grids g.shp \\
        --code 430100 --name-zh 长沙市 --name-en Changsha --out deploy/cities/changsha \\
        [--departments-from deploy/cities/guiyang/city.json] [--report findings.csv]

Reads each layer (GeoJSON or shapefile), checks codes, parents, overlaps and gaps
(``core/city_import.py``), prints every finding with its area (m²) and a point inside it, and
— when there is no error — writes ``<out>/city.json`` and loads it back with the same checks
as the server's start-up. Exit 1 on errors (nothing written), 0 otherwise (warnings such as
gaps are listed). Then start with ``GRID_CITY=<out>``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from core import city_import
from core.jurisdiction import Jurisdiction, JurisdictionError
from gateways.cli_help import ZhGroup

app = typer.Typer(cls=ZhGroup, help="城市网格图层: 导入与检查。", no_args_is_help=True)
out = Console()

@app.callback()
def city() -> None:
    """城市网格图层: 导入与检查。"""


LAYER_ZH = {"district": "区县", "community": "社区", "grid": "网格"}

Layer = Annotated[Path, typer.Option(exists=True, dir_okay=False, help=".geojson 或 .shp 文件")]


@app.command("import")
def import_city(
    districts: Layer,
    communities: Layer,
    grids: Layer,
    code: Annotated[str, typer.Option(help="城市代码 (GB/T 2260, 如 430100)")],
    name_zh: Annotated[str, typer.Option(help="城市名称, 如 长沙市")],
    out_dir: Annotated[Path, typer.Option("--out", help="city.json 的输出目录")],
    name_en: Annotated[str | None, typer.Option(help="英文名称")] = None,
    departments_from: Annotated[
        Path | None, typer.Option(help="采用此 city.json 的部门, 而不是在市级和"
                                        "每个区县按职能各建一个")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="把检查结果写成 CSV")] = None,
    version: Annotated[int, typer.Option(help="城市定义的版本号")] = 1,
) -> None:
    """检查各图层; 没有错误时写出城市定义 (city.json)。"""
    try:
        layers = {
            "district": city_import.read_layer(districts, "district"),
            "community": city_import.read_layer(communities, "community"),
            "grid": city_import.read_layer(grids, "grid"),
        }
    except city_import.LayerError as exc:
        out.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    result = city_import.check(layers)
    counts = ", ".join(f"{LAYER_ZH[k]}图层 {len(v)} 个要素" for k, v in layers.items())
    out.print(f"已读取 {counts}: {len(result.errors)} 个错误, {len(result.warnings)} 个警告")
    if result.findings:
        _show(result.findings)
    if report is not None:
        with report.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(
                handle, ["severity", "layer", "code", "message", "area_m2", "lat", "lon"]
            )
            writer.writeheader()
            writer.writerows(f.row() for f in result.findings)
    if result.errors:
        out.print("[red]未写出[/]: 请改正错误后重新运行")
        raise typer.Exit(1)
    departments = None
    if departments_from is not None:
        departments = json.loads(departments_from.read_text(encoding="utf-8"))["departments"]
    document = city_import.city_definition(
        result, city_code=code, name_zh=name_zh, name_en=name_en or code, version=version,
        departments=departments,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "city.json"
    target.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n",
                      encoding="utf-8")
    try:
        j = Jurisdiction.load(out_dir)
    except JurisdictionError as exc:
        out.print(f"[red]已写出, 但载入时被拒绝[/]: {exc}")
        raise typer.Exit(1) from exc
    out.print(f"[green]{target}[/]: {len(j.grids)} 个网格, {len(j.nodes)} 个辖区节点, "
              f"{len(document['departments'])} 个部门 — 以 GRID_CITY={out_dir} 启动")


def _show(findings: list[city_import.Finding]) -> None:
    table = Table(title="检查结果")
    for column in ("", "图层", "代码", "问题", "面积 m²", "位置 (纬度, 经度)"):
        table.add_column(column)
    for f in findings:
        row: dict[str, Any] = f.row()
        table.add_row(
            "[red]错误[/]" if f.severity == "error" else "[yellow]警告[/]",
            LAYER_ZH.get(f.layer, f.layer), f.code or "—", f.message,
            "" if row["area_m2"] is None else f"{row['area_m2']:,.0f}",
            "" if f.at is None else f"{row['lat']}, {row['lon']}",
        )
    out.print(table)
