"""The relay's fast path (raw stored JSON → envelope) must equal the slow, obvious path
(eventsourcing rebuilds the event object → envelope), for every event type of a full case."""

from __future__ import annotations

from eventsourcing.application import Application

from core import codec
from core.envelope import envelope_from_stored, to_envelope
from tests.unit.casekit import report, run

PHOTO = {"digest": "sha256:" + "0" * 64, "size": 3, "content_type": "image/jpeg"}


def test_fast_and_slow_envelopes_are_identical() -> None:
    app: Application[object] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    case = report("call_taker", 0, reporter={"name": "張三", "phone": "138", "type": "citizen"})
    run(case, "file", "dispatcher", 1, note="立案")
    run(case, "dispatch", "dispatcher", 2)
    run(case, "accept", "handler", 3, note="收到")
    run(case, "request_extension", "handler", 4, hours=2.5, reason="材料")
    run(case, "approve_extension", "shift_leader", 5)
    run(case, "report_result", "handler", 6, note="done", photos=[PHOTO])
    run(case, "verify_fail", "inspector", 7, note="still there", photos=[PHOTO])
    run(case, "accept", "handler", 8)
    run(case, "report_result", "handler", 9, note="done again")
    run(case, "verify_pass", "inspector", 10)
    run(case, "close", "dispatcher", 11)
    run(case, "return_visit", "call_taker", 12, satisfaction="dissatisfied")
    run(case, "reopen", "shift_leader", 13, reason="不满意")
    app.save(case)
    notifications = app.recorder.select_notifications(start=1, limit=100)
    assert len(notifications) == 14
    for n in notifications:
        slow = to_envelope("520102", n.id, app.mapper.to_domain_event(n))
        fast = envelope_from_stored("520102", n.id, n.originator_id, n.originator_version,
                                    n.topic, n.state)
        assert codec.dumps(fast) == codec.dumps(slow), slow["type"]
