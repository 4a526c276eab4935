"""``gridctl basemap``: the sample city's offline street and landmark layer (底图).

    gridctl basemap sample --out deploy/cities/guiyang/basemap.geojson

Roads along the grid, community and district boundaries, the standard-address roads through
their house numbers (``places.csv`` of the city folder) and the address list's POIs as
landmarks (``core.basemap.sample_layer``). Deterministic: same grids and addresses, same bytes.
A city with a tile server names it in ``city.json`` (``basemap``: docs/basemap.md) instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core import basemap
from core.jurisdiction import Jurisdiction
from core.places import CITY_FILE
from core.settings import Settings
from gateways.cli_help import ZhGroup

app = typer.Typer(cls=ZhGroup, help="底图: 离线矢量图层。", no_args_is_help=True)
out = Console()


@app.command("sample")
def sample(
    out_path: Annotated[Path, typer.Option("--out", help="输出的 GeoJSON 文件")],
    places: Annotated[
        Path | None, typer.Option(help="地址 CSV (默认为城市目录的 places.csv)")
    ] = None,
) -> None:
    """由城市的网格与地址生成离线街道与地标图层。"""
    settings = Settings()
    j = Jurisdiction.load(settings.city_dir)
    rows = basemap.read_place_rows(places or settings.city_dir / CITY_FILE)
    layer = basemap.sample_layer(j, rows)
    out_path.write_text(basemap.render(layer), encoding="utf-8")
    kinds: dict[str, int] = {}
    for feature in layer["features"]:
        key = feature["properties"].get("class") or feature["properties"]["layer"]
        kinds[key] = kinds.get(key, 0) + 1
    out.print(f"已写入 {out_path}: {len(layer['features'])} 个要素, "
              + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
