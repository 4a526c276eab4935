"""Drill 4: the outbox relay and the projectors are SIGKILLed under load (two rounds).

The relay can die between publishing a batch and recording its position; a projector between
fetching events and committing them (or between commit and ack). The relay is frozen (SIGSTOP)
for a moment first so that it wakes to a backlog and is killed while publishing it. After each
round the supervisor restarts them; the EVENTS stream must still hold every stored event once
and in order (the dedupe window is only 2 s here, shorter than a restart, so it cannot hide a
re-publish), and every read model must equal a rebuild.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

from tests.faults.harness import Drill, log_event, record
from tests.faults.reconcile import reconcile, wait_drained

RECOVERY_BOUND_S = 30.0
VICTIMS = ("relay", "projector", "notifier")
ROUNDS = 2


async def test_relay_and_projectors_sigkilled(drill: Drill) -> None:
    system = drill.system
    load = drill.load("rpkill", rate=40)
    await load.start()
    await drill.accepted_more(40)
    for n in range(ROUNDS):
        pids = {role: system.child(role).pid for role in VICTIMS}
        for role in ("relay", "projector"):
            system.child(role).proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(1.5)
        for role in ("relay", "projector"):
            system.child(role).proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(random.uniform(0.02, 0.15))
        await asyncio.gather(*(system.kill(role, signal.SIGKILL) for role in VICTIMS))
        log_event("fault.relay_projector_killed", round=n)
        for role in VICTIMS:
            await system.wait_restarted(role, pids[role])
        await drill.accepted_more(40)  # the load goes on against the restarted roles
    stopped = time.monotonic()
    await load.stop()
    drained = await wait_drained(system, drill.ledger, timeout=RECOVERY_BOUND_S + 30)
    phase = f"relay + projector + notifier SIGKILL x{ROUNDS}"
    counts = await reconcile(system, drill.ledger, phase)
    counts.update(
        rounds=ROUNDS,
        recovery_s=round(time.monotonic() - stopped, 2),
        drain_s=round(drained, 2),
        restarts={role: system.child(role).restarts for role in VICTIMS},
        gap_fills=system.events_named(["projector", "notifier"], "projector.gap"),
        relay_resyncs=system.events_named(["relay"], "relay.resync"),
    )
    record(counts)
    assert not counts["problems"], counts["problems"]
    assert drained <= RECOVERY_BOUND_S, f"recovery took {drained:.1f}s"
