"""Drill 6: duplicates, reordered and replayed commands, and resubmission after the dedupe
window (the system runs with ``GRID_DEDUPE_WINDOW=2`` so the window passes in the test).

* the same report (same Idempotency-Key) five times at once → one case number, one case;
* the same key again after the window, even with a different text → the same case number,
  still one case (the broker no longer deduplicates: the worker does);
* dispatch before file → 409 (illegal in "reported"), file → 200, dispatch → 200; file and
  dispatch of another case fired concurrently; a lifecycle command resent with its key after the
  window → 200 and no second event;
* raw replay: 200 old commands (reports, files, dispatches) copied from the COMMANDS stream and
  republished in REVERSE order with fresh message ids → nothing new is stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.faults.harness import DEDUPE_WINDOW_S, Drill, record
from tests.faults.load import DISPATCHER
from tests.faults.reconcile import reconcile, wait_drained


async def _act(load: Any, case_no: str, verb: str, key: str, args: dict[str, Any]) -> int:
    token = await load.token(DISPATCHER)
    r = await load.client.post(
        f"/v1/cases/{case_no}/actions/{verb}",
        json=args,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )
    return int(r.status_code)


async def _visible(load: Any, case_no: str) -> None:
    token = await load.token(DISPATCHER)
    for _ in range(100):
        r = await load.client.get(
            f"/v1/cases/{case_no}", headers={"Authorization": f"Bearer {token}"}
        )
        if r.status_code == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{case_no} never became visible")


async def test_duplicates_reorders_replays_and_late_resubmission(drill: Drill) -> None:
    system = drill.system
    load = drill.load("dup", rate=20)  # a background load keeps the workers' batches mixed
    await load.start()
    grid = drill.grids[0]
    seen: dict[str, Any] = {}

    # 1. five concurrent copies of one report
    numbers = await asyncio.gather(*(load.report("dup-five", grid, act=False) for _ in range(5)))
    assert len(set(numbers)) == 1, numbers
    seen["concurrent_copies"] = 5
    # 2. resubmission after the dedupe window, with a different description
    await asyncio.sleep(DEDUPE_WINDOW_S + 1)
    again = await load.report(
        "dup-five", grid, description="the same report, typed again", act=False
    )
    assert again == numbers[0]
    seen["late_resubmissions"] = 1

    # 3. reordered lifecycle: dispatch before file
    case_a = await load.report("dup-order-a", grid, act=False)
    await _visible(load, case_a)
    seen["dispatch_before_file"] = await _act(load, case_a, "dispatch", "dup-a-dispatch", {})
    assert seen["dispatch_before_file"] == 409
    assert await _act(load, case_a, "file", "dup-a-file", {"note": "x"}) == 200
    assert await _act(load, case_a, "dispatch", "dup-a-dispatch-2", {}) == 200
    drill.ledger.lifecycle[case_a] = {"file": "dup-a-file", "dispatch": "dup-a-dispatch-2"}
    # file and dispatch of another case at the same moment, then dispatch retried
    case_b = await load.report("dup-order-b", grid, act=False)
    await _visible(load, case_b)
    both = await asyncio.gather(
        _act(load, case_b, "file", "dup-b-file", {"note": "x"}),
        _act(load, case_b, "dispatch", "dup-b-dispatch", {}),
    )
    assert both[0] == 200 and both[1] in (200, 409), both
    if both[1] == 409:
        assert await _act(load, case_b, "dispatch", "dup-b-dispatch-2", {}) == 200
    drill.ledger.lifecycle[case_b] = {"file": "dup-b-file", "dispatch": "dup-b"}
    seen["concurrent_file_dispatch"] = both
    # a lifecycle command resent with its key after the window: 200, nothing new
    await asyncio.sleep(DEDUPE_WINDOW_S + 1)
    assert await _act(load, case_a, "file", "dup-a-file", {"note": "x"}) == 200
    seen["late_lifecycle_resends"] = 1

    # 4. raw replay of old commands, newest first
    async def replay(js: Any) -> int:
        info = await js.stream_info(system.topo.commands_stream)
        last = info.state.last_seq
        n = 0
        for seq in range(last, max(info.state.first_seq, last - 200) - 1, -1):
            try:
                msg = await js.get_msg(system.topo.commands_stream, seq)
            except Exception:
                continue
            await js.publish(msg.subject, msg.data, headers={"Nats-Msg-Id": f"fault-replay:{seq}"})
            n += 1
        return n

    seen["replayed_commands"] = await system.js_call(replay)
    await load.stop()
    # Drained: every consumer (the workers' too) has nothing pending — the replayed commands
    # were all delivered and acknowledged.
    drained = await wait_drained(system, drill.ledger, timeout=60)
    counts = await reconcile(system, drill.ledger, "duplicates, reorders, replays, late resubmit")
    counts.update(seen, drain_s=round(drained, 2))
    record(counts)
    assert not counts["problems"], counts["problems"]
