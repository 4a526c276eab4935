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

app = typer.Typer(help="A city's grid layers (城市网格图层).", no_args_is_help=True)
out = Console()

@app.callback()
def city() -> None:
    """A city's grid layers (城市网格图层)."""


Layer = Annotated[Path, typer.Option(exists=True, dir_okay=False, help=".geojson or .shp")]


@app.command("import")
def import_city(
    districts: Layer,
    communities: Layer,
    grids: Layer,
    code: Annotated[str, typer.Option(help="the city's code (GB/T 2260, e.g. 430100)")],
    name_zh: Annotated[str, typer.Option(help="the city's name, e.g. 长沙市")],
    out_dir: Annotated[Path, typer.Option("--out", help="directory for city.json")],
    name_en: Annotated[str | None, typer.Option(help="English name")] = None,
    departments_from: Annotated[
        Path | None, typer.Option(help="take the departments of this city.json instead of "
                                        "one per function at the city and each district")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="write the findings as CSV")] = None,
    version: int = 1,
) -> None:
    """Check the layers; write the city definition when there is no error."""
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
    counts = ", ".join(f"{k} layer {len(v)} features" for k, v in layers.items())
    out.print(f"read {counts}: {len(result.errors)} errors, {len(result.warnings)} warnings")
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
        out.print("[red]not written[/]: fix the errors and run again")
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
        out.print(f"[red]written but refused at load[/]: {exc}")
        raise typer.Exit(1) from exc
    out.print(f"[green]{target}[/]: {len(j.grids)} grids, {len(j.nodes)} nodes, "
              f"{len(document['departments'])} departments — start with GRID_CITY={out_dir}")


def _show(findings: list[city_import.Finding]) -> None:
    table = Table(title="findings")
    for column in ("", "layer", "code", "finding", "area m²", "at (lat, lon)"):
        table.add_column(column)
    for f in findings:
        row: dict[str, Any] = f.row()
        table.add_row(
            "[red]error[/]" if f.severity == "error" else "[yellow]warning[/]",
            f.layer, f.code or "—", f.message,
            "" if row["area_m2"] is None else f"{row['area_m2']:,.0f}",
            "" if f.at is None else f"{row['lat']}, {row['lon']}",
        )
    out.print(table)
