"""The auditor's fast path reads stored rows without eventsourcing: its decoding and canonical
JSON must give exactly the bytes ``aggregates.integrity`` hashes, or verification would raise
false alarms (or miss real ones)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given
from hypothesis import strategies as st

from aggregates.integrity import canonical_json, event_hash, iso_utc
from projections.audit import rows
from projections.audit.chain import fast_link, link
from projections.audit.rows import UndecodableEvent, canonical_bytes, decode_state, digest

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_bytes_equal_the_reference(value: Any) -> None:
    assert canonical_bytes(value) == canonical_json(value)


@pytest.mark.parametrize(
    "x",
    [1e-05, -2.5e-07, 5.960464477539063e-08, 1e16, 1.7976931348623157e308, 5e-324, 0.0001,
     -0.0, 123456.789],
)
def test_canonical_bytes_floats_at_the_edges(x: float) -> None:
    assert canonical_bytes(x) == canonical_json(x)  # a bare number too
    assert canonical_bytes([x]) == canonical_json([x])
    assert canonical_bytes({"x": x, "s": "a,0.00001"}) == canonical_json({"x": x,
                                                                          "s": "a,0.00001"})


def _transcoder() -> JSONTranscoder:
    t = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        t.register(transcoding)
    return t


def test_decoded_state_hashes_like_the_event_object() -> None:
    cst = timezone(timedelta(hours=8))
    at = datetime(2026, 11, 23, 10, 0, 0, tzinfo=cst)
    fields = {
        "actor": "u-1", "role": "dispatcher", "channel": "web", "reason": None,
        "note": "井蓋缺失\n\"quoted\"", "due": datetime(2026, 11, 24, 9, 30, 0, 500, tzinfo=UTC),
        "ref": UUID("12345678-1234-5678-1234-567812345678"), "hours": 7.0, "lat": 26.58713789,
        "nested": {"when": at, "list": [at, 1, "x"]},
    }
    case_id = "12345678-1234-5678-1234-567812345678"
    expected = event_hash("", case_id, 1, "Filed", at, fields)
    stored = _transcoder().encode({"timestamp": at, **fields, "prev_hash": "", "hash": expected})
    state = decode_state(stored)
    assert state["timestamp"] == iso_utc(at) and state["ref"] == case_id
    payload = {k: v for k, v in state.items() if k not in ("timestamp", "prev_hash", "hash")}
    assert digest("", case_id, 1, "Filed", state["timestamp"], payload) == expected


def test_non_json_constants_are_refused() -> None:
    with pytest.raises(UndecodableEvent):
        decode_state(b'{"hours": NaN}')
    with pytest.raises(UndecodableEvent):
        decode_state(b'{"x": {"_type_": "pickle", "_data_": "..."}}')
    with pytest.raises(UndecodableEvent):
        decode_state(b"[1, 2]")


@given(st.text(alphabet="0123456789", min_size=1, max_size=8), st.integers(1, 10**9),
       st.integers(1, 500))
def test_fast_link_equals_link(partition: str, position: int, version: int) -> None:
    case_id = "12345678-1234-5678-1234-567812345678"
    h = "ab" * 32
    assert fast_link("cd" * 32, partition, position, case_id, version, h) == link(
        "cd" * 32, partition, position, case_id, version, h)


def test_chain_link_is_the_documented_bytes() -> None:
    import hashlib

    text = ('{"case":"12345678-1234-5678-1234-567812345678","hash":"' + "ab" * 32
            + '","partition":"520102","position":17,"prev":"","v":3}')
    assert link("", "520102", 17, "12345678-1234-5678-1234-567812345678", 3, "ab" * 32) == \
        hashlib.sha256(text.encode()).hexdigest()
    assert json.loads(text)["position"] == 17


# --- the fast decoding (orjson) gives what the stdlib decoding gives -----------------------

_REFERENCE = json.JSONDecoder(object_hook=rows._hook, parse_constant=rows._no_constants)

_stored_states = st.dictionaries(
    st.sampled_from(["a", "b", "_type_", "_data_", "hours", "at"]),
    json_values
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: {"_type_": "datetime_iso",
                                                          "_data_": d.isoformat()})
    | st.uuids().map(lambda u: {"_type_": "uuid_hex", "_data_": u.hex})
    | st.uuids().map(lambda u: {"nested": [{"_type_": "uuid_hex", "_data_": u.hex}]}),
    max_size=6,
)


@given(_stored_states)
def test_fast_decode_state_equals_the_stdlib_way(state: dict[str, Any]) -> None:
    stored = json.dumps(state, ensure_ascii=False).encode()
    try:
        expected = _REFERENCE.decode(stored.decode())
    except (ValueError, TypeError, AttributeError):
        with pytest.raises(UndecodableEvent):
            decode_state(stored)
        return
    decoded = decode_state(stored)
    assert decoded == expected
    assert json.dumps(decoded) == json.dumps(expected)  # ints stay ints (no 1e+29 floats)


@pytest.mark.parametrize(
    "stored",
    [b'{"n": 123456789012345678901234567890}', b'{"n": -9223372036854775809}',
     b'{"s": "\\ud800"}', b'{"t": {"_type_": "datetime_iso", "_data_": 5}}',
     b'{"t": {"_type_": "uuid_hex", "_data_": "0123456789abcdef0123456789abcdef", "x": 1}}'],
)
def test_what_orjson_reads_differently_goes_the_stdlib_way(stored: bytes) -> None:
    try:
        expected: Any = _REFERENCE.decode(stored.decode())
    except (ValueError, TypeError, AttributeError):
        expected = UndecodableEvent
    if expected is UndecodableEvent:
        with pytest.raises(UndecodableEvent):
            decode_state(stored)
    else:
        assert json.dumps(decode_state(stored)) == json.dumps(expected)


@given(json_values)
def test_risky_numbers_are_found_as_before(value: Any) -> None:
    out = json.dumps(value).encode()
    assert rows._risky(out) == (rows._RISKY_NUMBER.search(out) is not None)
    for text in (b"1e5", b"-0.00001", b'{"a":[1,2e-7]}', b'{"a":"x,1e5"}', b'{"a":1}'):
        assert rows._risky(text) == (rows._RISKY_NUMBER.search(text) is not None)


def test_history_decodes_a_stored_event_as_the_mapper_does() -> None:
    from eventsourcing.persistence import StoredEvent

    from aggregates.case import Case
    from projections.audit import history
    from tests.unit.casekit import closed_case, replay

    case = closed_case()
    events = list(case.collect_events())
    mapper = history._MAPPER
    for number, event in enumerate(events, 1):
        stored = mapper.to_stored_event(event)
        record = (number, str(stored.originator_id), stored.originator_version, stored.topic,
                  stored.state)
        fast = history._domain_event(record)
        slow = mapper.to_domain_event(
            StoredEvent(stored.originator_id, stored.originator_version, stored.topic,
                        stored.state)
        )
        assert type(fast) is type(slow) and vars(fast) == vars(slow)
        assert {k: type(v) for k, v in vars(fast).items()} == {
            k: type(v) for k, v in vars(slow).items()
        }
    assert isinstance(replay(events), Case)


@pytest.mark.parametrize(
    "extra",
    [{}, {"nested": {"when": datetime(2026, 11, 23, 8, tzinfo=UTC)}},
     {"ref": UUID("12345678-1234-5678-1234-567812345678"), "amount": Decimal("1.50")},
     {"odd": {"_type_": "datetime_iso", "x": 1}}, {"n": 10**30}],
)
def test_history_decodes_unusual_rows_as_the_mapper_does(extra: dict[str, Any]) -> None:
    from eventsourcing.persistence import StoredEvent

    from projections.audit import history

    at = datetime(2026, 11, 23, 8, 0, 0, 5, tzinfo=UTC)
    state = {"timestamp": at, "actor": "a", "due": at, **extra}
    data = _transcoder().encode(state)
    topic = "aggregates.actions.intake:Filed"
    fast = history._domain_event((1, "12345678-1234-5678-1234-567812345678", 2, topic, data))
    slow = history._MAPPER.to_domain_event(
        StoredEvent(UUID("12345678-1234-5678-1234-567812345678"), 2, topic, data)
    )
    assert vars(fast) == vars(slow)
    assert {k: type(v) for k, v in vars(fast).items()} == {
        k: type(v) for k, v in vars(slow).items()
    }
