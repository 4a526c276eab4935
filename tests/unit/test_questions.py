"""Questions per category (issue 17 item 6): the catalogue's rules for extra questions, how
answers are checked, and that a report records them (the aggregate takes a report missing a
required answer — intake asks for it — but never an invalid one)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aggregates.errors import InvalidCommand
from core.catalogue import AnswerError, Catalogue, CatalogueError
from tests.unit.casekit import CATALOGUE, report, report_args
from tests.unit.test_catalogue import SHIPPED, _category


def _with(questions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "t", "categories": [_category(questions=questions)]}


def _q(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"code": "depth", "type": "number", "text": {"zh-Hans": "深度"}}
    return {**base, **over}


YESNO = [{"code": "a", "text": {"zh-Hans": "甲"}}, {"code": "b", "text": {"zh-Hans": "乙"}}]


@pytest.mark.parametrize(
    ("question", "words"),
    [
        (_q(text={"en": "depth"}), "zh-Hans"),
        (_q(type="choice"), "at least two choices"),
        (_q(choices=YESNO), "only choice questions"),
        (_q(type="choice", choices=[YESNO[0], YESNO[0]]), "duplicate choice"),
        (_q(min=5, max=1), "min is above max"),
        (_q(type="text", unit="cm"), "for numbers"),
        (_q(code="Depth"), "code"),
        (_q(type="colour"), "type"),
    ],
)
def test_the_catalogue_refuses_a_bad_question(question: dict[str, Any], words: str) -> None:
    with pytest.raises(CatalogueError) as refused:
        Catalogue.from_dict(_with([question]))
    assert words in str(refused.value) and "SJ9901" in str(refused.value)


def test_duplicate_question_codes_are_refused() -> None:
    with pytest.raises(CatalogueError, match="duplicate question code depth"):
        Catalogue.from_dict(_with([_q(), _q(type="text")]))


def test_answers_are_checked_and_recorded_in_their_own_form() -> None:
    questions = [
        _q(required=True, min=0, max=300, unit="cm"),
        _q(code="blocked", type="boolean"),
        _q(code="kind", type="choice", choices=YESNO),
        _q(code="many", type="multi_choice", choices=YESNO),
        _q(code="note", type="text"),
        _q(code="day", type="date"),
    ]
    category = Catalogue.from_dict(_with(questions)).get("SJ9901")
    # Form text (Open311 attribute[...] values) and JSON values both work.
    assert category.check_answers(
        {"depth": "12", "blocked": "是", "kind": "b", "many": "b,a,b", "note": " 路口 ",
         "day": "2026-11-23T10:00:00+08:00"},
        complete=True,
    ) == {"depth": 12, "blocked": True, "kind": "b", "many": ["a", "b"], "note": "路口",
          "day": "2026-11-23"}
    assert category.check_answers({"depth": 2.5, "many": ["a"]}, complete=True) == {
        "depth": 2.5, "many": ["a"]
    }
    refusals = [
        ({"blocked": True}, "depth", "required"),
        ({"depth": "deep"}, "depth", "number"),
        ({"depth": 301}, "depth", "at most 300"),
        ({"depth": True}, "depth", "number"),
        ({"depth": 1, "kind": "c"}, "kind", "one of a, b"),
        ({"depth": 1, "many": "a,z"}, "many", "unknown choice z"),
        ({"depth": 1, "blocked": "maybe"}, "blocked", "true or false"),
        ({"depth": 1, "day": "tomorrow"}, "day", "YYYY-MM-DD"),
        ({"depth": 1, "note": "x" * 501}, "note", "500"),
        ({"depth": 1, "colour": "red"}, "colour", "asks no question"),
    ]
    for answers, question, words in refusals:
        with pytest.raises(AnswerError) as refused:
            category.check_answers(answers, complete=True)
        assert refused.value.question == question and words in str(refused.value), answers
    # Without ``complete`` a missing required answer is fine (a report queued earlier).
    assert category.check_answers({}, complete=False) == {}
    assert category.check_answers(category.example_answers(), complete=True) == {"depth": 0}


def test_the_shipped_catalogue_asks_a_few_categories_questions() -> None:
    shipped = Catalogue.load(SHIPPED)
    asking = {c.code: c for c in shipped.all() if c.questions}
    assert {"SJ0101", "SJ0404", "SJ0504"} <= set(asking)
    depth = asking["SJ0404"].questions[0]
    assert depth.required and depth.type == "number" and depth.unit == "cm"
    assert set(depth.text) == {"zh-Hans", "zh-Hant", "en"}
    for category in shipped.all():
        assert category.verify_radius_m == 200  # the default
        for question in category.questions:
            assert question.text["zh-Hans"] and all(c.text["zh-Hans"] for c in question.choices)


def test_a_report_records_its_checked_answers_and_refuses_invalid_ones() -> None:
    case = report(category="SJ0404", answers={"depth_cm": "35", "traffic_blocked": "true"},
                  media_url="https://example.org/p.jpg")
    (event,) = case.collect_events()
    assert event.answers == {"depth_cm": 35, "traffic_blocked": True}
    assert event.media_url == "https://example.org/p.jpg"
    assert case.state.answers == {"depth_cm": 35, "traffic_blocked": True}
    # Missing required answers are intake's business; the aggregate takes the report.
    assert report(category="SJ0404").state.answers == {}
    with pytest.raises(InvalidCommand) as refused:
        report(category="SJ0404", answers={"depth_cm": "deep"})
    assert refused.value.field == "answers.depth_cm"
    with pytest.raises(InvalidCommand):
        report(**report_args(answers={"volume": "lorry"}))  # SJ0101's choices


def test_an_event_recorded_before_questions_existed_reads_as_no_answers() -> None:
    case = report()
    (event,) = case.collect_events()
    old = copy.copy(event)
    del old.__dict__["answers"], old.__dict__["media_url"]
    assert old.answers is None and old.media_url is None  # the class defaults
    assert CATALOGUE.get("SJ0101").questions  # the sample category asks, optionally
