"""The rebuild's reader (``projections.bulk.envelope_of``) gives exactly what the live
projector receives: the relay's envelope (``core.envelope.envelope_from_stored``) after a
trip through ``core.codec`` (NATS) — the folds must not see a difference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given
from hypothesis import strategies as st

from core import codec
from core.envelope import envelope_from_stored
from core.eventstore import FastTranscoder
from projections import queue
from projections.bulk import envelope_of
from tests.unit.casekit import closed_case, report, run

CASE_ID = "12345678-1234-5678-1234-567812345678"
TOPIC = "aggregates.actions.handling:Dispatched"


def _transcoders() -> list[JSONTranscoder]:
    out = []
    for t in (JSONTranscoder(), FastTranscoder()):
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            t.register(transcoding)
        out.append(t)
    return out


def _exact(value: Any) -> Any:
    """Values with their types and a datetime's zone made visible (equal datetimes in other
    zones compare equal)."""
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), repr(value.tzinfo))
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return (type(value).__name__, value)


def _same(state: dict[str, Any], topic: str = TOPIC) -> None:
    for transcoder in _transcoders():
        stored = transcoder.encode(state)
        relayed = envelope_from_stored("520102", 9, UUID(CASE_ID), 3, topic, stored)
        received = codec.loads(codec.dumps(relayed))
        assert _exact(envelope_of("520102", 9, CASE_ID, 3, topic, stored)) == _exact(received)


def test_the_events_of_a_whole_case() -> None:
    case = closed_case()
    for event in case.collect_events():
        state = dict(vars(event))
        topic = f"{type(event).__module__}:{type(event).__qualname__}"
        state.pop("originator_id")
        state.pop("originator_version")
        _same(state, topic)


AT = datetime(2026, 11, 23, 8, 0, 0, 123456, tzinfo=UTC)
CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    "state",
    [
        {"timestamp": AT.astimezone(CST), "due": datetime(2026, 11, 24, 9), "actor": "a"},
        {"timestamp": datetime(2026, 11, 23, 8, tzinfo=UTC), "due": AT},
        {"timestamp": AT, "summary": {"due": AT}, "due": AT},  # a nested typed value
        {"timestamp": AT, "due": AT, "summary": {"due": AT}},
        {"timestamp": AT, "nested": {"when": AT}},
        {"timestamp": AT, "summary": {"timestamp": AT}},  # a nested key of a usual one
        {"summary": {"timestamp": AT}, "timestamp": AT, "due": "text"},
        {"due": "text", "summary": {"due": AT}, "timestamp": AT},
        {"timestamp": AT, "until": AT, "due": AT},  # a typed value of another key
        {"timestamp": AT, "due": None, "until": AT.astimezone(CST)},
        {"timestamp": AT, "x": "_type_"},
        {"_type_": "datetime_iso", "timestamp": AT, "x": {"_type_": 1}},
        {"timestamp": AT, "ref": UUID(CASE_ID), "amount": Decimal("1.50")},
        {"timestamp": AT, 'we"ird': AT, "x": 'text :{"_type_": in a string'},
        {"timestamp": AT, "fake": {"_type_": "datetime_iso", "_data_": "x", "more": 1}},
        {"timestamp": AT, "originator_topic": "aggregates.case:Case", "hash": "h",
         "prev_hash": "", "reason": None, "summary": {"offers": {"handler": ["accept"]}}},
    ],
)
def test_unusual_rows(state: dict[str, Any]) -> None:
    _same(state)


@given(st.dictionaries(
    st.sampled_from(["timestamp", "due", "actor", "summary", "x", "_type_"]),
    st.none() | st.integers() | st.text(max_size=5)
    | st.datetimes(timezones=st.sampled_from([UTC, CST]))
    | st.dictionaries(st.sampled_from(["due", "a"]),
                      st.datetimes(timezones=st.just(UTC)) | st.text(max_size=3), max_size=2),
    max_size=5,
))
def test_random_rows(state: dict[str, Any]) -> None:
    _same(state)


def test_the_queue_fold_gives_the_live_records() -> None:
    """``queue.fold_event`` (in place, times as text) and ``apply_event`` (a copy per event,
    times parsed) give the same records after every event of a case, and the live fold does
    not change the row it was given."""
    case = report(lat=26.58713789, lon=106.71347)
    for when, verb in enumerate(["file", "dispatch", "accept", "report_result"], start=1):
        role = "handler" if verb in ("accept", "report_result") else "dispatcher"
        if verb == "report_result":
            run(case, verb, role, when, note="已处置")
        else:
            run(case, verb, role, when)
    transcoder = _transcoders()[0]
    live: dict[str, Any] | None = None
    folded: dict[str, Any] | None = None
    for position, event in enumerate(case.collect_events(), start=1):
        state = dict(vars(event))
        case_id = str(state.pop("originator_id"))
        version = state.pop("originator_version")
        topic = f"{type(event).__module__}:{type(event).__qualname__}"
        env = envelope_of("520102", position, case_id, version, topic, transcoder.encode(state))
        before = None if live is None else dict(live)
        after = queue.apply_event(live, env)
        assert live == before
        live = after
        folded = queue.fold_event(folded, env)
        assert live is not None and folded is not None
        assert _exact(queue._record(folded)) == _exact(queue._record(live))
    assert queue.fold_event(None, {**env, "type": "Filed"}) is None
