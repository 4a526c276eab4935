"""标准地址库 (standard addresses): a city's address list, checked at import and searched as
the call-taker or inspector types.

A row names a road (道路), a house number (门牌号), a building (楼栋), a POI name (兴趣点, a
school, a hospital) and its WGS-84 / CGCS2000 point. Import checks every row on its own
(:func:`check`) and reports the rejected ones with their reason; an accepted row is placed in
its grid (the same point-in-polygon as a report) so a picked address gives the report its grid.

Search (:func:`search`) answers prefixes of the address or the POI name, their pinyin initials
("zhbl" → 中华北路) and full pinyin ("zhonghua"); the pinyin is computed once, at import
(pypinyin), and every key is a ``COLLATE "C"`` column with a plain B-tree index, so a prefix is
an index range scan that stops after ``limit`` rows whatever the size of the list (measured in
``benchmarks/places.py``). Substrings of three characters or more use ``pg_trgm`` where the
server has it (the embedded PostgreSQL does not: prefixes only there). Each road also gets one
``road`` entry (at the middle of its addresses) so typing a road name offers the road first.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import asyncpg

from core.jurisdiction import Jurisdiction
from core.rows import RowFields

#: Longest road, building or POI name (characters).
MAX_NAME = 100
#: Longest house number.
MAX_NUMBER = 20
#: Most results one search answers.
MAX_RESULTS = 50
#: Header aliases a city's file may use (Chinese or English).
ALIASES: dict[str, tuple[str, ...]] = {
    "road": ("road", "street", "道路", "街路巷", "路名"),
    "number": ("number", "house_number", "门牌号", "门牌号", "门牌"),
    "building": ("building", "楼栋", "楼栋", "楼号"),
    "poi": ("poi", "name", "兴趣点", "名称", "名称"),
    "lat": ("lat", "latitude", "纬度", "纬度", "y"),
    "lon": ("lon", "lng", "long", "longitude", "经度", "经度", "x"),
    "id": ("id", "code", "地址编码", "地址编码"),
}
KINDS = ("road", "address", "poi")

DDL = """
CREATE TABLE IF NOT EXISTS places (
    id text PRIMARY KEY,
    kind text NOT NULL,
    label text NOT NULL,
    address text,
    road text,
    number text,
    building text,
    poi text,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    grid text NOT NULL,
    community text,
    district text,
    norm text COLLATE "C" NOT NULL,
    py text COLLATE "C" NOT NULL,
    pinyin text COLLATE "C" NOT NULL,
    poi_norm text COLLATE "C",
    poi_py text COLLATE "C"
);
CREATE INDEX IF NOT EXISTS places_norm_idx ON places (norm);
CREATE INDEX IF NOT EXISTS places_py_idx ON places (py);
CREATE INDEX IF NOT EXISTS places_pinyin_idx ON places (pinyin);
CREATE INDEX IF NOT EXISTS places_poi_norm_idx ON places (poi_norm) WHERE poi_norm IS NOT NULL;
CREATE INDEX IF NOT EXISTS places_poi_py_idx ON places (poi_py) WHERE poi_py IS NOT NULL;
"""
#: Substring search where the server has pg_trgm (optional: prefixes work without it). In
#: ``public``: an extension lives in one schema per database, and a deployment's own schema
#: may be dropped (tests drop theirs) while others use it.
TRGM_DDL = """
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
CREATE INDEX IF NOT EXISTS places_norm_trgm_idx ON places USING gin (norm public.gin_trgm_ops);
CREATE INDEX IF NOT EXISTS places_poi_trgm_idx ON places USING gin (poi_norm public.gin_trgm_ops);
"""


class PlaceRejected(ValueError):
    """A row that cannot be a standard address; the message says why (for the report)."""


#: How a row's fields are read (aliases, refusals: ``core/rows.py``).
_FIELDS = RowFields(ALIASES, PlaceRejected)


@dataclass(frozen=True)
class Place:
    """One searchable entry: a road, an address (road + number [+ building]) or a POI."""

    id: str
    kind: str
    label: str
    address: str | None
    road: str | None
    number: str | None
    building: str | None
    poi: str | None
    lat: float
    lon: float
    grid: str
    community: str | None
    district: str | None
    norm: str
    py: str
    pinyin: str
    poi_norm: str | None
    poi_py: str | None

    def public(self) -> dict[str, Any]:
        """What the API answers (without the search keys)."""
        return {
            "id": self.id, "kind": self.kind, "label": self.label, "address": self.address,
            "poi": self.poi, "lat": self.lat, "lon": self.lon, "grid": self.grid,
            "community": self.community, "district": self.district,
        }


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Place))
PUBLIC_COLUMNS = "id, kind, label, address, poi, lat, lon, grid, community, district"


# --------------------------------------------------------------------------- text keys

_SPACE = re.compile(r"[\s·・,，.。、()（）\-_/#]+")


def normalize(text: str) -> str:
    """The search form of a text: NFKC (full-width digits and letters → ASCII), lower case,
    no spaces or punctuation ("中华北路 １２号" → "中华北路12号")."""
    return _SPACE.sub("", unicodedata.normalize("NFKC", text)).lower()


@lru_cache(maxsize=65536)
def _pinyin(part: str) -> tuple[str, str]:
    from pypinyin import Style, lazy_pinyin

    full = "".join(lazy_pinyin(part, errors="default"))
    initials = "".join(lazy_pinyin(part, style=Style.FIRST_LETTER, errors="default"))
    return normalize(full), normalize(initials)


def pinyin_keys(*parts: str | None) -> tuple[str, str]:
    """(full pinyin, initials) of the parts in order: "中华北路", "12号" → ("zhonghuabeilu12hao",
    "zhbl12h"). Parts are cached (a road's name repeats on every one of its addresses)."""
    full, initials = [], []
    for part in parts:
        if part:
            f, i = _pinyin(part)
            full.append(f)
            initials.append(i)
    return "".join(full), "".join(initials)


def house_number(number: str | None) -> str | None:
    """``12`` → ``12号``; ``12-3`` stays; empty → None."""
    if number is None:
        return None
    text = unicodedata.normalize("NFKC", number).strip()
    if not text:
        return None
    return f"{text}号" if text.isdigit() else text


def address_of(road: str | None, number: str | None, building: str | None) -> str | None:
    parts = [p for p in (road, house_number(number), building) if p]
    return "".join(parts) if road else None


# --------------------------------------------------------------------------- rows → places








def place_id(kind: str, label: str, lat: float, lon: float) -> str:
    """A stable id from what the entry is (the same row imported twice is the same place)."""
    digest = hashlib.sha1(f"{kind}|{normalize(label)}|{lat:.6f}|{lon:.6f}".encode()).hexdigest()
    return f"P{digest[:15]}"


def check(raw: Mapping[str, Any], j: Jurisdiction) -> Place:
    """One row → a place in its grid; :class:`PlaceRejected` with the reason otherwise."""
    road = _FIELDS.text(raw, "road", MAX_NAME)
    number = _FIELDS.text(raw, "number", MAX_NUMBER)
    building = _FIELDS.text(raw, "building", MAX_NAME)
    poi = _FIELDS.text(raw, "poi", MAX_NAME)
    if road is None and poi is None:
        raise PlaceRejected("既无道路也无兴趣点名称")
    if road is None and (number or building):
        raise PlaceRejected("有门牌号或楼栋但无道路")
    lat, lon = _FIELDS.coordinate(raw, "lat"), _FIELDS.coordinate(raw, "lon")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise PlaceRejected(f"({lat}, {lon}) 不是有效的纬度 / 经度")
    if not j.in_city(lat, lon):
        raise PlaceRejected(f"({lat}, {lon}) 不在{j.name_zh}范围内")
    grid = j.locate(lat, lon)
    if grid is None:
        raise PlaceRejected(f"({lat}, {lon}) 不在任何网格内")
    address = address_of(road, number, building)
    label = f"{poi}（{address}）" if poi and address else (poi or address or "")
    given = _FIELDS.text(raw, "id", 60)
    kind = "poi" if poi else "address"
    return _entry(
        given or place_id(kind, label, lat, lon), kind, label, address, road, number,
        building, poi, lat, lon, grid.code, j,
    )


def _entry(
    id: str, kind: str, label: str, address: str | None, road: str | None,
    number: str | None, building: str | None, poi: str | None, lat: float, lon: float,
    grid: str, j: Jurisdiction,
) -> Place:
    full, initials = pinyin_keys(road, house_number(number), building)
    poi_full, poi_initials = pinyin_keys(poi) if poi else (None, None)
    if road is None:  # a POI without an address: its name is its key
        full, initials = poi_full or "", poi_initials or ""
    return Place(
        id=id, kind=kind, label=label, address=address, road=road,
        number=house_number(number), building=building, poi=poi,
        lat=round(lat, 7), lon=round(lon, 7), grid=grid,
        community=j.grid(grid).parent, district=j.partition_of(grid),
        norm=normalize(address or poi or ""), py=initials, pinyin=full,
        poi_norm=normalize(poi) if poi else None, poi_py=poi_initials,
    )


def roads(places: Iterable[Place], j: Jurisdiction) -> list[Place]:
    """One ``road`` entry per road: at the address nearest the middle of its addresses."""
    by_road: dict[str, list[Place]] = {}
    for place in places:
        if place.road and place.kind != "road":
            by_road.setdefault(place.road, []).append(place)
    out = []
    for road, members in by_road.items():
        lat = sum(p.lat for p in members) / len(members)
        lon = sum(p.lon for p in members) / len(members)
        middle = min(members, key=lambda p: (p.lat - lat) ** 2 + (p.lon - lon) ** 2)
        out.append(_entry(
            place_id("road", road, 0, 0), "road", road, road, road, None, None, None,
            middle.lat, middle.lon, middle.grid, j,
        ))
    return out


# --------------------------------------------------------------------------- files


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or feature number, raw row) from a CSV (UTF-8, with or without BOM; GB18030
    as a fallback) or a GeoJSON FeatureCollection of points."""
    if path.suffix.lower() in (".geojson", ".json"):
        yield from _geojson_rows(json.loads(path.read_text(encoding="utf-8")))
        return
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("gb18030")  # what Excel on a Chinese Windows saves
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames:
        reader.fieldnames = [h.strip().lower() for h in reader.fieldnames]
    for row in reader:
        yield reader.line_num, row


def _geojson_rows(document: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    features = document.get("features") if isinstance(document, dict) else None
    if not isinstance(features, list):
        raise PlaceRejected("不是 GeoJSON FeatureCollection")
    for index, feature in enumerate(features, 1):
        props = dict((feature or {}).get("properties") or {})
        geometry = (feature or {}).get("geometry") or {}
        row = {str(k).strip().lower(): v for k, v in props.items()}
        if geometry.get("type") == "Point" and len(geometry.get("coordinates") or []) >= 2:
            row["lon"], row["lat"] = geometry["coordinates"][:2]
        else:
            row["_geometry"] = geometry.get("type") or "none"
        yield index, row


def count_rows(path: Path) -> int | None:
    """How many rows :func:`read_rows` will give (for a progress bar); None if unknown."""
    if path.suffix.lower() in (".geojson", ".json"):
        return None
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def check_row(raw: Mapping[str, Any], j: Jurisdiction) -> Place:
    if "_geometry" in raw:
        raise PlaceRejected(f"几何类型为 {raw['_geometry']}, 不是 Point")
    return check(raw, j)


Rejection = tuple[int, str, dict[str, Any]]


def check_file(
    path: Path, j: Jurisdiction, on_row: Callable[[int], None] | None = None
) -> tuple[list[Place], list[Rejection]]:
    """Every row of ``path`` checked: the places (with one entry per road) and the rejected
    rows as (line, reason, row); a row with an earlier row's id is a duplicate. ``on_row``
    is called after each row with the number rejected so far (a progress bar)."""
    accepted: list[Place] = []
    rejected: list[Rejection] = []
    seen: dict[str, int] = {}
    for line, raw in read_rows(path):
        try:
            place = check_row(raw, j)
            if place.id in seen:
                raise PlaceRejected(f"与第 {seen[place.id]} 行重复")
            seen[place.id] = line
            accepted.append(place)
        except PlaceRejected as exc:
            rejected.append((line, str(exc), raw))
        if on_row is not None:
            on_row(len(rejected))
    return accepted + roads(accepted, j), rejected


#: The address list a city ships (``deploy/cities/<city>/places.csv``), loaded into an empty
#: list when the box starts (``gridctl up``).
CITY_FILE = "places.csv"


# --------------------------------------------------------------------------- database


async def setup(conn: asyncpg.Connection) -> bool:
    """The table and its prefix indexes; True when substring search (pg_trgm) is available."""
    await conn.execute(DDL)
    try:
        async with conn.transaction():
            await conn.execute(TRGM_DDL)
    except asyncpg.PostgresError:
        return False
    return True


async def store(
    conn: asyncpg.Connection, places: Sequence[Place], *, replace: bool = False
) -> int:
    """Upsert ``places`` (all in one transaction; ``replace`` empties the table first)."""
    async with conn.transaction():
        if replace:
            await conn.execute("TRUNCATE places")
        await conn.execute(
            "CREATE TEMP TABLE places_in (LIKE places) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            "places_in", records=[astuple(p) for p in places], columns=list(COLUMNS)
        )
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "id")
        await conn.execute(
            f"INSERT INTO places SELECT DISTINCT ON (id) * FROM places_in "
            f"ON CONFLICT (id) DO UPDATE SET {updates}"
        )
    return len(places)


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_ASCII = re.compile(r"^[a-z0-9]+$")
#: The last code point: ``key + _LAST`` is above every text that starts with ``key`` (C order).
_LAST = "\U0010ffff"


async def search(conn: asyncpg.Connection, q: str, limit: int = 10) -> list[dict[str, Any]]:
    """Entries whose address or POI name (or their pinyin / initials) start with ``q``; when
    none does, for three characters or more and where pg_trgm exists, those containing it.
    Roads first, then the order of the keys above, shorter keys first within each."""
    key = normalize(q)
    if not key:
        return []
    limit = max(1, min(limit, MAX_RESULTS))
    columns = ["norm", "poi_norm"]
    if _ASCII.match(key):
        columns += ["py", "poi_py", "pinyin"]
    # A prefix as a range (not LIKE $1: a prepared statement's generic plan cannot use an
    # index for a LIKE pattern it does not know), ordered by the key: an index range scan
    # that stops after ``limit`` rows.
    parts = [
        f"(SELECT {PUBLIC_COLUMNS}, {rank} AS rank, {column} AS k FROM places "
        f"WHERE {column} >= $1 AND {column} < $2 ORDER BY {column} LIMIT $3)"
        for rank, column in enumerate(columns)
    ]
    rows = await conn.fetch(" UNION ALL ".join(parts), key, key + _LAST, limit)
    found: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["kind"] != "road", r["rank"], len(r["k"]), r["k"])):
        found.setdefault(row["id"], _public(row))
    if not found and len(key) >= 3 and await _has_trgm(conn):
        more = await conn.fetch(
            f"SELECT {PUBLIC_COLUMNS} FROM places WHERE norm LIKE $1 OR poi_norm LIKE $1 "
            "LIMIT $2",
            "%" + _like(key), limit,
        )
        for row in sorted(more, key=lambda r: len(r["label"])):
            found.setdefault(row["id"], _public(row))
    return list(found.values())[:limit]


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in PUBLIC_COLUMNS.split(", ")}


async def _has_trgm(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'places_poi_trgm_idx' "
        "AND schemaname = current_schema())"
    ))


async def load_city(conn: asyncpg.Connection, j: Jurisdiction, city_dir: Path) -> int:
    """Import the city's shipped list when the address list is empty; the entries stored."""
    path = city_dir / CITY_FILE
    if not path.exists() or await count(conn):
        return 0
    entries, _rejected = check_file(path, j)
    return await store(conn, entries)


async def get(conn: asyncpg.Connection, id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {PUBLIC_COLUMNS} FROM places WHERE id = $1", id)
    return _public(row) if row else None


async def count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM places"))


__all__ = [
    "COLUMNS",
    "KINDS",
    "Place",
    "PlaceRejected",
    "address_of",
    "check",
    "check_file",
    "check_row",
    "count",
    "count_rows",
    "get",
    "load_city",
    "normalize",
    "pinyin_keys",
    "read_rows",
    "roads",
    "search",
    "setup",
    "store",
]
