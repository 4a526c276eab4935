"""Drill 1: the worker dies mid-batch (SIGKILL, three times) and stops gracefully (SIGTERM).

Mid-batch on purpose, three ways:

1. the test holds an EXCLUSIVE lock on every partition's events table, so the worker takes a
   batch, executes it and waits at the save — then it is SIGKILLed (nothing committed);
2. the same, but the lock is released and the worker killed 0-40 ms later, around its commit
   and its acknowledgements (some batches committed but not acknowledged);
3. the worker is frozen (SIGSTOP) while its pull request fills, thawed and killed 50-250 ms
   later while working on that backlog.

The consumers' ``num_ack_pending`` right after each kill counts the commands the dead process
held unacknowledged. They come back after the consumer's ack wait (``worker.redelivered``,
with how many were already stored — ``duplicates``) and must still give one case per key.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import asyncpg

from tests.faults.harness import Drill, Timer, log_event, record
from tests.faults.reconcile import reconcile, wait_drained

#: Worker restart (~4 s on the 2-core box) + the worker consumers' ack wait (10 s) + drain.
RECOVERY_BOUND_S = 30.0


async def _event_tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 "
        "AND table_name LIKE 'cases\\_%\\_events' ORDER BY 1",
        schema,
    )
    return [r["table_name"] for r in rows]


async def _held(drill: Drill) -> int:
    """Commands delivered to the worker consumers and not acknowledged yet."""
    return sum(int(c["num_ack_pending"]) for c in await _worker_consumers(drill))  # type: ignore[call-overload]


async def _holding(drill: Drill, timeout: float = 20.0) -> int:
    """Wait until the worker holds commands unacknowledged (a batch in flight); returns how
    many (0 when none within ``timeout``: the kill then catches nothing, which is asserted)."""
    deadline = time.monotonic() + timeout
    while not (held := await _held(drill)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return held


async def _blocked_at_save(conn: asyncpg.Connection, timeout: float = 20.0) -> bool:
    """Wait until a session waits for a lock on an events table: the worker, at its save."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE NOT l.granted AND c.relname LIKE 'cases\\_%\\_events'"
        )
        if waiting:
            return True
        await asyncio.sleep(0.05)
    return False


async def _worker_consumers(drill: Drill) -> list[dict[str, object]]:
    return [c for c in await drill.system.consumers() if str(c["name"]).startswith("worker_")]


async def test_worker_sigkill_mid_batch_three_times(drill: Drill) -> None:
    system = drill.system
    load = drill.load("wkill", rate=40)
    await load.start()
    await drill.accepted_more(40)
    unacked_at_kill: list[int] = []
    back_to_zero: list[float] = []
    timer = Timer("worker_sigkill")
    for n in range(3):
        worker = system.child("worker")
        old_pid = worker.pid
        if n < 2:
            lock = await asyncpg.connect(system.pg.url)
            tx = lock.transaction()
            await tx.start()
            for table in await _event_tables(lock, system.schema):
                await lock.execute(f"LOCK TABLE {system.schema}.{table} IN EXCLUSIVE MODE")
            # The worker takes a batch, executes it and waits at its save.
            await _holding(drill)
            await _blocked_at_save(lock)
            held = await _held(drill)
            if n == 0:
                await system.kill("worker", signal.SIGKILL)
                await tx.rollback()
            else:
                await tx.rollback()
                await asyncio.sleep(random.uniform(0.0, 0.04))
                await system.kill("worker", signal.SIGKILL)
            await lock.close()
        else:
            worker.proc.send_signal(signal.SIGSTOP)
            held = await _holding(drill)  # a backlog is delivered to the frozen worker
            worker.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(random.uniform(0.05, 0.25))
            await system.kill("worker", signal.SIGKILL)
        killed_at = time.monotonic()
        unacked_at_kill.append(held)
        log_event("fault.worker_killed", n=n, unacked_in_flight=held)
        await system.wait_restarted("worker", old_pid)
        # The dead worker's commands come back after the ack wait and are acknowledged by
        # the new incarnation: wait for a moment with nothing held, so rounds do not mix.
        deadline = time.monotonic() + RECOVERY_BOUND_S
        while await _held(drill) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        back_to_zero.append(round(time.monotonic() - killed_at, 2))
    timer.heal()
    load_stopped = time.monotonic()
    await load.stop()
    drained = await wait_drained(system, drill.ledger, timeout=RECOVERY_BOUND_S + 30)
    timer.recover()
    counts = await reconcile(system, drill.ledger, "worker SIGKILL x3 mid-batch")
    redelivered = system.events_named(["worker"], "worker.redelivered")
    lines = [
        line for line in system.log_lines("worker") if line.get("event") == "worker.redelivered"
    ]
    counts.update(
        redelivered_already_stored=sum(int(line.get("duplicates", 0)) for line in lines),
        kills=3,
        unacked_at_kill=unacked_at_kill,
        kill_to_all_acked_s=back_to_zero,
        redelivered_commands=sum(int(line.get("count", 0)) for line in lines),
        redelivery_log_lines=sum(redelivered.values()),
        recovery_s=round(time.monotonic() - load_stopped, 2),
        drain_s=round(drained, 2),
        worker_restarts=system.child("worker").restarts,
    )
    record(counts)
    assert not counts["problems"], counts["problems"]
    assert all(unacked_at_kill[:2]), f"a kill did not catch a batch in flight: {unacked_at_kill}"
    assert max(back_to_zero) <= RECOVERY_BOUND_S, back_to_zero
    assert counts["redelivered_commands"] > 0, "the unacknowledged commands never came back"
    assert drained <= RECOVERY_BOUND_S, f"recovery took {drained:.1f}s"


async def test_worker_sigterm_drains_in_flight_batch(drill: Drill) -> None:
    """SIGTERM mid-load: the worker finishes and acknowledges what it holds, exits 0 and
    leaves nothing unacknowledged, so nothing it committed is ever redelivered."""
    system = drill.system
    load = drill.load("wterm", rate=40)
    await load.start()
    await drill.accepted_more(40)
    redelivery_lines_before = len(
        [line for line in system.log_lines("worker") if line.get("event") == "worker.redelivered"]
    )
    worker = system.child("worker")
    old_pid = worker.pid
    started = time.monotonic()
    code = await system.kill("worker", signal.SIGTERM)
    exit_s = time.monotonic() - started
    left_unacked = await _held(drill)
    await system.wait_restarted("worker", old_pid)
    await drill.accepted_more(40)  # the load goes on against the new worker
    await load.stop()
    await wait_drained(system, drill.ledger, timeout=60)
    counts = await reconcile(system, drill.ledger, "worker SIGTERM (graceful)")
    lines = system.log_lines("worker")
    redelivered_after = [line for line in lines if line.get("event") == "worker.redelivered"][
        redelivery_lines_before:
    ]
    drained_lines = [line for line in lines if line.get("event") == "worker.drained"]
    counts.update(
        exit_code=code,
        exit_s=round(exit_s, 2),
        unacked_after_exit=left_unacked,
        redelivered_after_sigterm=sum(int(line.get("count", 0)) for line in redelivered_after),
    )
    record(counts)
    assert not counts["problems"], counts["problems"]
    assert code == 0, f"worker exited with {code} on SIGTERM"
    assert drained_lines, "no worker.drained line in the worker log"
    assert left_unacked == 0, f"{left_unacked} commands left unacknowledged by a graceful stop"
    assert not redelivered_after, f"redelivered after a graceful stop: {redelivered_after}"
