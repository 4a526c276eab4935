"""A second, independent command worker for one partition: ``python -m tests.faults.rogue_worker
<partition> <durable>``.

It runs the production ``Worker`` with its own durable consumer, so it receives EVERY command of
the partition — from the first one in the stream (a full replay) and, concurrently with the
regular worker, every new one. Both write the same aggregates: each command is applied twice at
once and one of the two saves hits an optimistic-concurrency conflict. Nothing may come out
twice. Uses NATS_URL / DATABASE_URL / GRID_* like ``gridctl run``.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from core.logging import configure_logging
from core.settings import get_settings
from gateways.bootstrap import Runtime
from gateways.worker import Worker


async def main(partition: str, durable: str) -> None:
    settings = get_settings()
    assert settings.nats_url and settings.database_url
    runtime = await Runtime.open(settings, settings.nats_url, settings.database_url)
    worker = Worker(
        runtime.nc,
        runtime.js,
        runtime.topo,
        runtime.stores,
        runtime.service,
        partition=partition,
        batch=settings.worker_batch,
        max_deliver=settings.max_deliver,
        durable=durable,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime.tasks.append(asyncio.create_task(worker.run(stop), name="rogue-worker"))
    runtime.stop_event = stop
    try:
        await stop.wait()
    finally:
        await runtime.close()


if __name__ == "__main__":
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
