"""Generate the sample cities ``guiyang/city.json`` and ``changsha-mini/city.json``.

Why a script: 84 hand-drawn polygons would never tile exactly, and a reviewer cannot check a
2,000-line JSON file by eye. The script lays each district out as a lattice of quads whose
interior vertices are shifted a little (seeded ``random.Random``, so every run writes the same
bytes), which makes neighbouring grids share their edges exactly: no gaps, no overlaps.
Communities are blocks of lattice cells, districts are rectangles side by side.

Codes follow DOMAIN.md: 6-digit GB/T 2260 district + 3 digits per level below it, numbered
west→east along a row, rows north→south (so ``…001`` is the north-west corner).

    python deploy/cities/generate.py           # rewrite the JSON files
    python deploy/cities/generate.py --check   # exit 1 if the committed files are stale

Both modes then load each file with ``core.jurisdiction`` to prove it validates.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

ZH_NUMERALS = "一二三四五六七八九十"

#: Per function: (zh, en) name of the city- and district-level department.
#: The traffic and public-security units are police bodies, named as such.
CITY_DEPARTMENTS: dict[str, tuple[str, str]] = {
    "sanitation": ("环境卫生管理局", "Environmental Sanitation Bureau"),
    "municipal": ("市政工程管理局", "Municipal Works Bureau"),
    "greening": ("园林绿化局", "Landscaping and Greening Bureau"),
    "urban_management": ("城市管理局", "Urban Management Bureau"),
    "housing": ("住房和城乡建设局", "Housing and Urban-Rural Development Bureau"),
    "water": ("水务管理局", "Water Affairs Bureau"),
    "traffic": ("公安局交通管理局", "Traffic Police Bureau"),
    "public_security": ("公安局", "Public Security Bureau"),
    "market": ("市场监督管理局", "Market Regulation Administration"),
    "civil_affairs": ("民政局", "Civil Affairs Bureau"),
    "mediation": ("司法局", "Justice Bureau (Mediation)"),
    "emergency": ("应急管理局", "Emergency Management Bureau"),
    "environment": ("生态环境局", "Ecology and Environment Bureau"),
    "community_service": ("社区服务指导中心", "Community Service Guidance Centre"),
}
DISTRICT_DEPARTMENTS: dict[str, tuple[str, str]] = {
    **CITY_DEPARTMENTS,
    "sanitation": ("环卫局", "Sanitation Bureau"),
    "municipal": ("市政管理局", "Municipal Works Bureau"),
    "urban_management": ("城管执法局", "Urban Management Enforcement Bureau"),
    "traffic": ("交警大队", "Traffic Police Brigade"),
    "public_security": ("公安分局", "Public Security Sub-bureau"),
    "environment": ("生态环境分局", "Ecology and Environment Sub-bureau"),
}
#: The two units every community has (DOMAIN.md / brief): (suffix, zh, en, functions).
COMMUNITY_DEPARTMENTS: list[tuple[str, str, str, list[str]]] = [
    (
        "station",
        "网格工作站",
        "Grid Work Station",
        ["community_service", "civil_affairs", "mediation", "sanitation"],
    ),
    ("public_security", "警务室", "Police Room", ["public_security"]),
]
#: Street (街道) units in a four-level city.
STREET_DEPARTMENTS: list[tuple[str, str, str, list[str]]] = [
    (
        "enforcement",
        "综合行政执法大队",
        "Comprehensive Enforcement Team",
        ["urban_management", "municipal", "greening"],
    ),
    (
        "governance",
        "综治中心",
        "Social Governance Centre",
        ["mediation", "civil_affairs", "emergency"],
    ),
    ("public_security", "派出所", "Police Station", ["public_security"]),
]


@dataclass(frozen=True)
class Box:
    """A district's rectangle in degrees."""

    west: float
    north: float
    east: float
    south: float


def lattice(box: Box, cols: int, rows: int, rng: random.Random) -> list[list[tuple[float, float]]]:
    """Vertices ``v[row][col]`` (row 0 = north) of a cols×rows lattice over ``box``.

    Interior vertices move by up to 20 % of a cell in each axis: enough to look drawn by hand,
    and small enough that every quad stays convex (each corner's turn keeps its sign when
    every vertex stays within 0.2 of its cell corner). Edge vertices stay on the rectangle so
    neighbouring districts meet along straight lines."""
    dx = (box.east - box.west) / cols
    dy = (box.north - box.south) / rows
    grid: list[list[tuple[float, float]]] = []
    for j in range(rows + 1):
        row = []
        for i in range(cols + 1):
            lon = box.west + dx * i
            lat = box.north - dy * j
            if 0 < i < cols and 0 < j < rows:
                lon += rng.uniform(-0.2, 0.2) * dx
                lat += rng.uniform(-0.2, 0.2) * dy
            row.append((round(lon, 6), round(lat, 6)))
        grid.append(row)
    return grid


def quad(v: list[list[tuple[float, float]]], col: int, row: int) -> list[list[float]]:
    """Cell ``(col, row)`` as an open ring NW, NE, SE, SW."""
    corners = [v[row][col], v[row][col + 1], v[row + 1][col + 1], v[row + 1][col]]
    return [[lon, lat] for lon, lat in corners]


def grid_record(
    code: str, parent: str, zh: str, en: str, n: int, ring: list[list[float]], rng: random.Random
) -> dict[str, Any]:
    return {
        "code": code,
        "name_zh": f"{zh}第{ZH_NUMERALS[n - 1]}网格",
        "name_en": f"{en} Grid {n}",
        "parent": parent,
        "polygon": ring,
        "team": {
            "inspector": f"insp-{code}",
            "instructor": f"inst-{code}",
            "police": f"pol-{code}",
        },
        "households": rng.randint(300, 500),
    }


def full_departments(
    node: str, zh: str, en: str, table: dict[str, tuple[str, str]]
) -> list[dict[str, Any]]:
    """One department per function at ``node`` (cities and districts have a full set)."""
    return [
        {
            "code": f"D-{node}-{function}",
            "name_zh": f"{zh}{dzh}",
            "name_en": f"{en} {den}",
            "node": node,
            "functions": [function],
        }
        for function, (dzh, den) in table.items()
    ]


def unit_departments(
    node: str, zh: str, en: str, units: list[tuple[str, str, str, list[str]]]
) -> list[dict[str, Any]]:
    return [
        {
            "code": f"D-{node}-{suffix}",
            "name_zh": f"{zh}{uzh}",
            "name_en": f"{en} {uen}",
            "node": node,
            "functions": functions,
        }
        for suffix, uzh, uen, functions in units
    ]


# --------------------------------------------------------------------------- Guiyang

#: (code, zh, en, box, community columns, community rows, communities [(zh, en)]).
#: Communities are numbered west→east, north→south inside their district; each community is
#: a block of 3×2 grids. Names are real or real-sounding Guiyang new-type communities.
GUIYANG_DISTRICTS: list[tuple[str, str, str, Box, int, int, list[tuple[str, str]]]] = [
    (
        "520102",
        "南明区",
        "Nanming",
        Box(106.64, 26.60, 106.80, 26.50),
        2,
        2,
        [
            ("新华社区", "Xinhua"),
            ("油榨社区", "Youzha"),
            ("花果园社区", "Huaguoyuan"),
            ("太慈社区", "Taici"),
        ],
    ),
    (
        "520103",
        "云岩区",
        "Yunyan",
        Box(106.64, 26.70, 106.80, 26.60),
        2,
        2,
        [
            ("黔灵社区", "Qianling"),
            ("市西社区", "Shixi"),
            ("威清社区", "Weiqing"),
            ("北京路社区", "Beijinglu"),
        ],
    ),
    (
        "520111",
        "花溪区",
        "Huaxi",
        Box(106.55, 26.50, 106.80, 26.40),
        3,
        1,
        [("溪北社区", "Xibei"), ("贵筑社区", "Guizhu"), ("清溪社区", "Qingxi")],
    ),
    (
        "520115",
        "观山湖区",
        "Guanshanhu",
        Box(106.55, 26.70, 106.64, 26.50),
        1,
        3,
        [("世纪城社区", "Shijicheng"), ("金华园社区", "Jinhuayuan"), ("会展社区", "Huizhan")],
    ),
]


def guiyang() -> dict[str, Any]:
    rng = random.Random(520100)
    city, city_zh, city_en = "520100", "贵阳市", "Guiyang"
    nodes: list[dict[str, Any]] = []
    grids: list[dict[str, Any]] = []
    departments = full_departments(city, city_zh, city_en, CITY_DEPARTMENTS)
    for code, zh, en, box, ccols, crows, communities in GUIYANG_DISTRICTS:
        assert len(communities) == ccols * crows
        nodes.append(
            {
                "code": code,
                "name_zh": zh,
                "name_en": f"{en} District",
                "level": "district",
                "parent": city,
            }
        )
        departments += full_departments(code, zh, f"{en} District", DISTRICT_DEPARTMENTS)
        v = lattice(box, 3 * ccols, 2 * crows, rng)
        for c, (czh, cen) in enumerate(communities):
            ccode = f"{code}{c + 1:03d}"
            ci, cj = c % ccols, c // ccols
            nodes.append(
                {
                    "code": ccode,
                    "name_zh": czh,
                    "name_en": f"{cen} Community",
                    "level": "community",
                    "parent": code,
                }
            )
            departments += unit_departments(ccode, czh, f"{cen} Community", COMMUNITY_DEPARTMENTS)
            for g in range(6):
                gi, gj = g % 3, g // 3
                ring = quad(v, 3 * ci + gi, 2 * cj + gj)
                gcode = f"{ccode}{g + 1:03d}"
                grids.append(grid_record(gcode, ccode, czh, cen, g + 1, ring, rng))
    return {
        "version": 1,
        "note": "Sample city modelled on Guiyang. Generated by deploy/cities/generate.py; "
        "edit the script, not this file.",
        "city": {"code": city, "name_zh": city_zh, "name_en": city_en},
        "code_scheme": "gbt2260",
        "levels": [
            {"key": "city", "name_zh": "市", "name_en": "City", "command": True},
            {"key": "district", "name_zh": "区", "name_en": "District", "command": True},
            {"key": "community", "name_zh": "社区", "name_en": "Community", "command": True},
            {"key": "grid", "name_zh": "网格", "name_en": "Grid", "command": False},
        ],
        "nodes": nodes,
        "grids": grids,
        "departments": departments,
        # No tile server on the sample box: the generated street and landmark layer
        # (`gridctl basemap sample`, docs/basemap.md). A real city names its XYZ/WMTS source.
        "basemap": {
            "kind": "vector",
            "vector": "basemap.geojson",
            "attribution": "示例城市离线底图（生成数据，非真实道路）",
            "min_zoom": 9,
            "max_zoom": 18,
            "crs": "wgs84",
        },
    }


# --------------------------------------------------------------------------- Changsha (mini)

#: (code, zh, en, box, streets [(zh, en, communities [(zh, en)])]). Streets west→east, the two
#: communities of a street north→south, the two grids of a community west→east.
CHANGSHA_DISTRICTS: list[
    tuple[str, str, str, Box, list[tuple[str, str, list[tuple[str, str]]]]]
] = [
    (
        "430102",
        "芙蓉区",
        "Furong",
        Box(112.975, 28.205, 113.015, 28.185),
        [
            (
                "定王台街道",
                "Dingwangtai",
                [("樊西巷社区", "Fanxixiang"), ("晏家塘社区", "Yanjiatang")],
            ),
            ("文艺路街道", "Wenyilu", [("识字岭社区", "Shiziling"), ("八一路社区", "Bayilu")]),
        ],
    ),
    (
        "430103",
        "天心区",
        "Tianxin",
        Box(112.975, 28.185, 113.015, 28.165),
        [
            ("坡子街街道", "Pozijie", [("坝子街社区", "Bazijie"), ("西牌楼社区", "Xipailou")]),
            (
                "城南路街道",
                "Chengnanlu",
                [("天心阁社区", "Tianxinge"), ("白沙井社区", "Baishajing")],
            ),
        ],
    ),
]


def changsha_mini() -> dict[str, Any]:
    rng = random.Random(430100)
    city, city_zh, city_en = "430100", "长沙市", "Changsha"
    nodes: list[dict[str, Any]] = []
    grids: list[dict[str, Any]] = []
    departments = full_departments(city, city_zh, city_en, CITY_DEPARTMENTS)
    for code, zh, en, box, streets in CHANGSHA_DISTRICTS:
        nodes.append(
            {
                "code": code,
                "name_zh": zh,
                "name_en": f"{en} District",
                "level": "district",
                "parent": city,
            }
        )
        departments += full_departments(code, zh, f"{en} District", DISTRICT_DEPARTMENTS)
        v = lattice(box, 4, 2, rng)
        for s, (szh, sen, communities) in enumerate(streets):
            scode = f"{code}{s + 1:03d}"
            nodes.append(
                {
                    "code": scode,
                    "name_zh": szh,
                    "name_en": f"{sen} Street",
                    "level": "street",
                    "parent": code,
                }
            )
            departments += unit_departments(scode, szh, f"{sen} Street", STREET_DEPARTMENTS)
            for c, (czh, cen) in enumerate(communities):
                ccode = f"{scode}{c + 1:03d}"
                nodes.append(
                    {
                        "code": ccode,
                        "name_zh": czh,
                        "name_en": f"{cen} Community",
                        "level": "community",
                        "parent": scode,
                    }
                )
                departments += unit_departments(
                    ccode, czh, f"{cen} Community", COMMUNITY_DEPARTMENTS
                )
                for g in range(2):
                    ring = quad(v, 2 * s + g, c)
                    gcode = f"{ccode}{g + 1:03d}"
                    grids.append(grid_record(gcode, ccode, czh, cen, g + 1, ring, rng))
    return {
        "version": 1,
        "note": "Small four-level sample modelled on Changsha. Generated by "
        "deploy/cities/generate.py; edit the script, not this file.",
        "city": {"code": city, "name_zh": city_zh, "name_en": city_en},
        "code_scheme": "gbt2260",
        "levels": [
            {"key": "city", "name_zh": "市", "name_en": "City", "command": True},
            {"key": "district", "name_zh": "区", "name_en": "District", "command": True},
            {"key": "street", "name_zh": "街道", "name_en": "Street", "command": True},
            {"key": "community", "name_zh": "社区", "name_en": "Community", "command": True},
            {"key": "grid", "name_zh": "网格", "name_en": "Grid", "command": False},
        ],
        "nodes": nodes,
        "grids": grids,
        "departments": departments,
    }


# --------------------------------------------------------------------------- output

CITIES = {"guiyang": guiyang, "changsha-mini": changsha_mini}


def render(doc: dict[str, Any]) -> str:
    """JSON with one record per line: diffs show which grid or department changed, and the
    file stays small enough to read."""
    lines = ["{"]
    items = list(doc.items())
    for n, (key, value) in enumerate(items):
        comma = "," if n < len(items) - 1 else ""
        if isinstance(value, list):
            body = ",\n".join(f"    {json.dumps(v, ensure_ascii=False)}" for v in value)
            lines.append(f'  "{key}": [\n{body}\n  ]{comma}')
        else:
            lines.append(f'  "{key}": {json.dumps(value, ensure_ascii=False)}{comma}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from core.jurisdiction import FUNCTIONS, Jurisdiction

    assert set(CITY_DEPARTMENTS) == set(FUNCTIONS), "department table out of step with FUNCTIONS"
    stale = []
    for name, build in CITIES.items():
        path = HERE / name / "city.json"
        text = render(build())
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        jurisdiction = Jurisdiction.from_dict(json.loads(text), source=str(path))
        print(f"{'checked' if args.check else 'wrote'} {path.relative_to(REPO)}: {jurisdiction!r}")
    if stale:
        print("out of date (run deploy/cities/generate.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
