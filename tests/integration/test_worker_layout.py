"""Worker consumer layout: one consumer per process for every district, one per district
with ``--partitions``, and a switch between the two neither loses nor replays commands."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.js.api import ConsumerInfo

from benchmarks.common import report_command
from core import codec
from core.eventlog import table_name
from gateways.bootstrap import Runtime
from gateways.worker import FETCH_TIMEOUT_S
from tests.conftest import (
    database_url,
    drop_everything,
    eventually,
    make_settings,
    nats_url,
    worker_pulls_expired,
)


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    settings = make_settings()
    rt = await Runtime.open(settings, nats_url(), database_url())
    try:
        yield rt
    finally:
        await rt.close()
        await drop_everything(settings)


async def _publish(rt: Runtime, keys: list[str], district: str | None = None) -> None:
    rng = random.Random(7)
    grids = [g for g in sorted(rt.ref.jurisdiction.grids) if district is None or
             rt.ref.jurisdiction.partition_of(g) == district]
    for key in keys:
        cmd = report_command(rt.ref, key, datetime.now(UTC), rng, grids)
        await rt.js.publish(
            rt.topo.command_subject(cmd.partition, "report"),
            codec.dumps(cmd.model_dump(mode="json")),
            headers={"Nats-Msg-Id": f"report:{key}"},
        )


async def _stored(rt: Runtime) -> int:
    async with rt.pool.acquire() as conn:
        total = 0
        for p in rt.ref.partitions:
            total += int(await conn.fetchval(
                f"SELECT count(*) FROM {rt.settings.db_schema}.{table_name(p)}"
                " WHERE originator_version = 1"
            ))
        return total


async def _workers(rt: Runtime) -> dict[str, ConsumerInfo]:
    infos = await rt.js.consumers_info(rt.topo.commands_stream)
    return {i.name: i for i in infos if i.name.startswith("worker_")}


async def _switch(rt: Runtime, partitions: list[str] | None, durable: str) -> None:
    """Stop the workers, let their last pull requests expire (else the server still hands
    them a new command, which then waits for its ack deadline), start the new layout and
    wait for its consumer."""
    await rt.stop_role("worker")
    await eventually(lambda: worker_pulls_expired(rt), timeout=FETCH_TIMEOUT_S + 15)
    rt.start(["worker"], partitions)

    async def ready() -> bool:
        return durable in await _workers(rt)

    await eventually(ready)


async def _settled(rt: Runtime, stored: int) -> bool:
    """``stored`` first versions saved and every worker consumer acknowledged all it got."""
    if await _stored(rt) != stored:
        return False
    return all(not i.num_ack_pending and not i.num_pending
               for i in (await _workers(rt)).values())


async def test_switching_layouts_continues_where_the_previous_consumers_stopped(
    runtime: Runtime,
) -> None:
    rt = runtime
    districts = rt.ref.partitions
    assert len(districts) >= 2

    # 1. One consumer per district (a --partitions deployment) stores the first reports.
    rt.start(["worker"], list(districts))
    await _publish(rt, [f"layout-a-{i:04d}" for i in range(12)])
    await eventually(lambda: _settled(rt, 12))
    per_district = await _workers(rt)
    assert set(per_district) == {f"worker_{p}" for p in districts}

    # 2. The all-districts worker takes over: it starts after the old consumers' ack floor
    # (nothing replayed) and retires them.
    await _switch(rt, None, "worker_all")
    await _publish(rt, [f"layout-b-{i:04d}" for i in range(5)])
    await eventually(lambda: _settled(rt, 17))
    after = await _workers(rt)
    assert set(after) == {"worker_all"}
    one: Any = after["worker_all"]
    assert one.config.filter_subject == rt.topo.command_filter(None)
    assert one.delivered.consumer_seq == 5, "old commands were delivered again"
    assert one.num_redelivered == 0

    # 3. Back to a per-district worker: it starts after worker_all's floor as well.
    first = districts[0]
    await _switch(rt, [first], f"worker_{first}")
    await _publish(rt, ["layout-c-0001", "layout-c-0002"], district=first)
    await eventually(lambda: _stored_at_least(rt, 19))
    mine: Any = (await _workers(rt))[f"worker_{first}"]
    assert mine.delivered.consumer_seq == 2
    assert mine.config.filter_subject == rt.topo.command_filter(first)


async def _stored_at_least(rt: Runtime, n: int) -> bool:
    return await _stored(rt) >= n


async def test_one_consumer_serves_every_district_in_one_batch(runtime: Runtime) -> None:
    """A burst across districts is stored by one consumer; each district's commands go to
    its own events table (one transaction per district, side by side)."""
    rt = runtime
    rt.start(["worker"])
    await _publish(rt, [f"burst-{i:04d}" for i in range(40)])
    await eventually(lambda: _settled(rt, 40))
    workers = await _workers(rt)
    assert set(workers) == {"worker_all"}
    async with rt.pool.acquire() as conn:
        per_table = [
            int(await conn.fetchval(
                f"SELECT count(*) FROM {rt.settings.db_schema}.{table_name(p)}"
            ))
            for p in rt.ref.partitions
        ]
    assert sum(per_table) == 40 and sum(1 for n in per_table if n) >= 2
    assert sum(w.processed for w in rt.workers) == 40


async def test_a_live_district_consumer_is_not_retired(runtime: Runtime) -> None:
    """An all-districts worker started next to a running ``--partitions`` worker (a
    misconfiguration) leaves that worker's consumer alone: deleting it would leave the
    running worker pulling from nothing. Both then store each command once."""
    rt = runtime
    first = rt.ref.partitions[0]
    rt.start(["worker"], [first])

    async def pulling() -> bool:
        info = (await _workers(rt)).get(f"worker_{first}")
        return bool(info and info.num_waiting)

    await eventually(pulling)
    rt.start(["worker"])

    async def both() -> bool:
        return {f"worker_{first}", "worker_all"} <= set(await _workers(rt))

    await eventually(both)
    await _publish(rt, [f"conflict-{i:04d}" for i in range(8)], district=first)
    await eventually(lambda: _settled(rt, 8))
    assert f"worker_{first}" in await _workers(rt)
