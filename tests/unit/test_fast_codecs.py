"""The fast (orjson) paths of the write side give exactly what the reference paths give.

Why: the canonical JSON of the hash chain and the stored event bytes are formats other code
(and outside auditors) depend on; the orjson shortcuts are only allowed where they are
indistinguishable from the stdlib-based reference implementations.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given
from hypothesis import strategies as st

from aggregates.integrity import _reference_json, canonical_json, iso_utc
from core.envelope import envelope_from_stored
from core.eventstore import FastTranscoder


class Colour(Enum):
    red = "red"


def _stdlib() -> JSONTranscoder:
    t = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        t.register(transcoding)
    return t


def _fast() -> FastTranscoder:
    t = FastTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        t.register(transcoding)
    return t


zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
)
aware = st.datetimes(timezones=zones)
floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1e-5, 1e-7, 0.0001, 1e15, 1e16, 1e22, -0.0, 5e-324, 2.0, 0.1]
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | floats
    | st.text()
    | aware
    | st.uuids()
)
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=25,
)


@given(values)
def test_canonical_json_fast_path_equals_reference(value: Any) -> None:
    assert canonical_json(value) == _reference_json(value)


def test_canonical_json_fast_path_edges() -> None:
    for value in (
        {"x": 1e-5, "y": [1e-7, 1e16, 1e15, -0.0]},
        {"t": datetime(2024, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))},
        {"c": Colour.red, "k": (1, "a")},
        {"big": 2**64, "neg": -(2**63) - 1, "ok": 2**64 - 1},
        {"s": "\x00\x1f\x7f\u2028\U0001f600\"\\/"},
    ):
        assert canonical_json(value) == _reference_json(value)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and keeps types (UUID vs str, …)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


state_leaves = leaves | st.decimals(allow_nan=False) | st.sampled_from(
    [float("nan"), float("inf"), -float("inf")]
)
states = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        state_leaves,
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=4), children, max_size=3),
        max_leaves=15,
    ),
    max_size=8,
)


@given(states)
def test_transcoder_is_interchangeable_with_eventsourcings(state: dict[str, Any]) -> None:
    """Rows written by either transcoder decode to the same state with either."""
    fast, std = _fast(), _stdlib()
    expected = std.decode(std.encode(state))
    fast_bytes = fast.encode(state)
    for decoded in (std.decode(fast_bytes), fast.decode(fast_bytes)):
        assert _same(decoded, expected)


def test_transcoder_writes_eventsourcings_bytes_for_event_states() -> None:
    at = datetime(2026, 11, 23, 8, 0, 0, 123456, tzinfo=UTC)
    state = {
        "timestamp": at,
        "originator_topic": "aggregates.case:Case",
        "case_no": "GD-0000-0000-0001",
        "lat": 26.58,
        "description": "井蓋破損 \"quoted\"\n",
        "reporter": {"name": "張三", "type": "citizen"},
        "photos": [],
        "file_due": at + timedelta(hours=2),
        "client_time": None,
        "amount": Decimal("1.50"),
        "ref": UUID("12345678-1234-5678-1234-567812345678"),
    }
    assert _fast().encode(state) == _stdlib().encode(state)
    without_uuid = {k: v for k, v in state.items() if k != "ref"}
    assert _fast().encode(without_uuid) == _stdlib().encode(without_uuid)


def test_envelope_reads_rows_of_the_fast_transcoder() -> None:
    at = datetime(2026, 11, 23, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    state = {"timestamp": at, "originator_topic": "x:Y", "actor": "a", "hash": "h", "n": 1}
    fast_env = envelope_from_stored(
        "520102", 7, UUID(int=5), 2, "aggregates.case:Case.Filed", _fast().encode(state)
    )
    std_env = envelope_from_stored(
        "520102", 7, UUID(int=5), 2, "aggregates.case:Case.Filed", _stdlib().encode(state)
    )
    assert fast_env == std_env
    assert fast_env["at"] == at.astimezone(UTC)


@given(st.datetimes(timezones=zones))
def test_iso_utc_is_strftime(value: datetime) -> None:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        return
    assert iso_utc(value) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
