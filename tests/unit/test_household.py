"""The household aggregate (issue 18): its registry, hash chain, visit deadlines on the
working-time calendar, the visit → case link, and the coverage metric's definition.

Pure: the real Guiyang reference data and visit schedules, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pydantic import ValidationError

from aggregates import deadlines
from aggregates.errors import InvalidCommand, NotPermitted
from aggregates.households import (
    HOUSEHOLD_ACTIONS,
    Household,
    HouseholdContext,
    household_id_for_key,
    household_no_for_id,
    verify_chain,
)
from aggregates.households.actions import need_key
from aggregates.households.coverage import VisitDeadline, coverage
from aggregates.households.coverage import deadlines as deadlines_of
from aggregates.households.schedule import light
from core.ids import case_no_for_key
from core.visits import VisitSchedules
from core.vocabulary import CARE_FLAGS, SENSITIVE_CARE_FLAGS, terms
from tests.unit.casekit import CALENDAR, CATALOGUE, CATEGORY, GRID, JURISDICTION, ROOT, T0

SCHEDULES = VisitSchedules.load(ROOT / "deploy" / "cities" / "guiyang")


def ctx(command_id: str, at: datetime, role: str = "inspector") -> HouseholdContext:
    return HouseholdContext("insp-1", role, "inspector_app", at, command_id, SCHEDULES,
                            CALENDAR, JURISDICTION, CATALOGUE)


def run(h: Household, action: str, args: dict[str, Any], command_id: str, at: datetime,
        role: str = "inspector") -> bool:
    spec = HOUSEHOLD_ACTIONS[action]
    return h.execute(action, spec.args.model_validate(args), ctx(command_id, at, role))


def new(key: str = "hh-1", flags: list[dict[str, str]] | None = None,
        at: datetime = T0) -> Household:
    hid = household_id_for_key(key)
    h = Household(str(hid))
    run(h, "register", {"household_no": household_no_for_id(hid), "grid": GRID,
                        "address": "新华路 1 号 3 单元 201",
                        "members": [{"name": "张三", "relation": "户主", "phone": "13800000000"}],
                        "flags": flags or []}, f"{key}:register", at)
    return h


def test_vocabulary_and_schedules_cover_every_flag() -> None:
    labels = {t["value"]: t["label"] for t in terms()["care_flags"]}
    assert labels["elderly_alone"] == "孤寡老人" and labels["hardship"] == "困难"
    assert set(labels) == set(CARE_FLAGS) and set(CARE_FLAGS) > SENSITIVE_CARE_FLAGS
    assert SCHEDULES.of("elderly_alone").every == 5  # weekly, from the city's file
    with pytest.raises(ValueError, match="missing flags"):
        VisitSchedules.parse('{"version": 1, "schedules": {"hardship": '
                             '{"every": 1, "unit": "days", "label_zh": "每天"}}}')


def test_register_flag_visit_and_chain() -> None:
    h = new(flags=[{"flag": "hardship", "reason": "低保户"}])
    s = h.state
    assert (s.grid, s.community, s.district) == (GRID, "520102001", "520102")
    assert s.inspector == JURISDICTION.grid(GRID).team.inspector  # the grid's by default
    # Monthly (22 working days) from Monday 09:00: the working calendar decides the due.
    hardship = SCHEDULES.of("hardship")
    assert s.due == CALENDAR.add(T0, hardship.hours(CALENDAR), "working")
    assert s.due_flag == "hardship"
    # 孤寡老人 is weekly: setting it shortens the deadline (same start).
    assert run(h, "set_flag", {"flag": "elderly_alone", "reason": "独居"}, "c2",
               T0 + timedelta(hours=1))
    assert h.state.due == CALENDAR.add(T0, 35, "working") and h.state.due_flag == "elderly_alone"
    local = h.state.due.astimezone(CALENDAR.tz)
    assert (local.weekday(), local.hour, local.minute) == (4, 17, 30)  # Friday, end of day
    # A visit restarts the clock and raises a need that becomes a case (its number derived
    # from the command id: the gateway's report uses the same key).
    visit_at = T0 + timedelta(days=2)
    assert run(h, "record_visit", {"findings": "老人身体尚可，暖气坏了", "photo_consent": False,
                                   "needs": [{"category": CATEGORY, "description": "暖气维修"}]},
               "v1", visit_at)
    assert h.state.last_visit_at == visit_at
    assert h.state.due == CALENDAR.add(visit_at, 35, "working")
    case_no = case_no_for_key(need_key("v1", 0))
    assert h.state.cases[0]["case_no"] == case_no and h.state.visits[0]["case_nos"] == [case_no]
    # Idempotent: the same command id again records nothing.
    assert not run(h, "record_visit", {"findings": "again"}, "v1", visit_at)
    # Lifting every flag stops the clock; history keeps the reasons and dates.
    run(h, "lift_flag", {"flag": "hardship", "reason": "已脱困"}, "c4", visit_at)
    run(h, "lift_flag", {"flag": "elderly_alone", "reason": "子女接回"}, "c5", visit_at)
    assert h.state.due is None and not h.state.flags
    assert [(x["flag"], x["change"]) for x in h.state.flag_history] == [
        ("hardship", "set"), ("elderly_alone", "set"), ("hardship", "lifted"),
        ("elderly_alone", "lifted")]
    events = h.collect()
    assert [e.version for e in events] == [1, 2, 3, 4, 5]
    assert verify_chain(events) is None
    replayed = Household.replay(events)
    assert replayed is not None and replayed.state == h.state
    # Tampering with any stored fact breaks the chain there.
    bad = list(events)
    bad[2] = type(bad[2])(**{**bad[2].__dict__, "data": {**bad[2].data, "findings": "改过"}})
    assert verify_chain(bad) == 3
    assert verify_chain([events[0], events[2]]) == 3


def test_refusals() -> None:
    h = new()
    with pytest.raises(NotPermitted):
        run(h, "set_flag", {"flag": "dispute", "reason": "x"}, "r1", T0, role="dispatcher")
    with pytest.raises(NotPermitted):
        run(h, "record_visit", {"findings": "x"}, "r1", T0, role="system")
    with pytest.raises(InvalidCommand):
        run(h, "lift_flag", {"flag": "dispute", "reason": "x"}, "r2", T0)
    with pytest.raises(InvalidCommand, match="earlier"):
        run(h, "set_flag", {"flag": "dispute", "reason": "x"}, "r3", T0 - timedelta(1))
    with pytest.raises(InvalidCommand, match="category"):
        run(h, "record_visit", {"findings": "x", "needs": [{"category": "NOPE",
                                                            "description": "y"}]}, "r4", T0)
    with pytest.raises(ValidationError, match="consent"):
        HOUSEHOLD_ACTIONS["record_visit"].args.model_validate(
            {"findings": "x", "photo": {"digest": "sha256:" + "0" * 64, "size": 1,
                                        "content_type": "image/jpeg"}})
    with pytest.raises(ValidationError):  # unknown fields are refused, never dropped
        HOUSEHOLD_ACTIONS["assign"].args.model_validate({"inspector": "a", "typo": 1})
    with pytest.raises(InvalidCommand, match="already registered"):
        run(h, "register", {"household_no": "x", "grid": GRID, "address": "a"}, "r5", T0)


EXAMPLES: dict[str, dict[str, Any]] = {
    "update_details": {"address": "新地址", "address_code": "A1", "members": [], "reason": "迁"},
    "assign": {"inspector": "insp-2", "party_member": "党员李四", "reason": "调整"},
    "set_flag": {"flag": "dispute", "reason": "邻里纠纷"},
    "lift_flag": {"flag": "dispute", "reason": "已调解"},
    "record_visit": {"findings": "好", "location": "门口", "lat": 26.59, "lon": 106.65,
                     "photo_consent": True, "party_member_present": True,
                     "photo": {"digest": "sha256:" + "a" * 64, "size": 10,
                               "content_type": "image/jpeg"},
                     "needs": [{"category": CATEGORY, "description": "d"}],
                     "visited_at": "2026-11-23T03:00:00+00:00"},
    "raise_need": {"category": CATEGORY, "description": "电话反映"},
    "archive": {"reason": "迁出"},
}


def test_every_argument_is_recorded_by_name() -> None:
    assert set(EXAMPLES) | {"register"} == set(HOUSEHOLD_ACTIONS)
    h = new()
    at = T0 + timedelta(hours=2)
    for i, (name, args) in enumerate(EXAMPLES.items()):
        run(h, name, args, f"e{i}", at)
    events = h.collect()
    for event in events[1:]:
        spec = next(s for s in HOUSEHOLD_ACTIONS.values() if s.event == event.type)
        sent = spec.args.model_validate(EXAMPLES[spec.name]).model_dump(mode="json")
        for key in sent:
            assert key in event.data, (spec.name, key)
    assert {s.name for s in HOUSEHOLD_ACTIONS.values() if "system" in s.roles} >= {"register"}


def test_light_follows_the_case_rules() -> None:
    h = new(flags=[{"flag": "elderly_alone", "reason": "独居"}])
    s = h.state
    assert s.due is not None and s.due_started_at is not None
    yellow = deadlines.warning_at(T0, s.due, "working", CALENDAR)
    lit = [light(s.due, s.due_started_at, s.due_flag, now, SCHEDULES, CALENDAR)
           for now in (T0, yellow - timedelta(seconds=1), yellow, s.due, s.due + timedelta(1))]
    assert lit == ["green", "green", "yellow", "red", "red"]
    assert light(None, None, None, T0, SCHEDULES, CALENDAR) == "none"


def test_coverage_definition() -> None:
    d = [
        VisitDeadline(T0, T0 + timedelta(days=7), met_at=T0 + timedelta(days=3)),  # on time
        VisitDeadline(T0, T0 + timedelta(days=7), met_at=T0 + timedelta(days=9)),  # late
        VisitDeadline(T0, T0 + timedelta(days=7), replaced_at=T0 + timedelta(days=1)),  # gone
        VisitDeadline(T0, T0 + timedelta(days=7), replaced_at=T0 + timedelta(days=8)),  # missed
        VisitDeadline(T0, T0 + timedelta(days=7)),  # running: missed once due
    ]
    now = T0 + timedelta(days=10)
    assert coverage(d, T0, now, now) == (1, 4)
    assert coverage(d, T0, now, T0 + timedelta(days=5)) == (1, 1)


# --------------------------------------------------------------------------- properties

FLAGS = st.sampled_from(CARE_FLAGS)


class HouseholdHistory(RuleBasedStateMachine):
    """Random histories: replay gives the same state, the chain holds, the deadline is
    running exactly while a flag is set, and visits on time are what coverage counts."""

    @initialize()
    def start(self) -> None:
        self.h = new("prop")
        self.at = T0
        self.n = 0
        self.visits: list[tuple[datetime, datetime | None]] = []

    def _tick(self, hours: float) -> datetime:
        self.at = self.at + timedelta(hours=hours)
        self.n += 1
        return self.at

    @rule(flag=FLAGS, hours=st.floats(0, 200))
    def set_flag(self, flag: str, hours: float) -> None:
        at = self._tick(hours)
        if flag in self.h.state.flags:
            with pytest.raises(InvalidCommand):
                run(self.h, "set_flag", {"flag": flag, "reason": "r"}, f"p{self.n}", at)
        else:
            run(self.h, "set_flag", {"flag": flag, "reason": "r"}, f"p{self.n}", at)

    @rule(flag=FLAGS, hours=st.floats(0, 200))
    def lift_flag(self, flag: str, hours: float) -> None:
        at = self._tick(hours)
        if flag in self.h.state.flags:
            run(self.h, "lift_flag", {"flag": flag, "reason": "r"}, f"p{self.n}", at)

    @rule(hours=st.floats(0, 400))
    def visit(self, hours: float) -> None:
        due = self.h.state.due
        at = self._tick(hours)
        run(self.h, "record_visit", {"findings": "f"}, f"p{self.n}", at)
        self.visits.append((at, due))

    @invariant()
    def deadline_runs_while_flagged(self) -> None:
        s = self.h.state
        assert (s.due is None) == (not s.flags)
        if s.due is not None:
            assert s.due_started_at is not None and s.due > s.due_started_at
            assert s.due_flag in s.flags
            expected = min(CALENDAR.add(s.due_started_at, SCHEDULES.of(f).hours(CALENDAR),
                                        SCHEDULES.of(f).clock) for f in s.flags)
            assert s.due == expected

    @invariant()
    def replay_and_chain(self) -> None:
        events = list(self._events())
        assert verify_chain(events) is None
        replayed = Household.replay(events)
        assert replayed is not None and replayed.state == self.h.state
        # Coverage counts exactly the visits made while a deadline ran, on or before it.
        far = self.at + timedelta(days=3650)
        on_time, _due = coverage(deadlines_of(events), T0 - timedelta(1), far, far)
        assert on_time == sum(1 for at, due in self.visits if due is not None and at <= due)

    def _events(self) -> list[Any]:
        self.__dict__.setdefault("stored", [])
        self.stored.extend(self.h.collect())
        return list(self.stored)


TestHouseholdHistory = HouseholdHistory.TestCase
