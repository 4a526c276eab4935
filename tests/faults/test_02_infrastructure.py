"""Drill 2 and 3: nats-server and PostgreSQL are stopped and restarted under load.

Each outage is 6 s, the servers come back on the same port with the same data directory. While
a server is down: ``/readyz`` answers 503; clients retry their reports with the same key;
every role logs structured lines naming the failure. After: ``/readyz`` is 200 again, intake
resumes, everything drains by itself within the bound, and the reconciliation holds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from core.refdata import load_reference
from core.settings import Settings
from tests.faults.harness import Drill, Timer, log_event, record
from tests.faults.load import publish_reports_direct
from tests.faults.reconcile import reconcile, wait_drained

OUTAGE_S = 6.0
RECOVERY_BOUND_S = 30.0
ROLES_ON_NATS = ["gateway", "worker", "relay", "projector", "notifier", "watcher"]


async def _outage(
    drill: Drill,
    name: str,
    stop: Callable[[], None],
    start: Callable[[], None],
    during: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    system = drill.system
    load = drill.load(name, rate=30)
    await load.start()
    await drill.accepted_more(30)
    sizes = {role: _log_size(drill, role) for role in ROLES_ON_NATS}
    timer = Timer(name)
    await asyncio.to_thread(stop)
    log_event("fault.server_down", server=name)
    not_ready_s = await system.wait_readyz(503, timeout=15)
    extra = await during() if during is not None else {}
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - timer.started)))
    await asyncio.to_thread(start)
    timer.heal()
    load.mark(name)
    log_event("fault.server_up", server=name)
    ready_again_s = await system.wait_readyz(200, timeout=RECOVERY_BOUND_S)
    await drill.accepted_more(30, timeout=RECOVERY_BOUND_S)  # intake flows again
    await load.stop()
    drained = await wait_drained(system, drill.ledger, timeout=RECOVERY_BOUND_S + 30)
    timer.recover()
    counts = await reconcile(system, drill.ledger, f"{name} stop/restart")
    failures = {role: _failure_lines(drill, role, sizes[role]) for role in ROLES_ON_NATS}
    redelivered = [
        line
        for line in system.log_lines("worker")[sizes["worker"] :]
        if line.get("event") == "worker.redelivered"
    ]
    first_202 = drill.ledger.first_202_after.get(name, -1)
    counts.update(
        outage_s=OUTAGE_S,
        readyz_503_after_s=round(not_ready_s, 2),
        readyz_200_after_heal_s=round(ready_again_s, 2),
        first_202_after_heal_s=round(first_202, 2) if first_202 >= 0 else None,
        recovery_s=timer.recovery_s,
        drain_s=round(drained, 2),
        failure_log_lines={role: sum(v.values()) for role, v in failures.items()},
        failure_events=sorted({e for v in failures.values() for e in v}),
        worker_redelivered=sum(int(line.get("count", 0)) for line in redelivered),
        worker_redelivered_already_stored=sum(
            int(line.get("duplicates", 0)) for line in redelivered
        ),
        **extra,
    )
    record(counts)
    assert not counts["problems"], counts["problems"]
    assert first_202 >= 0, "no report was accepted after the server came back"
    assert (timer.recovery_s or 0) <= RECOVERY_BOUND_S + 10, f"recovery took {timer.recovery_s}s"
    return {"counts": counts, "failures": failures}


def _log_size(drill: Drill, role: str) -> int:
    return len(drill.system.log_lines(role))


def _failure_lines(drill: Drill, role: str, since: int) -> dict[str, int]:
    """Warning / error lines a role logged since line ``since``, by event name."""
    out: dict[str, int] = {}
    for line in drill.system.log_lines(role)[since:]:
        if line.get("level") in ("warning", "error", "critical"):
            name = str(line.get("event"))
            out[name] = out.get(name, 0) + 1
    return out


async def test_nats_stop_and_restart(drill: Drill) -> None:
    nats = drill.system.nats
    result = await _outage(drill, "nats", nats.stop, nats.start)
    failures = result["failures"]
    for role in ROLES_ON_NATS:
        assert "nats.disconnected" in failures[role], (role, failures[role])
    assert failures["gateway"].get("readyz.not_ready"), failures["gateway"]
    reconnected = drill.system.events_named(ROLES_ON_NATS, "nats.reconnected")
    assert reconnected.get("nats.reconnected", 0) >= len(ROLES_ON_NATS), reconnected


async def test_postgres_stop_and_restart(drill: Drill) -> None:
    pg = drill.system.pg
    system = drill.system
    ref = load_reference(Settings())

    async def queue_while_down() -> dict[str, Any]:
        # The gateway cannot authenticate without the database (sessions live there), so a
        # report can only reach the broker if it was accepted in the instant before: publish
        # such commands straight to the stream. The worker must keep them until the database
        # is back — not dead-letter them.
        keys = [f"pgdown-{uuid.uuid4().hex[:8]}-{i:03d}" for i in range(30)]
        grid = drill.grids_by_partition["520103"][0]

        async def publish(js: Any) -> dict[str, str]:
            return await publish_reports_direct(
                js, system.topo, ref.jurisdiction, drill.category, keys, grid
            )

        accepted = await system.js_call(publish)
        drill.ledger.accepted.update(accepted)
        return {"queued_while_db_down": len(accepted)}

    result = await _outage(drill, "postgres", pg.stop, pg.start, during=queue_while_down)
    failures = result["failures"]
    # The gateway's readiness names the database; the worker holding the commands queued
    # meanwhile says it waits for it. (Roles with nothing to do during a short outage have
    # nothing failing: their pools wait and reconnect.)
    assert failures["gateway"].get("readyz.not_ready"), failures["gateway"]
    waiting = failures["worker"].get("worker.batch_waiting", 0)
    assert waiting or failures["worker"].get("worker.database_unavailable"), failures["worker"]
