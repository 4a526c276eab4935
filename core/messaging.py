"""NATS JetStream topology: stream names, subjects and their one-time set-up.

Why these shapes (see docs/architecture.md):
- ``<p>.cmd.<partition>.<verb>`` on the COMMANDS stream: the partition (district code) in the
  subject lets N workers each take a disjoint subject filter.
- ``<p>.evt.<partition>.<EventType>`` on the EVENTS stream, published by the relay in atomic
  batches that expect the partition's last sequence, so a relay restart cannot publish an event
  twice or out of order (header ``Grid-Position = <partition>:<position>``).
- ``<p>.dlq.<source>`` on the DLQ stream: poison messages with the reason in headers.
- ``<p>.res.<command_id>``: core-NATS replies with a command's outcome, so the HTTP gateway can
  answer 200/409 for lifecycle commands without any shared state with the workers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from core.logging import get_logger

log = get_logger("messaging")


@dataclass(frozen=True)
class Topology:
    """Names derived from one prefix, so tests can run side by side on one server."""

    prefix: str = "GRID"

    @property
    def subject_root(self) -> str:
        return self.prefix.lower()

    @property
    def commands_stream(self) -> str:
        return f"{self.prefix}_COMMANDS"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}_EVENTS"

    @property
    def dlq_stream(self) -> str:
        return f"{self.prefix}_DLQ"

    @property
    def photos_bucket(self) -> str:
        """The Object Store bucket of the photos (``core.photos``; made on the first upload)."""
        return f"{self.prefix}_PHOTOS"

    def command_subject(self, partition: str, verb: str) -> str:
        return f"{self.subject_root}.cmd.{partition}.{verb}"

    def command_filter(self, partition: str | None = None) -> str:
        return f"{self.subject_root}.cmd.{partition or '*'}.>"

    def event_subject(self, partition: str, event_type: str) -> str:
        return f"{self.subject_root}.evt.{partition}.{event_type}"

    def event_filter(self, partition: str | None = None) -> str:
        return f"{self.subject_root}.evt.{partition or '*'}.>"

    def dlq_subject(self, source: str) -> str:
        return f"{self.subject_root}.dlq.{source}"

    #: Header a publisher sets when it waits for the command's outcome on
    #: :meth:`reply_subject`; the worker answers only those (reports and the watcher's
    #: commands are fire-and-forget, and an unheard reply still costs a publish).
    REPLY_WANTED = "Grid-Reply"

    def reply_subject(self, command_id: str) -> str:
        return f"{self.subject_root}.res.{command_id}"


def server_list(url: str) -> list[str]:
    """``NATS_URL`` as nats-py's server list: one URL or a comma-separated cluster seed list
    (``nats://a:4222,nats://b:4222,nats://c:4222``); the client learns the other members from
    the cluster's INFO anyway, the list only has to reach one live node at start-up."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("NATS_URL is empty")
    return servers


async def connect(url: str, name: str) -> Client:
    """Connect with unbounded reconnects: a NATS restart must never kill a process.

    ``url`` may list several servers (comma-separated); on a node's death the client moves to
    another one and replays its subscriptions."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    return await nats.connect(
        server_list(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


async def ensure_streams(
    js: JetStreamContext, topo: Topology, dedupe_window_s: float = 120.0, replicas: int = 1
) -> None:
    """Create or update the three streams; safe to call from every process at start-up."""
    configs = [
        StreamConfig(
            name=topo.commands_stream,
            subjects=[f"{topo.subject_root}.cmd.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=dedupe_window_s,
            max_age=7 * 24 * 3600.0,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=topo.events_stream,
            subjects=[f"{topo.subject_root}.evt.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=dedupe_window_s,
            max_age=30 * 24 * 3600.0,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
            # The relay publishes each partition's batch atomically (nats-server >= 2.12;
            # older servers ignore the field and the relay falls back, see gateways.relay).
            allow_atomic=True,
        ),
        StreamConfig(
            name=topo.dlq_stream,
            subjects=[f"{topo.subject_root}.dlq.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
    ]
    for config in configs:
        try:
            await js.stream_info(config.name or "")
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)


async def delete_streams(js: JetStreamContext, topo: Topology) -> None:
    """Remove the streams of a topology and its photo bucket (tests and benchmarks clean up
    their own prefix; the buckets were left behind, a dozen per test run on a shared
    server)."""
    for name in (topo.commands_stream, topo.events_stream, topo.dlq_stream):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)
    with contextlib.suppress(NotFoundError):
        await js.delete_object_store(topo.photos_bucket)


async def drop_consumer(js: JetStreamContext, stream: str, name: str) -> None:
    """Remove a durable consumer that nobody reads any more — one a changed layout of the
    roles left behind (the notifier's own when the projector applies its read models, the
    reporter texts' from before they rode on the notifier's). Best effort: absent, or the
    broker not answering now, changes nothing (it is tried again at the next start)."""
    with contextlib.suppress(Exception):
        await js.delete_consumer(stream, name)
