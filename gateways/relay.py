"""The outbox relay: stored events → EVENTS stream, in notification order, never lost.

Why a relay and not "publish after save": a worker that crashes between the database commit
and the publish would lose the event for every consumer. The relay reads each partition's
notification log from its remembered position, publishes with ``Nats-Msg-Id =
<partition>:<position>`` (JetStream drops a re-publish after a relay crash), waits for every
acknowledgement, and only then advances its position in PostgreSQL. In the same transaction
it seals the batch into the running log chain (``log_chain``, see ``gateways.audit.chain``);
each published event carries its chain value in the ``Grid-Log-Chain`` header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from core import codec
from core.envelope import envelope_from_stored
from core.eventstore import StoreRegistry
from core.logging import get_logger
from core.messaging import Topology
from core.retry import backoff_delays, sleep_or_stop
from gateways.audit.chain import CHAIN_HEADER, ChainSealer

log = get_logger("relay")

RELAY_DDL = """
CREATE TABLE IF NOT EXISTS relay_positions (
    partition text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


def read_envelopes(
    stores: StoreRegistry, partition: str, after: int, limit: int
) -> list[dict[str, Any]]:
    """Envelopes of a partition's events with position > ``after`` (blocking: run in a thread)."""
    store = stores.get(partition)
    notifications = store.recorder.select_notifications(
        start=after, limit=limit, inclusive_of_start=False
    )
    return [
        envelope_from_stored(
            partition, n.id, n.originator_id, n.originator_version, n.topic, n.state
        )
        for n in notifications
    ]

class Relay:
    """Follows every partition's log and publishes it; one instance per deployment (or per
    partition set)."""

    def __init__(
        self,
        stores: StoreRegistry,
        partitions: Sequence[str],
        js: JetStreamContext,
        topo: Topology,
        pool: asyncpg.Pool,
        batch: int = 1000,
    ) -> None:
        self.stores = stores
        self.partitions = list(partitions)
        self.js = js
        self.topo = topo
        self.pool = pool
        self.batch = batch
        self.positions: dict[str, int] = {}
        self.published = 0
        self.sealer = ChainSealer()

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(RELAY_DDL)
            rows = await conn.fetch("SELECT partition, position FROM relay_positions")
            await self.sealer.setup(conn)
        self.positions = {r["partition"]: r["position"] for r in rows}

    async def run(self, stop: asyncio.Event) -> None:
        """Pump until ``stop`` is set; idle partitions are polled every 50 ms."""
        await self.setup()
        delays = backoff_delays()
        while not stop.is_set():
            try:
                moved = 0
                for partition in self.partitions:
                    moved += await self.pump(partition)
                delays = backoff_delays()
                if moved == 0:
                    await sleep_or_stop(stop, 0.05)
            except Exception as exc:
                delay = next(delays)
                log.warning("relay.retry", error=repr(exc), delay_s=round(delay, 2))
                await sleep_or_stop(stop, delay)

    async def pump(self, partition: str) -> int:
        """Publish the next batch of one partition; returns how many events moved."""
        after = self.positions.get(partition, 0)
        # Read from the sealed head if it is behind (events published before the chain
        # existed are sealed, not re-published).
        start = min(after, self.sealer.head(partition).position)
        envelopes = await asyncio.to_thread(
            read_envelopes, self.stores, partition, start, self.batch
        )
        if not envelopes:
            return 0
        seals = self.sealer.prepare(partition, envelopes)
        chains = {s.position: s.chain for s in seals}
        fresh = [env for env in envelopes if env["position"] > after]
        futures = []
        for env in fresh:
            subject = self.topo.event_subject(partition, env["type"])
            headers = {"Nats-Msg-Id": f"{partition}:{env['position']}"}
            if env["position"] in chains:
                headers[CHAIN_HEADER] = chains[env["position"]]
            futures.append(await self.js.publish_async(subject, codec.dumps(env), headers=headers))
        await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
        last = max(after, envelopes[-1]["position"])
        async with self.pool.acquire() as conn, conn.transaction():
            await self.sealer.write(conn, partition, seals)
            await conn.execute(
                "INSERT INTO relay_positions (partition, position) VALUES ($1, $2) "
                "ON CONFLICT (partition) DO UPDATE SET position = EXCLUDED.position, "
                "updated_at = now()",
                partition,
                last,
            )
        self.sealer.advance(partition, seals)
        self.positions[partition] = last
        self.published += len(fresh)
        return len(envelopes)
