"""Tamper evidence (哈希鏈): canonical JSON is stable and the hash is the documented one.

Why these tests: an outside auditor recomputes the chain with its own code from the module
docstring of `aggregates.integrity`; a hand-written byte string and a plain hashlib call pin
the algorithm so a refactor cannot silently change every stored hash.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregates.integrity import GENESIS, canonical_json, event_hash, iso_utc

CST = timezone(timedelta(hours=8))  # China Standard Time 北京時間
CASE_ID = UUID("12345678-1234-5678-1234-567812345678")


def test_canonical_json_exact_bytes() -> None:
    obj = {
        "z": 1,
        "a": [1.5, 2.0, True, None, "井蓋"],
        "t": datetime(2024, 5, 1, 8, 30, tzinfo=CST),
        "id": CASE_ID,
        "tu": (1, "x"),
        "m": {"b": 'q"uote\n', "a": -3},
    }
    expected = (
        '{"a":[1.5,2.0,true,null,"井蓋"],"id":"12345678-1234-5678-1234-567812345678",'
        '"m":{"a":-3,"b":"q\\"uote\\n"},"t":"2024-05-01T00:30:00.000000Z","tu":[1,"x"],"z":1}'
    ).encode()
    assert canonical_json(obj) == expected


def test_canonical_json_ignores_insertion_order_and_zone() -> None:
    a = {"x": 1, "y": {"p": 2, "q": datetime(2024, 1, 1, 8, tzinfo=CST)}}
    b = {"y": {"q": datetime(2024, 1, 1, 0, tzinfo=UTC), "p": 2}, "x": 1}
    assert canonical_json(a) == canonical_json(b)


def test_datetimes_always_carry_microseconds_and_z() -> None:
    assert iso_utc(datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC)) == (
        "2024-02-29T23:59:59.000001Z"
    )
    assert canonical_json(datetime(2024, 1, 1, tzinfo=UTC)) == b'"2024-01-01T00:00:00.000000Z"'


def test_enum_members_are_written_as_values() -> None:
    class Colour(Enum):
        red = "red"

    assert canonical_json({"c": Colour.red}) == b'{"c":"red"}'


@pytest.mark.parametrize(
    "bad",
    [
        datetime(2024, 1, 1),  # naive: ambiguous
        float("nan"),
        float("inf"),
        {1: "non-str key"},
        {"s": {1, 2}},
        Decimal("1.5"),
        b"bytes",
    ],
)
def test_canonical_json_refuses_ambiguous_values(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_json(bad)


def test_event_hash_matches_hand_computed_sha256() -> None:
    at = datetime(2024, 5, 1, 8, 0, tzinfo=CST)
    payload = {"actor": "u1", "note": None, "hours": 2.0, "reporter": {"name": "張三"}}
    text = (
        '{"at":"2024-05-01T00:00:00.000000Z",'
        '"case":"12345678-1234-5678-1234-567812345678",'
        '"data":{"actor":"u1","hours":2.0,"note":null,"reporter":{"name":"張三"}},'
        '"prev":"","type":"Reported","v":1}'
    )
    expected = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert event_hash(GENESIS, str(CASE_ID), 1, "Reported", at, payload) == expected
    assert len(expected) == 64 and expected == expected.lower()


def test_event_hash_changes_with_every_input() -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    base = event_hash("p", str(CASE_ID), 2, "Filed", at, {"a": 1})
    variants = [
        event_hash("q", str(CASE_ID), 2, "Filed", at, {"a": 1}),
        event_hash("p", str(UUID(int=1)), 2, "Filed", at, {"a": 1}),
        event_hash("p", str(CASE_ID), 3, "Filed", at, {"a": 1}),
        event_hash("p", str(CASE_ID), 2, "Rejected", at, {"a": 1}),
        event_hash("p", str(CASE_ID), 2, "Filed", at + timedelta(microseconds=1), {"a": 1}),
        event_hash("p", str(CASE_ID), 2, "Filed", at, {"a": 2}),
        event_hash("p", str(CASE_ID), 2, "Filed", at, {"a": 1.0}),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_is_a_fixed_point(value: Any) -> None:
    """Parsing canonical bytes and canonicalising again gives the same bytes (so a verifier
    that loads exported JSON and re-serialises gets the same hash input)."""
    once = canonical_json(value)
    assert canonical_json(json.loads(once)) == once
