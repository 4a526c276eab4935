"""Triage against the real sample cities (Guiyang, three levels; Changsha, four levels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregates.triage import NO_DEPARTMENT, Proposal, propose, route_for_level
from core.catalogue import PRIORITY_RANK, Catalogue, Category, Priority, priority_max
from core.jurisdiction import Jurisdiction, UnknownCode

ROOT = Path(__file__).resolve().parents[2]
GUIYANG_DIR = ROOT / "deploy" / "cities" / "guiyang"
CHANGSHA_DIR = ROOT / "deploy" / "cities" / "changsha-mini"

GRID = "520102001001"  # 南明區 / 新華社區, first grid
OTHER_GRID = "520115003006"  # 觀山湖區 / 會展社區


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(ROOT / "deploy" / "categories.v1.json")


@pytest.fixture(scope="module")
def guiyang() -> Jurisdiction:
    return Jurisdiction.load(GUIYANG_DIR)


@pytest.fixture(scope="module")
def changsha() -> Jurisdiction:
    return Jurisdiction.load(CHANGSHA_DIR)


def _guiyang_without(predicate: Any) -> Jurisdiction:
    """The Guiyang config minus the departments ``predicate`` selects (a real Jurisdiction)."""
    data = json.loads((GUIYANG_DIR / "city.json").read_text(encoding="utf-8"))
    data["departments"] = [d for d in data["departments"] if not predicate(d)]
    return Jurisdiction.from_dict(data, source="guiyang-trimmed")


# ---- routing --------------------------------------------------------------------------------


def test_exposed_garbage_goes_to_the_district_sanitation_bureau(
    catalogue: Catalogue, guiyang: Jurisdiction
) -> None:
    proposal = propose(catalogue.get("SJ0101"), GRID, "路口有一堆暴露垃圾", guiyang)
    assert proposal == Proposal(
        department="D-520102-sanitation",
        level="district",
        node="520102",
        priority="ordinary",
        reasons=proposal.reasons,
    )
    assert any("default of category SJ0101" in r for r in proposal.reasons)
    other = propose(catalogue.get("SJ0101"), OTHER_GRID, "", guiyang)
    assert (other.department, other.node) == ("D-520115-sanitation", "520115")


def test_community_categories_stay_in_the_community(
    catalogue: Catalogue, guiyang: Jurisdiction
) -> None:
    dispute = propose(catalogue.get("ZL0101"), GRID, "樓上樓下因漏水吵架", guiyang)
    assert (dispute.department, dispute.level, dispute.node) == (
        "D-520102001-station",
        "community",
        "520102001",
    )
    visit = propose(catalogue.get("ZL0306"), "520103002001", "定期走訪", guiyang)
    assert (visit.department, visit.node) == ("D-520103002-station", "520103002")


def test_walks_up_when_the_community_has_no_such_department(
    catalogue: Catalogue, guiyang: Jurisdiction
) -> None:
    # 物業糾紛 is a community matter handled by "housing"; Guiyang communities have none.
    proposal = propose(catalogue.get("ZL0103"), GRID, "物業收費爭議", guiyang)
    assert (proposal.department, proposal.level, proposal.node) == (
        "D-520102-housing",
        "district",
        "520102",
    )
    assert any("no housing department at community node 520102001" in r for r in proposal.reasons)
    fire_lane = propose(catalogue.get("ZL0201"), GRID, "消防通道被雜物堵住", guiyang)
    assert fire_lane.department == "D-520102-emergency"


def test_walks_up_to_the_city_and_reports_when_nobody_is_found(catalogue: Catalogue) -> None:
    trimmed = _guiyang_without(lambda d: d["code"] == "D-520102-sanitation")
    proposal = propose(catalogue.get("SJ0101"), GRID, "", trimmed)
    assert (proposal.department, proposal.level, proposal.node) == (
        "D-520100-sanitation",
        "city",
        "520100",
    )
    assert any("walked up to city" in r for r in proposal.reasons)

    nobody = _guiyang_without(lambda d: "market" in d["functions"])
    category = catalogue.get("SJ0101").model_copy(update={"department_function": "market"})
    orphan = propose(category, GRID, "", nobody)
    assert orphan.department == NO_DEPARTMENT == ""
    assert (orphan.level, orphan.node) == ("district", "520102")
    assert "dispatcher must choose" in orphan.reasons[-1]


def test_four_level_city_walks_through_the_street(
    catalogue: Catalogue, changsha: Jurisdiction
) -> None:
    grid = next(iter(changsha.grids))
    community = changsha.command_node(grid, "community").code
    street = changsha.command_node(grid, "street").code
    fire_lane = propose(catalogue.get("ZL0201"), grid, "", changsha)  # emergency: street office
    assert (fire_lane.level, fire_lane.node) == ("street", street)
    assert fire_lane.department == f"D-{street}-governance"
    housing = propose(catalogue.get("ZL0103"), grid, "", changsha)  # housing: district
    assert housing.level == "district"
    assert sum("walked up" in r for r in housing.reasons) == 2
    visit = propose(catalogue.get("ZL0301"), grid, "", changsha)
    assert (visit.level, visit.node) == ("community", community)


def test_every_shipped_category_routes_in_both_sample_cities(
    catalogue: Catalogue, guiyang: Jurisdiction, changsha: Jurisdiction
) -> None:
    for city in (guiyang, changsha):
        for grid in list(city.grids)[:: max(1, len(city.grids) // 7)]:
            for category in catalogue.all():
                proposal = propose(category, grid, "", city)
                department = city.department(proposal.department)
                assert category.department_function in department.functions
                assert department.node == proposal.node
                assert city.contains(proposal.node, grid)
                assert city.node(proposal.node).level == proposal.level
                assert proposal.priority == category.default_priority


def test_unknown_grid_is_refused(catalogue: Catalogue, guiyang: Jurisdiction) -> None:
    with pytest.raises(UnknownCode):
        propose(catalogue.get("SJ0101"), "999999999999", "", guiyang)


# ---- escalation -----------------------------------------------------------------------------


def test_route_for_level_after_escalation(catalogue: Catalogue, guiyang: Jurisdiction) -> None:
    garbage = catalogue.get("SJ0101")
    up = route_for_level(garbage, GRID, "city", guiyang, priority="important")
    assert (up.department, up.level, up.node, up.priority) == (
        "D-520100-sanitation",
        "city",
        "520100",
        "important",
    )
    assert any("requested (category default district)" in r for r in up.reasons)
    # The case's priority is kept, even below the category default (a dispatcher's override).
    gas = catalogue.get("SJ0403")
    kept = route_for_level(gas, GRID, "district", guiyang, priority="important")
    assert kept.priority == "important"
    assert route_for_level(gas, GRID, "district", guiyang).priority == "urgent"
    community_first = route_for_level(garbage, GRID, "community", guiyang)
    assert (community_first.level, community_first.department) == (
        "community",
        "D-520102001-station",
    )


# ---- priority -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "description", "expected"),
    [
        ("BJ0101", "上水井蓋丟失，路人險些掉進去", "urgent"),
        ("BJ0101", "上水井盖丢失", "urgent"),  # simplified Chinese
        ("BJ0101", "Manhole cover MISSING on Zunyi Road", "urgent"),
        ("BJ0101", "井蓋鬆動，車過有響聲", "important"),
        ("BJ0101", "The cover is loose", "important"),
        ("BJ0101", "井蓋上有油漆", "ordinary"),
        ("BJ0101", "破損而且丟失", "urgent"),  # the highest matching level wins
        ("SJ0403", "有燃氣味", "urgent"),  # default urgent stays urgent
        ("SJ0301", "發現一處違建", "important"),  # default important is never lowered
        ("SJ0301", "正在施工，連夜搶建", "urgent"),
        ("ZL0306", "老人摔倒了", "urgent"),
        ("ZL0306", "Mr Li fell ill last week", "important"),
        ("ZL0306", "illegally parked car outside", "ordinary"),  # "ill" is a whole word only
        ("ZL0201", "fire lane blocked by bikes", "important"),  # "fire lane" is not "on fire"
        ("ZL0201", "the bins are on fire in the fire lane", "urgent"),
        ("ZL0102", "疑似家暴", "urgent"),
    ],
)
def test_keywords_raise_priority(
    catalogue: Catalogue, guiyang: Jurisdiction, code: str, description: str, expected: str
) -> None:
    category = catalogue.get(code)
    proposal = propose(category, GRID, description, guiyang)
    assert proposal.priority == expected
    raised = PRIORITY_RANK[proposal.priority] < PRIORITY_RANK[category.default_priority]
    assert raised == any("priority raised" in r for r in proposal.reasons)


def _all_keywords(catalogue: Catalogue) -> list[tuple[Category, Priority, str]]:
    return [
        (category, priority, keyword)
        for category in catalogue.all()
        for priority, words in category.keywords.items()
        for keyword in words
    ]


@given(data=st.data())
def test_priority_is_the_max_of_default_and_matched_keywords(
    catalogue: Catalogue, guiyang: Jurisdiction, data: st.DataObject
) -> None:
    category = data.draw(st.sampled_from(catalogue.all()))
    words = [(p, k) for p, ks in category.keywords.items() for k in ks]
    chosen = data.draw(st.lists(st.sampled_from(words), max_size=3)) if words else []
    filler = data.draw(st.sampled_from(["", "現場 ", "please check. ", "附近 "]))
    description = filler + " ， ".join(k.upper() for _, k in chosen)
    proposal = propose(category, GRID, description, guiyang)
    expected = priority_max(category.default_priority, *(p for p, _ in chosen))
    # At least as pressing as every chosen keyword and the default (a chosen word may contain
    # a more pressing keyword, so "at least", not "equal").
    assert PRIORITY_RANK[proposal.priority] <= PRIORITY_RANK[expected]
    if not chosen:
        assert proposal.priority == category.default_priority


def test_proposal_round_trips_through_json(catalogue: Catalogue, guiyang: Jurisdiction) -> None:
    proposal = propose(catalogue.get("BJ0105"), GRID, "路燈漏電", guiyang)
    stored = json.loads(json.dumps(proposal.model_dump(), ensure_ascii=False))
    assert Proposal.model_validate(stored) == proposal
    assert stored["priority"] == "urgent" and stored["department"] == "D-520102-municipal"


def test_every_keyword_of_the_catalogue_fires_on_its_own(
    catalogue: Catalogue, guiyang: Jurisdiction
) -> None:
    for category, priority, keyword in _all_keywords(catalogue):
        proposal = propose(category, GRID, f"現場反映：{keyword}。", guiyang)
        expected = priority_max(category.default_priority, priority)
        assert PRIORITY_RANK[proposal.priority] <= PRIORITY_RANK[expected], (category.code, keyword)
