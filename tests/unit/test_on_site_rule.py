"""核查 on site (issue 17 item 5): pass and fail need a photo and a fix within the category's
radius of the case (or in its grid when it has no point); the event records the fix, the
distance, the radius and the photo's time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from aggregates.case import Case
from aggregates.errors import InvalidCommand
from tests.unit.casekit import CATALOGUE, GRID, JURISDICTION, at, evidence, report, run

METRE = 1 / 111_195  # degrees of latitude


def _awaiting(**report_overrides: object) -> Case:
    case = report(**report_overrides)
    run(case, "file", "dispatcher", 1)
    run(case, "dispatch", "dispatcher", 2)
    run(case, "accept", "handler", 3)
    run(case, "report_result", "handler", 10, note="已清运")
    case.collect_events()
    return case


def _verify(case: Case, verb: str, when: float = 20, **args: object) -> None:
    from tests.unit.casekit import SERVICE, command, loader

    cmd = command(verb, "inspector", when, {"note": "现场", **args}, case_id=case.id,
                  case_no=case.state.case_no, partition=case.state.district)
    SERVICE.execute(cmd, case, loader([]))


def test_a_verification_records_where_and_when_it_was_done() -> None:
    case = _awaiting()
    lat, lon = case.state.lat, case.state.lon
    assert lat is not None and lon is not None
    taken = at(15)
    _verify(case, "verify_pass", **evidence(case, lat=lat + 120 * METRE,
                                            photo_taken_at=taken.isoformat()))
    (event,) = case.collect_events()
    assert type(event).__name__ == "VerificationPassed"
    assert 119 < event.distance_m < 121 and event.radius_m == 200
    assert event.photo_taken_at == taken and event.lat == pytest.approx(lat + 120 * METRE)
    shown = case.state.verification
    assert shown is not None and shown["distance_m"] == event.distance_m
    assert shown["photo_taken_at"].startswith("2026-11-23T01:15")


@pytest.mark.parametrize("verb", ["verify_pass", "verify_fail"])
def test_no_photo_no_fix_or_too_far_is_refused(verb: str) -> None:
    case = _awaiting()
    lat, lon = case.state.lat, case.state.lon
    assert lat is not None and lon is not None
    with pytest.raises(ValidationError):  # no photo
        _verify(case, verb, lat=lat, lon=lon, photos=[])
    with pytest.raises(ValidationError):  # no fix
        _verify(case, verb, photos=evidence(case)["photos"])
    with pytest.raises(InvalidCommand) as far:
        _verify(case, verb, **evidence(case, lat=lat + 250 * METRE))
    assert "250 m" in str(far.value) and "200 m" in str(far.value) and far.value.field == "lat"
    with pytest.raises(InvalidCommand) as future:
        _verify(case, verb, **evidence(case, photo_taken_at=(at(20) + timedelta(hours=1))
                                       .isoformat()))
    assert future.value.field == "photo_taken_at"
    with pytest.raises(InvalidCommand, match="before the case was reported"):
        _verify(case, verb, **evidence(case, photo_taken_at=at(-60).isoformat()))
    assert case.state.status.value == "awaiting_verification" and not case.collect_events()


def test_a_case_without_a_point_is_checked_against_its_grid() -> None:
    case = _awaiting(lat=None, lon=None)
    inside = JURISDICTION.grid(GRID).centroid
    elsewhere = JURISDICTION.grid("520102002001").centroid
    with pytest.raises(InvalidCommand, match="outside the case's grid"):
        _verify(case, "verify_fail", **evidence(case, lat=elsewhere[0], lon=elsewhere[1]))
    _verify(case, "verify_fail", **evidence(case, lat=inside[0], lon=inside[1]))
    (event,) = case.collect_events()
    assert event.distance_m is None and event.rework_number == 1


def test_the_radius_is_set_per_category() -> None:
    assert all(c.verify_radius_m == 200 for c in CATALOGUE.all())  # the default
    from core.catalogue import Catalogue
    from tests.unit.test_catalogue import _category

    strict = Catalogue.from_dict({"version": "t", "categories": [
        _category(verify_radius_m=50)]}).get("SJ9901")
    assert strict.verify_radius_m == 50
