"""The command worker: pulls commands in batches and saves many aggregates per transaction.

Why batches: eventsourcing serialises inserts per events table, so one transaction per case
caps a partition at a few hundred cases/s; one transaction for a whole batch gets thousands.
A batch that conflicts (a report whose key was already stored after the NATS dedupe window,
or a concurrent writer on the same case) is retried command by command, so one bad apple
never blocks the others. Messages are acknowledged only after the commit; a redelivered
command is recognised (case id already stored / command id already applied) and changes
nothing.

Failures (see tests/faults and docs/reliability.md): a worker that dies holding a batch gets it
redelivered after ``ACK_WAIT_S``; while a batch is being worked on (or waits for the database)
the worker extends that deadline (``in_progress``). A database that cannot be reached is not
the commands' fault: the batch is kept and retried with backoff (``worker.database_unavailable``)
instead of being counted towards the dead-letter limit. On SIGTERM the worker finishes its
batch and also processes what its last pull request delivered (``worker.drained``), so a
graceful stop leaves nothing unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError
from psycopg import InterfaceError as PsycopgInterfaceError
from psycopg import OperationalError as PsycopgOperationalError
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from aggregates.application import process_batch
from aggregates.commands import Command
from aggregates.service import CaseService
from core import codec
from core.eventstore import StoreRegistry
from core.gctune import tune_gc
from core.logging import get_logger
from core.messaging import Topology
from core.pull import DEFAULT_LINGER_S, Linger, fetch
from core.retry import backoff_delays, sleep_or_stop

log = get_logger("worker")

#: Seconds before JetStream redelivers commands a dead worker did not acknowledge (the bound on
#: recovery after a crash); a live worker extends it every third of it while it works.
ACK_WAIT_S = 10.0
#: How long one pull request waits for commands (its expiry on the server).
FETCH_TIMEOUT_S = 0.5


def database_unavailable(exc: BaseException) -> bool:
    """PostgreSQL down, restarting or out of connections — retry, it is not the command."""
    return isinstance(
        exc,
        OperationalError
        | InterfaceError
        | PsycopgOperationalError
        | PsycopgInterfaceError
        | PoolTimeout
        | OSError,
    )


def num_delivered(msg: Msg) -> int:
    """How often JetStream has delivered ``msg`` (1 the first time), read from its reply
    subject ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` without
    building nats-py's ``Metadata`` (a datetime and a dataclass per message); other forms
    (with a domain) go through nats-py."""
    reply = msg.reply or ""
    tokens = reply.split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[4])
    metadata = msg.metadata if reply.startswith("$JS.ACK.") else None
    return int(metadata.num_delivered or 1) if metadata else 1


class Worker:
    """One pull consumer over a set of partitions (all of them by default)."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        topo: Topology,
        stores: StoreRegistry,
        service: CaseService,
        partition: str | None = None,
        batch: int = 500,
        max_deliver: int = 5,
        durable: str | None = None,
        linger: float | Linger = DEFAULT_LINGER_S,
    ) -> None:
        self.nc = nc
        self.js = js
        self.topo = topo
        self.stores = stores
        self.service = service
        self.partition = partition
        self.batch = batch
        self.max_deliver = max_deliver
        self.linger = linger
        self.durable = durable or (f"worker_{partition}" if partition else "worker_all")
        self.processed = 0
        self.dead_lettered = 0
        self.stop = asyncio.Event()

    async def _subscribe(self) -> Any:
        """A durable pull consumer, created or updated (so a changed ack wait reaches an
        existing consumer), then bound.

        A process serving every partition (``gridctl up``, ``gridctl run worker`` without
        ``--partitions``) has ONE consumer over ``<root>.cmd.*.>`` (``worker_all``): at a
        steady rate one pull request then collects the commands of all districts, so batches
        fill several times sooner and the broker serves one pull loop instead of one per
        district. ``--partitions`` workers keep one consumer per district (``worker_<p>``).
        A new consumer continues where the previous layout's consumers stopped
        (:meth:`_start_after`) instead of replaying the whole stream."""
        stream = self.topo.commands_stream
        try:
            await self.js.consumer_info(stream, self.durable)
            start: dict[str, Any] = {}
        except NotFoundError:
            start = await self._start_after()
        config = ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_deliver=self.max_deliver + 1,
            max_ack_pending=20_000,
            filter_subject=self.topo.command_filter(self.partition),
            **(start or {"deliver_policy": DeliverPolicy.ALL}),
        )
        try:
            await self.js.add_consumer(stream, config)
        except BadRequestError as exc:  # an existing consumer that cannot take this config
            log.warning("worker.consumer_config_kept", durable=self.durable, error=str(exc))
        if self.partition is None:
            await self._retire_partition_consumers()
        return await self.js.pull_subscribe_bind(durable=self.durable, stream=stream)

    async def _layout_consumers(self) -> list[Any]:
        """The worker consumers of the other layout that cover our commands: for the
        all-partitions consumer, every ``worker_<p>``; for ``worker_<p>``, ``worker_all``."""
        infos = await self.js.consumers_info(self.topo.commands_stream)
        if self.partition is None:
            return [
                i for i in infos
                if i.name.startswith("worker_") and i.name != self.durable
                and i.config.filter_subject
                == self.topo.command_filter(i.name.removeprefix("worker_"))
            ]
        return [i for i in infos if i.name == "worker_all"]

    async def _start_after(self) -> dict[str, Any]:
        """Where a new consumer starts: just after the oldest command the previous layout's
        consumers have not acknowledged (their ack floor), so switching between one consumer
        per process and one per district loses nothing and replays only the few commands one
        of them had not acknowledged yet (redelivered commands change nothing). Empty when
        there is no previous consumer: a new system starts at the beginning of the stream."""
        stream = await self.js.stream_info(self.topo.commands_stream)
        last = stream.state.last_seq or 0  # read BEFORE the consumers (see below)
        previous = await self._layout_consumers()
        if not previous:
            return {}
        # A consumer with nothing pending has handled every command of its districts up to
        # ``last`` (its ack floor is only the last one *it* matched); one that is behind is
        # trusted up to its ack floor.
        floor = min(
            last if not (i.num_pending or i.num_ack_pending) else (i.ack_floor.stream_seq or 0)
            for i in previous
        )
        log.info("worker.consumer_continues", durable=self.durable, start_seq=floor + 1,
                 previous=[i.name for i in previous])
        return {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": floor + 1}

    async def _retire_partition_consumers(self) -> None:
        """Delete ``worker_<p>`` consumers the all-partitions consumer has taken over: left
        behind, they would pile up every new command unacknowledged (and a later per-district
        worker would resume from a stale position instead of from ours). One that a live
        worker is pulling from (pull requests waiting) is left alone, with a warning."""
        for info in await self._layout_consumers():
            if info.num_waiting:  # a live worker is pulling from it: not ours to delete
                log.warning(
                    "worker.layout_conflict", durable=info.name, by=self.durable,
                    hint="a --partitions worker is running next to an all-districts worker; "
                    "both receive that district's commands — run one kind only",
                )
                continue
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(self.topo.commands_stream, info.name)
                log.info("worker.consumer_retired", durable=info.name, by=self.durable)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch, process, ack — until ``stop``; in-flight batches finish before returning."""
        self.stop = stop
        tune_gc()
        sub = None
        delays = backoff_delays()
        while not stop.is_set():
            try:
                if sub is None:
                    sub = await self._subscribe()
                try:
                    msgs = await fetch(sub, self.batch, FETCH_TIMEOUT_S, self.linger)
                except (TimeoutError, NatsTimeout):
                    continue
                if msgs:
                    await self.handle(msgs)
                delays = backoff_delays()
            except Exception as exc:
                delay = next(delays)
                log.warning("worker.retry", error=repr(exc), delay_s=round(delay, 2))
                await sleep_or_stop(stop, delay)
        if sub is not None:
            await self.drain(sub)

    async def drain(self, sub: Any) -> None:
        """Graceful stop: the last pull request may deliver commands until it expires. Wait that
        out, then process what arrived, so nothing waits ``ACK_WAIT_S`` for a redelivery."""
        leftovers: list[Msg] = []
        try:
            await asyncio.sleep(FETCH_TIMEOUT_S + 0.1)
            await self.nc.flush(timeout=2)  # everything the server sent before is in our queue
            queue = sub._sub._pending_queue  # nats-py keeps undelivered pull replies here
            while not queue.empty():
                msg = queue.get_nowait()
                if msg.data and not JetStreamContext.is_status_msg(msg):
                    leftovers.append(msg)
            if leftovers:
                await self.handle(leftovers)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            log.info("worker.drained", durable=self.durable, leftovers=len(leftovers))
        except Exception as exc:
            log.warning("worker.drain_failed", durable=self.durable, error=repr(exc))

    async def _keep_in_progress(self, partition: str, msgs: list[Msg]) -> None:
        """Tell JetStream we are still working on ``msgs`` (until cancelled), and say so in
        the log: a batch this slow waits for the database (down, restarting, locked)."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(ACK_WAIT_S / 3)
            log.warning(
                "worker.batch_waiting",
                partition=partition,
                commands=len(msgs),
                waited_s=round(time.monotonic() - started, 1),
            )
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _process(self, partition: str, msgs: list[Msg], commands: list[Command]) -> Any:
        """``process_batch`` in a thread; retried while the database is unavailable."""
        keeper = asyncio.create_task(self._keep_in_progress(partition, msgs))
        delays = backoff_delays(base=0.2)
        started = time.monotonic()
        attempt = 0
        try:
            while True:
                try:
                    return await asyncio.to_thread(
                        process_batch, self.stores.get(partition), self.service, commands
                    )
                except Exception as exc:
                    if not database_unavailable(exc) or self.stop.is_set():
                        raise
                    attempt += 1
                    delay = next(delays)
                    log.warning(
                        "worker.database_unavailable",
                        partition=partition,
                        commands=len(commands),
                        attempt=attempt,
                        waited_s=round(time.monotonic() - started, 1),
                        error=repr(exc)[:300],
                        delay_s=round(delay, 2),
                    )
                    await sleep_or_stop(self.stop, delay)
        finally:
            keeper.cancel()

    async def handle(self, msgs: list[Msg]) -> None:
        """Decode, group by partition, process each partition batch in a thread, then ack."""
        by_partition: dict[str, list[tuple[Msg, Command]]] = defaultdict(list)
        for msg in msgs:
            try:
                cmd = Command.model_validate(codec.loads(msg.data))
                cmd.parsed_args()
            except (ValueError, ValidationError) as exc:
                await self.dead_letter(msg, f"invalid command: {exc}")
                continue
            by_partition[cmd.partition].append((msg, cmd))
        # The partitions' batches are independent (separate events tables, no shared case):
        # they run side by side, each in its own thread and transaction.
        results = await asyncio.gather(
            *(
                self._process(partition, [m for m, _ in items], [cmd for _, cmd in items])
                for partition, items in by_partition.items()
            ),
            return_exceptions=True,
        )
        redelivered = duplicates = 0
        for (partition, items), result in zip(by_partition.items(), results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                await self._failed(partition, items, result)
                continue
            for (msg, _), outcome in zip(items, result.outcomes, strict=True):
                if num_delivered(msg) > 1:
                    redelivered += 1
                    duplicates += bool(outcome.duplicate)
                await msg.ack()
                if msg.headers and Topology.REPLY_WANTED in msg.headers:
                    await self.nc.publish(
                        self.topo.reply_subject(outcome.command_id),
                        codec.dumps(outcome.model_dump()),
                    )
            self.processed += len(items)
            log.debug(
                "worker.batch", partition=partition, size=len(items), events=result.saved_events
            )
        if redelivered:
            # Commands a dead (or slow) worker had not acknowledged; reports already stored are
            # recognised as duplicates, lifecycle commands already applied change nothing.
            log.info("worker.redelivered", count=redelivered, duplicates=duplicates)

    async def _failed(
        self, partition: str, items: list[tuple[Msg, Command]], exc: Exception
    ) -> None:
        """A partition batch that could not be saved: hand it back for a later delivery, or
        dead-letter the commands that failed ``max_deliver`` times."""
        for msg, _cmd in items:
            delivered = num_delivered(msg)
            if database_unavailable(exc):  # stopping during an outage: hand it on
                await msg.nak()
            elif delivered >= self.max_deliver:
                await self.dead_letter(msg, f"failed {delivered} times: {exc!r}")
            else:
                await msg.nak(delay=min(30.0, 0.5 * 2**delivered))
        log.error("worker.batch_failed", partition=partition, error=repr(exc))

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """Move a poison message to the DLQ with its reason, then terminate it."""
        headers = dict(msg.headers or {})
        headers.update(
            {
                "Grid-DLQ-Reason": reason[:1000],
                "Grid-DLQ-Subject": msg.subject,
                "Grid-DLQ-Deliveries": str(msg.metadata.num_delivered if msg.metadata else 0),
            }
        )
        headers.pop("Nats-Msg-Id", None)
        await self.js.publish(self.topo.dlq_subject("commands"), msg.data, headers=headers)
        await msg.term()
        self.dead_lettered += 1
        log.warning("worker.dead_letter", subject=msg.subject, reason=reason[:200])
