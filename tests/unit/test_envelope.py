"""The relay's fast path (raw stored JSON → envelope) must equal the slow, obvious path
(eventsourcing rebuilds the event object → envelope), for every event type of a full case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from eventsourcing.application import Application

from aggregates.case import Case
from core import codec
from core.envelope import envelope_from_stored, to_envelope

T = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def ctx(role: str, minutes: int, key: str) -> dict[str, object]:
    return {"actor": f"{role}-1", "role": role, "channel": "test",
            "at": T + timedelta(minutes=minutes), "command_id": key}


def test_fast_and_slow_envelopes_are_identical() -> None:
    app: Application[object] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    case = Case.report(
        case_id=uuid4(), case_no="GD-TEST-0000-0001", category="SJ0101", kind="event",
        grid="520102001001", community="520102001", district="520102", description="垃圾",
        reporter={"name": "張三", "phone": "138", "type": "citizen"}, source="api",
        priority="ordinary", level="district", lat=26.5, lon=106.7,
        proposal={"department": "D-1", "node": "520102", "level": "district"},
        file_due=T + timedelta(hours=1), **ctx("call_taker", 0, "k0"),  # type: ignore[arg-type]
    )
    case.file(dispatch_due=T + timedelta(hours=2), **ctx("dispatcher", 1, "k1"))  # type: ignore[arg-type]
    case.dispatch(department="D-1", level="district", node="520102", priority="ordinary",
                  handle_due=T + timedelta(hours=9), **ctx("dispatcher", 2, "k2"))  # type: ignore[arg-type]
    case.accept(**ctx("handler", 3, "k3"))  # type: ignore[arg-type]
    case.report_result(note="done", photos=[{"digest": "sha256:" + "0" * 64, "size": 3,
                                             "content_type": "image/jpeg"}],
                       **ctx("handler", 4, "k4"))  # type: ignore[arg-type]
    app.save(case)
    notifications = app.recorder.select_notifications(start=1, limit=100)
    assert len(notifications) == 5
    for n in notifications:
        slow = to_envelope("520102", n.id, app.mapper.to_domain_event(n))
        fast = envelope_from_stored("520102", n.id, n.originator_id, n.originator_version,
                                    n.topic, n.state)
        assert codec.dumps(fast) == codec.dumps(slow), slow["type"]
