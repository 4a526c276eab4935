"""Drill 7: the embedded nats-server and the PostgreSQL postmaster are SIGKILLed under load.

Nobody starts them again by hand: the supervisor (the code ``gridctl up`` runs) reaps the dead
process — a zombie postmaster would keep ``postmaster.pid`` "alive" and block every restart —
and starts it again on the same port and data directory; the roles reconnect by themselves.
Clients keep retrying with the same keys. Checked: the server is back and the first report is
accepted again within a bound, the dead process is not left a zombie, intake answered 503
with ``Retry-After`` (never 500) while it was down, no role stayed down, and the
reconciliation holds (every key answered 202 is exactly one case).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import psutil

from tests.faults.harness import Drill, Timer, log_event, record
from tests.faults.reconcile import reconcile, wait_drained

#: The supervisor restarts a dead server after 0.2 s; PostgreSQL then replays its WAL.
RESTART_BOUND_S = 30.0
#: From the kill to the first report accepted again (restart + the roles reconnecting).
FIRST_202_BOUND_S = 45.0
LOAD_BEFORE_KILL = 60  # reports accepted by this drill's load before each kill


async def _accepted_more(drill: Drill, than: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(drill.ledger.accepted) < than + LOAD_BEFORE_KILL:
        assert time.monotonic() < deadline, "the load made no progress"
        await asyncio.sleep(0.1)


async def _first_202(drill: Drill, label: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (value := drill.ledger.first_202_after.get(label, -1.0)) < 0:
        assert time.monotonic() < deadline, f"no report accepted within {timeout}s of {label}"
        await asyncio.sleep(0.05)
    return value


def _not_a_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _kill_server(drill: Drill, name: str, server: Any) -> dict[str, Any]:
    system = drill.system
    load = drill.load(f"kill-{name}", rate=30)
    before = Counter(drill.ledger.statuses)
    await load.start()
    await _accepted_more(drill, len(drill.ledger.accepted))
    role_pids = {c.role: c.pid for c in system.supervisor.children} if system.supervisor else {}
    pid = server.pid
    assert pid is not None
    timer = Timer(f"kill {name}")
    os.kill(pid, signal.SIGKILL)  # not server.kill(): nobody but the supervisor may help
    load.mark(name)
    log_event("fault.server_killed", server=name, pid=pid)
    restarted_s = await system.wait_server_restarted(server, pid, RESTART_BOUND_S)
    timer.heal()
    first_202_s = await _first_202(drill, name, FIRST_202_BOUND_S)
    reaped = _not_a_zombie(pid)
    ready_s = await system.wait_readyz(200, timeout=RESTART_BOUND_S)
    await _accepted_more(drill, len(drill.ledger.accepted), timeout=RESTART_BOUND_S)
    await load.stop()
    drained = await wait_drained(system, drill.ledger, timeout=60)
    timer.recover()
    counts = await reconcile(system, drill.ledger, f"{name} SIGKILL")
    seen = Counter(drill.ledger.statuses)
    seen.subtract(before)
    statuses = {k: v for k, v in seen.items() if v}
    roles_down = [c.role for c in system.supervisor.children if not c.alive()]
    counts.update(
        killed_pid=pid,
        restarted_after_s=round(restarted_s, 2),
        first_202_after_kill_s=round(first_202_s, 2),
        readyz_200_after_restart_s=round(ready_s, 2),
        drain_s=round(drained, 2),
        recovery_s=timer.recovery_s,
        statuses=statuses,
        role_restarts={
            c.role: c.restarts for c in system.supervisor.children if c.pid != role_pids[c.role]
        },
        server_restarts={s.name: s.restarts for s in system.supervisor.servers},
    )
    record(counts)
    assert not counts["problems"], counts["problems"]
    assert reaped, f"the killed {name} (pid {pid}) was left a zombie"
    assert not roles_down, f"roles down: {roles_down}"
    server_errors = {k: v for k, v in statuses.items() if k.endswith(":500")}
    assert not server_errors, f"5xx other than 503 while {name} was down: {statuses}"
    return counts


async def test_nats_server_sigkill_is_healed_by_the_supervisor(drill: Drill) -> None:
    counts = await _kill_server(drill, "nats-server", drill.system.nats)
    assert counts["first_202_after_kill_s"] <= FIRST_202_BOUND_S


async def test_postmaster_sigkill_is_healed_by_the_supervisor(drill: Drill) -> None:
    counts = await _kill_server(drill, "postgres", drill.system.pg)
    assert counts["first_202_after_kill_s"] <= FIRST_202_BOUND_S
    # While the database was away, intake answered 503 with Retry-After (not 500) — when a
    # request arrived in the gap at all (the restart can be quicker than the clients).
    assert counts["statuses"].get("report:503", 0) == counts["statuses"].get(
        "report:503_retry_after", 0
    ), counts["statuses"]
