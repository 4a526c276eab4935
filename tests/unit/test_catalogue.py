"""The category catalogue: the shipped file, every refusal at load, lookups and search."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.catalogue import (
    DEPARTMENT_FUNCTIONS,
    PRIORITIES,
    Catalogue,
    CatalogueError,
    UnknownCategory,
    priority_max,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "categories.v1.json"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(SHIPPED)


def _limits(u: float = 2, i: float = 8, o: float = 24) -> dict[str, dict[str, float]]:
    return {
        p: {"file": 1, "dispatch": 0.5, "handle": h, "verify": 2}
        for p, h in (("urgent", u), ("important", i), ("ordinary", o))
    }


def _category(code: str = "SJ9901", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "code": code,
        "name_zh": "测试类别",
        "name_en": "Test category",
        "kind": "event",
        "group_zh": "其他",
        "group_en": "Other",
        "filing_conditions": ["有照片 (photo)"],
        "closure_conditions": ["已处理 (handled)"],
        "department_function": "sanitation",
        "level": "district",
        "default_priority": "ordinary",
        "limits": _limits(),
        "clock": "working",
        "keywords": {"urgent": ["紧急"], "important": [], "ordinary": []},
        "escalate_after_overdue_hours": 8,
    }
    data.update(overrides)
    return data


def _write(tmp_path: Path, categories: list[dict[str, Any]], version: str = "t.1") -> Path:
    path = tmp_path / "categories.json"
    path.write_text(
        json.dumps({"version": version, "categories": categories}, ensure_ascii=False),
        encoding="utf-8",
    )
    return path


# ---- the shipped catalogue ------------------------------------------------------------------


def test_shipped_catalogue_loads_with_enough_categories_of_every_kind(catalogue: Catalogue) -> None:
    assert catalogue.version == "2026.1"
    kinds = Counter(c.kind for c in catalogue.all())
    assert len(catalogue) >= 30
    assert set(kinds) == {"component", "event", "governance"}
    assert kinds["component"] >= 10 and kinds["event"] >= 15 and kinds["governance"] >= 10


def test_shipped_catalogue_covers_all_six_must_visit_households(catalogue: Catalogue) -> None:
    visits = [c for c in catalogue.all() if c.group_zh == "六必访"]
    households = ["困难家庭", "矛盾纠纷户", "失业人员", "重病患者", "刑满释放", "独居老人"]
    for household in households:
        matches = [c for c in visits if household in c.name_zh]
        assert len(matches) == 1, household
    correction = next(c for c in visits if "刑满释放" in c.name_zh)
    assert "社区矫正" in correction.name_zh
    assert len(visits) == 6
    for visit in visits:
        assert visit.kind == "governance"
        assert visit.level == "community"
        assert visit.department_function in {"civil_affairs", "mediation"}


def test_shipped_catalogue_uses_only_the_jurisdiction_function_tags(catalogue: Catalogue) -> None:
    from core.jurisdiction import FUNCTIONS

    assert set(FUNCTIONS) == DEPARTMENT_FUNCTIONS
    assert {c.department_function for c in catalogue.all()} <= set(FUNCTIONS)


def test_shipped_limits_follow_the_local_tables(catalogue: Catalogue) -> None:
    exposed = catalogue.get("SJ0101")
    assert exposed.name_zh == "暴露垃圾"
    assert (exposed.clock, exposed.limits["ordinary"].handle) == ("working", 4)
    road = catalogue.get("SJ0103")
    assert road.name_zh == "道路不洁" and road.limits["ordinary"].handle == 2
    illegal = catalogue.get("SJ0301")
    assert illegal.name_zh == "违法建设"
    assert illegal.limits["urgent"].handle == illegal.limits["important"].handle == 4
    assert illegal.limits["ordinary"].handle == 49  # 7 working days of 7 working hours
    for code in ("SJ0402", "SJ0403", "SJ0401"):  # missing cover, gas leak, road collapse
        assert catalogue.get(code).default_priority == "urgent"
        assert catalogue.get(code).clock == "natural"
    cover = catalogue.get("BJ0101")
    assert [cover.limits[p].handle for p in PRIORITIES] == [2, 7, 21]  # 2 h, 1 and 3 days
    for category in catalogue.all():
        for priority in PRIORITIES:
            steps = category.limits[priority]
            assert 0 < steps.file <= 2 and 0 < steps.dispatch <= 1, category.code
        handles = [category.limits[p].handle for p in PRIORITIES]
        assert handles == sorted(handles), category.code


def test_shipped_components_and_events_are_named_in_both_languages(catalogue: Catalogue) -> None:
    names = {c.name_zh for c in catalogue.all()}
    for expected in ("上水井盖", "雨水篦子", "路灯", "消防栓", "公交站亭", "垃圾箱", "交通标志牌",
                     "护栏", "隔离墩", "公厕", "广告牌", "行道树", "绿地", "积存垃圾渣土",
                     "乱堆物堆料", "非法小广告", "施工扰民", "路面塌陷", "井盖丢失", "燃气泄漏",
                     "积水内涝", "无照经营游商", "店外经营", "占道经营", "机动车乱停放",
                     "邻里纠纷", "家庭纠纷", "消防通道堵塞", "危房", "居民诉求"):  # fmt: skip
        assert expected in names
    for category in catalogue.all():
        assert category.name_en.strip() and category.filing_conditions
        assert (
            category.code[:2]
            == {"component": "BJ", "event": "SJ", "governance": "ZL"}[category.kind]
        )


# ---- refusals at load -----------------------------------------------------------------------


def _without(data: dict[str, Any], *path: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


def _set(data: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown function", _category(department_function="fire_brigade"),
     ["SJ9901", "department_function", "fire_brigade"]),
    ("unknown level", _category(level="street"), ["SJ9901", "level", "street"]),
    ("missing priority limits", _without(_category(), "limits", "important"),
     ["SJ9901", "limits", "important"]),
    ("zero limit", _set(_category(), 0, "limits", "urgent", "dispatch"),
     ["SJ9901", "limits.urgent.dispatch", "greater than 0"]),
    ("negative limit", _set(_category(), -4, "limits", "ordinary", "handle"),
     ["SJ9901", "limits.ordinary.handle", "greater than 0"]),
    ("urgent handle longer than ordinary", _category(limits=_limits(30, 30, 24)),
     ["SJ9901", "limits", "urgent"]),
    ("important handle longer than ordinary", _category(limits=_limits(2, 30, 24)),
     ["SJ9901", "limits", "important"]),
    ("empty zh name", _category(name_zh=""), ["SJ9901", "name_zh", "empty"]),
    ("blank en name", _category(name_en="   "), ["SJ9901", "name_en", "empty"]),
    ("no filing conditions", _category(filing_conditions=[]), ["SJ9901", "filing_conditions"]),
    ("unknown priority key", _set(_category(), ["x"], "keywords", "critical"),
     ["SJ9901", "keywords.critical"]),
    ("misspelt field", _category(closure_condition=["x"]), ["SJ9901", "closure_condition"]),
    ("unknown kind", _category(kind="incident"), ["SJ9901", "kind"]),
    ("unknown clock", _category(clock="lunar"), ["SJ9901", "clock"]),
    ("non-positive escalation margin", _category(escalate_after_overdue_hours=0),
     ["SJ9901", "escalate_after_overdue_hours"]),
    ("negative extensions", _category(max_extensions=-1), ["SJ9901", "max_extensions"]),
    ("code with spaces", _category(code="SJ 99"), ["'SJ 99'", "code"]),
    ("missing limits", _without(_category(), "limits"), ["SJ9901", "limits", "required"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "expected"), [(b, e) for _, b, e in INVALID], ids=[name for name, _, _ in INVALID]
)
def test_invalid_category_is_refused_naming_category_and_field(
    tmp_path: Path, bad: dict[str, Any], expected: list[str]
) -> None:
    path = _write(tmp_path, [_category("SJ9900"), bad])
    with pytest.raises(CatalogueError) as refused:
        Catalogue.load(path)
    message = str(refused.value)
    for fragment in expected:
        assert fragment in message
    assert "entry 1" in message


def test_duplicate_code_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [_category("SJ9901"), _category("SJ9902"), _category("SJ9901")])
    with pytest.raises(CatalogueError, match=r"'SJ9901' \(entry 2\): field code: duplicate code"):
        Catalogue.load(path)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"categories": []}, "version"),
        ({"version": "", "categories": []}, "version"),
        ({"version": "1", "categories": {}}, "categories"),
        ({"version": "1", "categories": [], "extra": 1}, "extra"),
        ([], "(category)"),
    ],
)
def test_malformed_document_is_refused(tmp_path: Path, document: Any, fragment: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(CatalogueError) as refused:
        Catalogue.load(path)
    assert fragment in str(refused.value)
    assert str(path) in str(refused.value)


def test_unreadable_or_invalid_json_is_a_catalogue_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        Catalogue.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": "1", "categories": [', encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid JSON"):
        Catalogue.load(broken)


def test_levels_can_be_configured_for_a_four_level_city(tmp_path: Path) -> None:
    path = _write(tmp_path, [_category(level="street")])
    assert (
        Catalogue.load(path, levels=("community", "street", "district", "city")).get("SJ9901").level
        == "street"
    )


@given(st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0, 24.0, 56.0]), min_size=3, max_size=3))
def test_handle_limits_accepted_exactly_when_ordered(handles: list[float]) -> None:
    urgent, important, ordinary = handles
    document = {"version": "1", "categories": [_category(limits=_limits(*handles))]}
    if urgent <= important <= ordinary:
        loaded = Catalogue.from_dict(document).get("SJ9901")
        assert [loaded.limits[p].handle for p in PRIORITIES] == handles
    else:
        with pytest.raises(CatalogueError, match=r"SJ9901.*field limits"):
            Catalogue.from_dict(document)


# ---- lookups --------------------------------------------------------------------------------


def test_get_contains_and_all(catalogue: Catalogue) -> None:
    assert catalogue.get("BJ0105").name_en == "Street lamp"
    assert "BJ0105" in catalogue and "XX0000" not in catalogue and 42 not in catalogue
    with pytest.raises(UnknownCategory) as missing:
        catalogue.get("XX0000")
    assert isinstance(missing.value, KeyError)
    assert str(missing.value) == "unknown category code 'XX0000'"
    codes = [c.code for c in catalogue.all()]
    assert len(codes) == len(set(codes)) == len(catalogue)
    catalogue.all().clear()  # a copy: callers cannot empty the catalogue
    assert len(catalogue.all()) == len(codes)


def test_categories_are_read_only(catalogue: Catalogue) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        catalogue.get("BJ0105").level = "city"  # type: ignore[misc]


def test_search_in_chinese_english_and_simplified(catalogue: Catalogue) -> None:
    covers = [c.code for c in catalogue.search("井盖")]
    assert covers[:3] == ["BJ0101", "BJ0102", "BJ0103"] and "SJ0402" in covers
    assert [c.code for c in catalogue.search("井蓋")] == covers  # traditional spelling (aliases)
    assert catalogue.search("上水井蓋")[0].code == "BJ0101"  # the former zh-Hant name
    assert catalogue.search("暴露垃圾")[0].code == "SJ0101"
    assert catalogue.search("STREET LAMP")[0].code == "BJ0105"
    assert catalogue.search("路灯")[0].code == "BJ0105"
    assert catalogue.search("bj0105")[0].code == "BJ0105"
    assert catalogue.search("红绿灯")[0].code == "BJ0205"  # alias
    assert {c.code for c in catalogue.search("六必访")} == {f"ZL030{i}" for i in range(1, 7)}
    assert catalogue.search("no such thing at all") == []
    assert len(catalogue.search("  ")) == len(catalogue)


def test_search_ranks_names_before_keyword_hits(catalogue: Catalogue) -> None:
    results = [c.code for c in catalogue.search("消防通道")]
    assert results[0] == "ZL0201"  # the name, before categories that list it as a keyword
    assert "SJ0504" in results[1:]


def test_priority_max_picks_the_most_pressing() -> None:
    assert priority_max("ordinary", "urgent", "important") == "urgent"
    assert priority_max("ordinary") == "ordinary"
    assert priority_max("ordinary", "important") == "important"
