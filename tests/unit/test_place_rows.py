"""Standard addresses (issue 17 item 2), the pure part: search keys (normal form, pinyin
initials and full pinyin), the check of each imported row with its rejection reason, CSV and
GeoJSON files, one entry per road, and the sample city's generated list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import places
from gateways.cli_places import generate
from tests.unit.casekit import GRID, JURISDICTION, ROOT

LAT, LON = JURISDICTION.grid(GRID).centroid


def test_search_keys() -> None:
    assert places.normalize(" 中华北路 １２号 ") == "中华北路12号"
    assert places.normalize("Guiyang No.1 Middle-School") == "guiyangno1middleschool"
    assert places.pinyin_keys("中华北路", "12号") == ("zhonghuabeilu12hao", "zhbl12h")
    assert places.pinyin_keys("中华北路", None, "3栋") == ("zhonghuabeilu3dong", "zhbl3d")
    assert places.address_of("中华北路", "12", "3栋") == "中华北路12号3栋"
    assert places.address_of("中华北路", "12-1", None) == "中华北路12-1"
    assert places.address_of(None, None, None) is None


def test_a_row_becomes_a_place_in_its_grid() -> None:
    place = places.check(
        {"road": "中华北路", "number": "12", "building": "", "poi": "省人民医院",
         "lat": str(LAT), "lon": str(LON)}, JURISDICTION)
    assert place.kind == "poi" and place.grid == GRID
    assert place.label == "省人民医院（中华北路12号）" and place.address == "中华北路12号"
    assert (place.norm, place.py, place.poi_py) == ("中华北路12号", "zhbl12h", "srmyy")
    assert place.community == JURISDICTION.grid(GRID).parent
    assert place.district == JURISDICTION.partition_of(GRID)
    # Chinese headers work too; the same row gives the same id.
    same = places.check({"道路": "中华北路", "门牌号": "12", "名称": "省人民医院",
                         "纬度": LAT, "经度": LON}, JURISDICTION)
    assert same.id == place.id
    poi_only = places.check({"poi": "黔灵山公园", "lat": LAT, "lon": LON}, JURISDICTION)
    assert poi_only.address is None and poi_only.py == "qlsgy" and poi_only.norm == "黔灵山公园"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"number": "1", "lat": LAT, "lon": LON}, "既无道路也无兴趣点"),
        ({"poi": "x", "number": "1", "lat": LAT, "lon": LON}, "有门牌号或楼栋但无道路"),
        ({"road": "中华北路", "lon": LON}, "缺少 lat"),
        ({"road": "中华北路", "lat": "北纬26", "lon": LON}, "lat 不是数字"),
        ({"road": "中华北路", "lat": "nan", "lon": LON}, "lat 不是有限数值"),
        ({"road": "中华北路", "lat": 95, "lon": LON}, "不是有效的纬度"),
        ({"road": "中华北路", "lat": 39.9, "lon": 116.4}, "不在贵阳市范围内"),
        ({"road": "路" * 101, "lat": LAT, "lon": LON}, "road 超过 100 个字符"),
    ],
)
def test_a_bad_row_is_rejected_with_its_reason(row: dict[str, object], reason: str) -> None:
    with pytest.raises(places.PlaceRejected, match=reason):
        places.check(row, JURISDICTION)


def test_files_report_rejected_rows_and_add_roads(tmp_path: Path) -> None:
    csv_file = tmp_path / "addresses.csv"
    csv_file.write_text(
        "道路,门牌号,楼栋,名称,纬度,经度\n"
        f"中华北路,1,,,{LAT},{LON}\n"
        f"中华北路,3,,,{LAT + 0.0005},{LON}\n"
        f"中华北路,1,,,{LAT},{LON}\n"  # the first row again
        f",,,,{LAT},{LON}\n"
        "中华北路,5,,,39.9,116.4\n",
        encoding="utf-8-sig",
    )
    assert places.count_rows(csv_file) == 5
    seen: list[int] = []
    entries, rejected = places.check_file(csv_file, JURISDICTION, seen.append)
    assert seen == [0, 0, 1, 2, 3]
    assert [(line, reason.split(" (")[0]) for line, reason, _ in rejected] == [
        (4, "与第 2 行重复"), (5, "既无道路也无兴趣点名称"),
        (6, "(39.9, 116.4) 不在贵阳市范围内"),
    ]
    assert sorted(e.kind for e in entries) == ["address", "address", "road"]
    road = next(e for e in entries if e.kind == "road")
    assert road.label == "中华北路" and road.py == "zhbl" and road.grid == GRID

    gbk = tmp_path / "excel.csv"  # what Excel on a Chinese Windows saves
    gbk.write_bytes(f"road,number,lat,lon\n延安东路,8,{LAT},{LON}\n".encode("gb18030"))
    assert [e.label for e in places.check_file(gbk, JURISDICTION)[0]] == ["延安东路8号", "延安东路"]

    geojson = tmp_path / "addresses.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"poi": "甲秀楼"},
         "geometry": {"type": "Point", "coordinates": [LON, LAT]}},
        {"type": "Feature", "properties": {"road": "x"},
         "geometry": {"type": "LineString", "coordinates": [[LON, LAT], [LON, LAT + 1]]}},
    ]}), encoding="utf-8")
    entries, rejected = places.check_file(geojson, JURISDICTION)
    assert [e.label for e in entries] == ["甲秀楼"]
    assert rejected[0][:2] == (2, "几何类型为 LineString, 不是 Point")
    not_geojson = tmp_path / "bad.geojson"
    not_geojson.write_text("[]", encoding="utf-8")
    with pytest.raises(places.PlaceRejected):
        places.check_file(not_geojson, JURISDICTION)


def test_the_sample_city_ships_its_addresses_consistent_with_its_grids() -> None:
    shipped = ROOT / "deploy" / "cities" / "guiyang" / places.CITY_FILE
    entries, rejected = places.check_file(shipped, JURISDICTION)
    assert rejected == []
    addresses = [e for e in entries if e.kind != "road"]
    assert len(addresses) >= 5000
    assert len({e.grid for e in addresses}) >= 0.9 * len(JURISDICTION.grids)  # all over town
    assert any(e.label == "中华北路" and e.kind == "road" for e in entries)
    assert sum(1 for e in addresses if e.poi) > 100
    # Generation is deterministic: the shipped file is what ``gridctl places sample`` makes.
    rows = generate(JURISDICTION, 4000)
    assert len(rows) == len(addresses)
    first = rows[0]
    assert JURISDICTION.locate(first["lat"], first["lon"]) is not None
