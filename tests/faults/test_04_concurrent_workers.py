"""Drill 5: more than one worker writes partition 520102 at the same time.

Two situations, both at once:

* a second ``gridctl run worker`` next to the regular one — the same durable consumer
  (``worker_all``, one per process for every district), as in a scale-out or a rolling
  deploy's overlap. JetStream hands each command to one of them; conflicts arise when two
  commands of one case (file, dispatch) land in different workers' batches at the same moment.
* a rogue worker with its OWN durable consumer (``tests.faults.rogue_worker``): it replays the
  partition's whole command history and then receives every new command too, so each command
  is applied twice concurrently — constant optimistic-concurrency conflicts (the event store's
  unique (case id, version) refuses the second save; the worker retries the command alone and
  finds it already applied).

Why both: the shared durable is what a deployment does; the separate durable is the strongest
test of the conflict path and of replay idempotency. Nothing may be stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from tests.faults.harness import Drill, log_event, record
from tests.faults.reconcile import reconcile, wait_drained

PARTITION = "520102"
ROGUE_DURABLE = "rogue_520102"
LOAD_BOUND_S = 20.0


async def test_two_workers_on_one_partition(drill: Drill) -> None:
    system = drill.system
    workers = ["worker", "worker-b", "rogue"]
    conflicts_before = system.events_named(workers, "worker.batch_conflict")
    system.add_child("worker-b", ["gateways.cli", "run", "worker"])
    system.add_child("rogue", ["tests.faults.rogue_worker", PARTITION, ROGUE_DURABLE])
    grids = drill.grids_by_partition[PARTITION][:6]
    load = drill.load("twowk", rate=40, grids=grids)
    await load.start()
    # Load until the three workers have collided (an optimistic-concurrency conflict was
    # logged) and at least 100 reports went through them, within LOAD_BOUND_S (a condition:
    # the extra processes take a few seconds to start on a loaded machine).
    await drill.accepted_more(100)
    deadline = time.monotonic() + LOAD_BOUND_S
    while (
        system.events_named(workers, "worker.batch_conflict") == conflicts_before
        or not system.events_named(["worker-b"], "runtime.started")  # up, its handlers set
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    await load.stop()
    # Let both extra workers finish the backlog before they go (on a loaded machine the rogue
    # process may still be starting: its consumer does not exist yet).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyError):
            rogue = await system.consumer(ROGUE_DURABLE)
            if not rogue["num_pending"] and not rogue["num_ack_pending"]:
                break
        await asyncio.sleep(0.5)
    code_b = await system.remove_child("worker-b", signal.SIGTERM)
    code_rogue = await system.remove_child("rogue", signal.SIGTERM)
    rogue = await system.consumer(ROGUE_DURABLE)

    async def delete(js: object) -> None:
        await js.delete_consumer(system.topo.commands_stream, ROGUE_DURABLE)  # type: ignore[attr-defined]

    await system.js_call(delete)
    drained = await wait_drained(system, drill.ledger, timeout=60)
    counts = await reconcile(system, drill.ledger, "two workers + rogue replayer on 520102")
    conflicts = system.events_named(["worker", "worker-b", "rogue"], "worker.")
    counts.update(
        rogue_delivered=rogue["delivered"],
        rogue_left=rogue["num_pending"] + rogue["num_ack_pending"],
        batch_conflicts=conflicts.get("worker.batch_conflict", 0),
        conflict_retries=conflicts.get("worker.conflict_retry", 0),
        exit_codes={"worker-b": code_b, "rogue": code_rogue},
        drain_s=round(drained, 2),
    )
    log_event(
        "fault.concurrent_workers",
        **{k: counts[k] for k in ("batch_conflicts", "conflict_retries")},
    )
    record(counts)
    assert not counts["problems"], counts["problems"]
    assert counts["rogue_left"] == 0, "the rogue worker did not finish its replay"
    assert counts["batch_conflicts"] > 0, "no optimistic-concurrency conflict happened"
    assert system.events_named(["worker-b"], "runtime.started"), "worker-b never started"
    assert code_b == 0 and code_rogue == 0
