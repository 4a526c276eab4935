"""部件 (city components): manholes, street lamps, bins… each with its 16-digit code, as a
point layer of the map.

The code follows CJ/T 214 (the catalogue's component classes): 6-digit county (district) code,
2-digit major class, 2-digit minor class, 6-digit serial — ``5201020105000123`` is street lamp
(大类 01 公用设施, 小类 05 路灯) no. 123 of 南明区. A row gives the code, the kind (井盖, 路灯,
垃圾箱…; taken from the catalogue's class name when left out), its WGS-84 / CGCS2000 point
and optionally a name. Import checks every row on its own (:func:`check`) and reports the
rejected ones with their reason, like the standard addresses (``core/places.py``); accepted
rows are placed in their grid with the same point-in-polygon as a report.

Queried by bounding box (``GET /v1/components?bbox=``) through a GiST index on the point
(PostgreSQL's built-in geometric types; no PostGIS needed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import asyncpg

from core.catalogue import Catalogue
from core.jurisdiction import Jurisdiction
from core.places import read_rows
from core.rows import RowFields

#: Longest kind or name (characters).
MAX_TEXT = 60
#: Most components one bbox query answers.
MAX_RESULTS = 5000
#: Header aliases a city's file may use.
ALIASES: dict[str, tuple[str, ...]] = {
    "code": ("code", "id", "部件编码", "编码", "标识码"),
    "kind": ("kind", "type", "部件类型", "类型", "小类"),
    "name": ("name", "名称", "部件名称"),
    "lat": ("lat", "latitude", "纬度", "y"),
    "lon": ("lon", "lng", "long", "longitude", "经度", "x"),
}
#: The component list a city ships, loaded into an empty table when the box starts.
CITY_FILE = "components.csv"

DDL = """
CREATE TABLE IF NOT EXISTS components (
    code text PRIMARY KEY,
    kind text NOT NULL,
    category text,
    name text,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    grid text NOT NULL,
    district text NOT NULL
);
CREATE INDEX IF NOT EXISTS components_point_idx ON components USING gist (point(lon, lat));
"""
PUBLIC_COLUMNS = "code, kind, category, name, lat, lon, grid, district"


class ComponentRejected(ValueError):
    """A row that cannot be a component; the message says why (for the report)."""


#: How a row's fields are read (aliases, refusals: ``core/rows.py``).
_FIELDS = RowFields(ALIASES, ComponentRejected)


@dataclass(frozen=True)
class Component:
    code: str
    kind: str
    category: str | None
    name: str | None
    lat: float
    lon: float
    grid: str
    district: str

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Component))


def category_of(code: str) -> str:
    """The catalogue code of a component's class: ``BJ`` + major + minor (digits 7–10)."""
    return f"BJ{code[6:10]}"








def check(raw: Mapping[str, Any], j: Jurisdiction, catalogue: Catalogue | None = None) -> Component:
    """One row → a component in its grid; :class:`ComponentRejected` with the reason."""
    if "_geometry" in raw:
        raise ComponentRejected(f"几何类型为 {raw['_geometry']}, 不是 Point")
    code = _FIELDS.text(raw, "code", MAX_TEXT)
    if code is None:
        raise ComponentRejected("缺少部件编码 (code)")
    if len(code) != 16 or not code.isascii() or not code.isdigit():
        raise ComponentRejected(f"部件编码不是 16 位数字: {code[:20]!r}")
    lat, lon = _FIELDS.coordinate(raw, "lat"), _FIELDS.coordinate(raw, "lon")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ComponentRejected(f"({lat}, {lon}) 不是有效的纬度 / 经度")
    if not j.in_city(lat, lon):
        raise ComponentRejected(f"({lat}, {lon}) 不在{j.name_zh}范围内")
    grid = j.locate(lat, lon)
    if grid is None:
        raise ComponentRejected(f"({lat}, {lon}) 不在任何网格内")
    district = j.partition_of(grid.code)
    if j.code_scheme == "gbt2260" and code[:6] != district:
        raise ComponentRejected(
            f"部件编码的区县码 {code[:6]} 与坐标所在区县 {district} 不符"
        )
    category: str | None = category_of(code)
    known = catalogue.get(category_of(code)) if catalogue and category in catalogue else None
    if catalogue is not None and known is None:
        category = None
    kind = _FIELDS.text(raw, "kind", MAX_TEXT) or (
        known.name_zh if known is not None else None
    )
    if kind is None:
        raise ComponentRejected(f"缺少部件类型 (kind), 且类别 {code[6:10]} 不在分类目录中")
    return Component(
        code=code, kind=kind, category=category, name=_FIELDS.text(raw, "name", MAX_TEXT),
        lat=round(lat, 7), lon=round(lon, 7), grid=grid.code, district=district,
    )


Rejection = tuple[int, str, dict[str, Any]]


def check_file(
    path: Path, j: Jurisdiction, catalogue: Catalogue | None = None,
    on_row: Callable[[int], None] | None = None,
) -> tuple[list[Component], list[Rejection]]:
    """Every row of ``path`` (CSV or GeoJSON points) checked: the components and the rejected
    rows as (line, reason, row); a repeated code is a duplicate of its first line."""
    accepted: list[Component] = []
    rejected: list[Rejection] = []
    seen: dict[str, int] = {}
    try:
        rows: Iterator[tuple[int, dict[str, Any]]] = read_rows(path)
        for line, raw in rows:
            try:
                item = check(raw, j, catalogue)
                if item.code in seen:
                    raise ComponentRejected(f"与第 {seen[item.code]} 行重复")
                seen[item.code] = line
                accepted.append(item)
            except ComponentRejected as exc:
                rejected.append((line, str(exc), raw))
            if on_row is not None:
                on_row(len(rejected))
    except ValueError as exc:  # not a FeatureCollection, bad JSON
        raise ComponentRejected(str(exc)) from exc
    return accepted, rejected


# --------------------------------------------------------------------------- database


async def setup(conn: asyncpg.Connection) -> None:
    await conn.execute(DDL)


async def store(
    conn: asyncpg.Connection, items: Sequence[Component], *, replace: bool = False
) -> int:
    """Upsert ``items`` by code in one transaction (``replace`` empties the table first)."""
    async with conn.transaction():
        if replace:
            await conn.execute("TRUNCATE components")
        await conn.execute("CREATE TEMP TABLE components_in (LIKE components) ON COMMIT DROP")
        await conn.copy_records_to_table(
            "components_in", records=[astuple(c) for c in items], columns=list(COLUMNS)
        )
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "code")
        await conn.execute(
            f"INSERT INTO components ({', '.join(COLUMNS)}) "
            f"SELECT {', '.join(COLUMNS)} FROM components_in "
            f"ON CONFLICT (code) DO UPDATE SET {updates}"
        )
    return len(items)


async def in_bbox(
    conn: asyncpg.Connection, west: float, south: float, east: float, north: float,
    *, kinds: Iterable[str] = (), limit: int = 2000,
) -> tuple[list[dict[str, Any]], bool]:
    """Components inside the box (at most ``limit``; True when there were more)."""
    wanted = sorted(set(kinds))
    rows = await conn.fetch(
        f"SELECT {PUBLIC_COLUMNS} FROM components "
        "WHERE point(lon, lat) <@ box(point($1, $2), point($3, $4)) "
        "AND (cardinality($5::text[]) = 0 OR kind = ANY($5::text[])) "
        "ORDER BY code LIMIT $6",
        west, south, east, north, wanted, limit + 1,
    )
    return [dict(r) for r in rows[:limit]], len(rows) > limit


async def get(conn: asyncpg.Connection, code: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {PUBLIC_COLUMNS} FROM components WHERE code = $1", code)
    return dict(row) if row else None


async def kinds(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT kind, category, count(*) AS n FROM components GROUP BY kind, category "
        "ORDER BY kind"
    )
    return [dict(r) for r in rows]


async def count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM components"))


async def load_city(
    conn: asyncpg.Connection, j: Jurisdiction, catalogue: Catalogue, city_dir: Path
) -> int:
    """The city's shipped ``components.csv`` into an empty table; how many were stored."""
    path = city_dir / CITY_FILE
    if not path.exists() or await count(conn):
        return 0
    items, _rejected = check_file(path, j, catalogue)
    return await store(conn, items)


__all__ = [
    "CITY_FILE",
    "COLUMNS",
    "Component",
    "ComponentRejected",
    "category_of",
    "check",
    "check_file",
    "count",
    "get",
    "in_bbox",
    "kinds",
    "load_city",
    "setup",
    "store",
]
