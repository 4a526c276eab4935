"""The live stream of changes (``GET /v1/stream``, Server-Sent Events) the command centre uses.

Each stored event reaches the EVENTS JetStream stream once (the relay dedupes), in order, with
a stream sequence number. That number is the SSE ``id:``; so:

* **Resume without loss.** A browser's EventSource sends ``Last-Event-ID`` when it reconnects;
  the gateway opens an *ordered, ephemeral* JetStream consumer starting right after that
  sequence (``DeliverPolicy.BY_START_SEQUENCE``), so every change made while the page was
  offline is replayed, in order, exactly once. ``?last_event_id=`` does the same for clients
  that cannot set the header. If the stream no longer holds that sequence (retention), or the
  id is from another stream, the client gets ``event: reset`` and reloads its data.
* **Fresh start without a gap.** Without an id the gateway sends ``event: hello`` whose id is
  the stream's last sequence *after* the read models have applied everything up to it; the
  page loads the queue and the map on ``hello``, and every later change arrives as ``change``.
* **Read-your-stream.** Before a ``change`` for sequence N is sent, the gateway waits (briefly)
  until the queue and map projections' consumers have acknowledged N — they acknowledge only
  after committing — so a page that re-reads the API on a change sees the change.

A ``change`` carries the envelope's facts (type, case, time, actor's role) and the case's queue
row as it is now, so the page can patch its list in place. Comments (``: ping``) every 15 s
keep proxies from closing an idle connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from core import codec
from core.jurisdiction import Jurisdiction
from core.logging import get_logger
from core.messaging import Topology
from core.refdata import Reference
from gateways.http.access import can_see
from gateways.http.centre import CENTRE_ROLES, QUEUE_COLUMNS, _item
from gateways.http.deps import get_jetstream, get_pool, get_reference, get_topology
from gateways.http.identity import Principal, require

log = get_logger("stream")
router = APIRouter(prefix="/v1", tags=["command centre 指挥中心"])

#: The read models a change must be visible in before it is announced.
BARRIER_PROJECTIONS = ("queue", "map")
BARRIER_TIMEOUT_S = 3.0
HEARTBEAT_S = 15.0
BATCH = 500


class ReadBarrier:
    """Waits until the projectors feeding the queue and map models acknowledged a sequence.

    The projectors' durable consumers are found by name (``proj_<name>[_<name>…]``: one
    runner may feed several read models), so the barrier works whether the gateway runs in
    the projector's process or elsewhere. One per process, shared by all stream clients: the
    acknowledged floor is cached and re-read only when a client needs a later sequence. With
    no projector at all (a gateway-only deployment still starting) it stops waiting for a
    while instead of delaying every change.
    """

    def __init__(
        self, js: JetStreamContext, topo: Topology, durable_prefix: str = "proj"
    ) -> None:
        self.js = js
        self.topo = topo
        self.prefix = durable_prefix + "_"
        self.floor = 0
        self.absent_until = 0.0
        self._lock = asyncio.Lock()

    async def _read_floor(self) -> int | None:
        floors = []
        stream = self.topo.events_stream
        for info in await self.js.consumers_info(stream):
            name = info.config.durable_name or ""
            if not name.startswith(self.prefix):
                continue
            if set(name[len(self.prefix):].split("_")) & set(BARRIER_PROJECTIONS):
                floors.append(int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0)
        return min(floors) if floors else None

    async def wait(self, seq: int, timeout: float = BARRIER_TIMEOUT_S) -> bool:
        """True once every barrier projection acknowledged ``seq`` (False on timeout)."""
        if seq <= self.floor:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() < self.absent_until:
            return False
        deadline = loop.time() + timeout
        while True:
            async with self._lock:
                if seq <= self.floor:
                    return True
                floor = None
                try:
                    floor = await self._read_floor()
                except Exception as exc:  # NATS hiccup: keep trying until the deadline
                    log.debug("stream.barrier_unavailable", error=repr(exc))
                if floor is not None:
                    self.floor = max(self.floor, floor)
            if seq <= self.floor:
                return True
            if loop.time() > deadline:
                if floor is None:
                    self.absent_until = loop.time() + 30.0
                return False
            await asyncio.sleep(0.02)


async def barrier_of(
    request: Request,
    js: JetStreamContext = Depends(get_jetstream),
    topo: Topology = Depends(get_topology),
) -> ReadBarrier:
    """The process's barrier (one per app and JetStream connection)."""
    barrier: ReadBarrier | None = getattr(request.app.state, "read_barrier", None)
    if barrier is None or barrier.js is not js:
        barrier = request.app.state.read_barrier = ReadBarrier(js, topo)
    return barrier


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = orjson.dumps(data, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC).decode()
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


def _start_from(last_event_id: str | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return None
    try:
        value = int(last_event_id.strip())
    except ValueError:
        return -1
    return value if value >= 0 else -1


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE"}},
)
async def stream(
    request: Request,
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID", max_length=40),
    last_event_id: str | None = Query(default=None, max_length=40),
    district: str | None = Query(default=None, max_length=40, description="only this district"),
    js: JetStreamContext = Depends(get_jetstream),
    topo: Topology = Depends(get_topology),
    pool: asyncpg.Pool = Depends(get_pool),
    ref: Reference = Depends(get_reference),
    barrier: ReadBarrier = Depends(barrier_of),
    principal: Principal = Depends(require(*CENTRE_ROLES, scopes=("cases:read",),
                                           query_token=True)),
) -> StreamingResponse:
    """Live changes of cases as Server-Sent Events, resumable with ``Last-Event-ID``."""
    after = _start_from(last_event_id_header or last_event_id)

    async def events() -> AsyncIterator[bytes]:
        info = await js.stream_info(topo.events_stream)
        last_seq, first_seq = int(info.state.last_seq), int(info.state.first_seq)
        yield b"retry: 2000\n\n"
        start: int
        if after is None:
            await barrier.wait(last_seq)
            yield sse("hello", {"seq": last_seq}, last_seq)
            start = last_seq + 1
        elif after == -1 or after > last_seq or (after + 1 < first_seq and info.state.messages):
            await barrier.wait(last_seq)
            yield sse("reset", {"seq": last_seq, "reason": "unknown or expired Last-Event-ID"},
                      last_seq)
            start = last_seq + 1
        else:
            start = after + 1
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(start, 1),
            inactive_threshold=60.0,
        )
        subject = topo.event_filter(district)
        sub = await js.subscribe(
            subject, stream=topo.events_stream, ordered_consumer=True, config=config,
            idle_heartbeat=5.0,
        )
        try:
            idle = 0.0
            while not await request.is_disconnected():
                batch = []
                try:
                    msg = await sub.next_msg(timeout=1.0)
                    batch.append(msg)
                    while len(batch) < BATCH:
                        try:
                            batch.append(await sub.next_msg(timeout=0.02))
                        except TimeoutError:
                            break
                except TimeoutError:
                    idle += 1.0
                    if idle >= HEARTBEAT_S:
                        idle = 0.0
                        yield b": ping\n\n"
                    continue
                idle = 0.0
                async for chunk in _changes(pool, ref.jurisdiction, barrier, batch, principal):
                    yield chunk
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _changes(
    pool: asyncpg.Pool,
    j: Jurisdiction,
    barrier: ReadBarrier,
    batch: list[Any],
    principal: Principal,
) -> AsyncIterator[bytes]:
    decoded: list[tuple[int, dict[str, Any]]] = []
    for msg in batch:
        try:
            decoded.append((int(msg.metadata.sequence.stream), codec.loads(msg.data)))
        except (ValueError, AttributeError):
            continue
    if not decoded:
        return
    await barrier.wait(decoded[-1][0])
    ids = list({env["case_id"] for _, env in decoded})
    async with pool.acquire() as conn:
        records = await conn.fetch(
            f"SELECT case_id, {', '.join(QUEUE_COLUMNS)} FROM case_queue "
            "WHERE case_id = ANY($1::uuid[])",
            ids,
        )
    rows = {str(r["case_id"]): _item(r) for r in records}
    out = []
    for seq, env in decoded:
        row = rows.get(env["case_id"])
        grid = row["grid"] if row else (env.get("data") or {}).get("grid")
        # Jurisdiction (access.py): a change of a case the caller may not see is not sent.
        if not can_see(principal, row or {"grid": grid}, j):
            continue
        out.append(
            sse(
                "change",
                {
                    "seq": seq,
                    "type": env.get("type"),
                    "case_id": env.get("case_id"),
                    "case_no": row["case_no"] if row else (env.get("data") or {}).get("case_no"),
                    "partition": env.get("partition"),
                    "position": env.get("position"),
                    "version": env.get("version"),
                    "at": env.get("at"),
                    "role": env.get("role"),
                    "grid": grid,
                    "case": row,
                },
                seq,
            )
        )
    if out:
        yield b"".join(out)
