"""Sending a lifecycle command and waiting for its outcome (NATS adapter).

The command is published to JetStream (durable: the worker owning the case's partition
processes it even if nobody waits) with the header ``Grid-Reply``; the worker then answers on
core NATS ``<p>.res.<command_id>``, which the sender subscribed to *before* publishing. No
answer within the timeout means "queued": the outcome will still happen.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext

from aggregates.commands import Command, Outcome
from core import codec
from core.messaging import Topology


class QueueUnavailable(Exception):
    """JetStream did not acknowledge the command: nothing was queued."""


@dataclass(frozen=True)
class CommandBus:
    nc: Client
    js: JetStreamContext
    topo: Topology
    reply_timeout_s: float

    async def send(self, command: Command) -> Outcome | None:
        """Queue ``command`` and wait for the worker's outcome (None: still queued)."""
        sub = await self.nc.subscribe(self.topo.reply_subject(command.command_id), max_msgs=1)
        try:
            try:
                await self.js.publish(
                    self.topo.command_subject(command.partition, command.verb),
                    codec.dumps(command.model_dump(mode="json")),
                    headers={
                        "Nats-Msg-Id": f"{command.verb}:{command.command_id}",
                        Topology.REPLY_WANTED: "1",
                    },
                    timeout=5,
                )
            except Exception as exc:
                raise QueueUnavailable(repr(exc)) from exc
            try:
                msg = await sub.next_msg(timeout=self.reply_timeout_s)
            except Exception:  # timeout or a closed connection: the command stays queued
                return None
            return Outcome.model_validate(codec.loads(msg.data))
        finally:
            await sub.unsubscribe()
