"""Liveness, readiness and Prometheus metrics.

``/readyz`` turns false while NATS or PostgreSQL is unreachable, so a load balancer stops
sending reports to a gateway that could not queue them.
"""

from __future__ import annotations

import contextlib

import asyncpg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from core import eventlog
from core.logging import get_logger
from core.messaging import Topology
from core.refdata import Reference
from gateways.http.deps import (
    RoleCheck,
    get_jetstream,
    get_nats,
    get_pool,
    get_reference,
    get_role_check,
    get_topology,
)
from gateways.http.identity import public
from gateways.probes import readiness
from projections.read_models import all_projections

log = get_logger("gateway")

#: Public: load balancers and Prometheus call these without a token (keep them on an
#: internal network or behind the proxy's allow-list).
router = APIRouter(tags=["operations"], dependencies=[Depends(public)])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


#: The failing checks of the last /readyz answer (logged when they change).
_last_failing: list[str] = []


@router.get("/readyz")
async def readyz(
    nc: Client = Depends(get_nats),
    pool: asyncpg.Pool = Depends(get_pool),
    roles_alive: RoleCheck = Depends(get_role_check),
) -> JSONResponse:
    # The same checks as the other roles' probes (a bounded SELECT 1: a connection the
    # restarted server has dropped must not hang the probe).
    body = await readiness(nc, pool, roles_alive)
    failing = sorted(name for name, ok in body["checks"].items() if not ok)
    if failing != _last_failing:
        if failing:
            log.warning("readyz.not_ready", failing=failing)
        else:
            log.info("readyz.ready_again", was_failing=list(_last_failing))
        _last_failing[:] = failing
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


# --------------------------------------------------------------------------- Prometheus
# Gauges are refreshed from the sources of truth at scrape time (JetStream consumer state,
# the positions tables, the map read model), so every gateway replica reports the same
# numbers and nothing has to be incremented on the hot path.

_G = "griddispatch_"
COMMANDS_ACCEPTED = Gauge(
    _G + "commands_accepted_total",
    "Commands (reports and lifecycle actions) accepted on the COMMANDS stream; "
    "rate() of it is the intake rate",
)
INTAKE_RATE = Gauge(
    _G + "intake_reports_per_second", "Reports that became cases in the last 60 s, per second"
)
CONSUMER_PENDING = Gauge(
    _G + "consumer_pending_messages",
    "Messages not yet delivered to a durable consumer (consumer lag)",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    _G + "consumer_ack_pending_messages",
    "Messages delivered but not yet acknowledged",
    ["stream", "consumer"],
)
PROJECTION_LAG = Gauge(
    _G + "projection_lag_events",
    "Events stored but not yet applied by a read model (store head - projection position)",
    ["projection", "partition"],
)
PROJECTION_LAG_SECONDS = Gauge(
    _G + "projection_lag_seconds",
    "Seconds since a lagging read model last applied an event (0 when caught up)",
    ["projection"],
)
RELAY_LAG = Gauge(
    _G + "relay_lag_events", "Events stored but not yet published to EVENTS", ["partition"]
)
CASES_OPEN = Gauge(_G + "cases_open", "Open cases (not closed / rejected / merged)", ["district"])
CASES_WARNING = Gauge(_G + "cases_warning", "Open cases on a yellow light (预警)", ["district"])
CASES_OVERDUE = Gauge(_G + "cases_overdue", "Open cases past their deadline (超期)", ["district"])


async def refresh_gauges(
    js: JetStreamContext, topo: Topology, pool: asyncpg.Pool, partitions: list[str]
) -> None:
    """Read every gauge's value now (each source is optional: a failing one is skipped)."""
    with contextlib.suppress(Exception):
        info = await js.stream_info(topo.commands_stream)
        COMMANDS_ACCEPTED.set(info.state.last_seq)
    CONSUMER_PENDING.clear()
    CONSUMER_ACK_PENDING.clear()
    for stream in (topo.commands_stream, topo.events_stream):
        with contextlib.suppress(Exception):
            for consumer in await js.consumers_info(stream):
                if not consumer.config.durable_name:
                    continue  # ephemeral: live-stream clients
                name = consumer.name
                CONSUMER_PENDING.labels(stream, name).set(consumer.num_pending or 0)
                CONSUMER_ACK_PENDING.labels(stream, name).set(consumer.num_ack_pending or 0)
    heads: dict[str, int] = {}
    with contextlib.suppress(Exception):
        async with pool.acquire(timeout=2) as conn:
            for partition in partitions:
                heads[partition] = await eventlog.head(conn, partition)
    with contextlib.suppress(Exception):
        async with pool.acquire(timeout=2) as conn:
            relay = {
                r["partition"]: int(r["position"])
                for r in await conn.fetch("SELECT partition, position FROM relay_positions")
            }
            positions = await conn.fetch(
                "SELECT projection, partition, position, "
                "extract(epoch FROM now() - updated_at) AS age FROM projection_positions"
            )
            reported = await conn.fetchval(
                "SELECT count(*) FROM case_queue WHERE reported_at > now() - interval '60 seconds'"
            )
            districts = await conn.fetch(
                "SELECT district, sum(open) AS open, sum(warning) AS warning, "
                "sum(overdue) AS overdue FROM map_grid_counts GROUP BY district"
            )
        INTAKE_RATE.set(int(reported or 0) / 60.0)
        RELAY_LAG.clear()
        for partition, head in heads.items():
            RELAY_LAG.labels(partition).set(max(0, head - relay.get(partition, 0)))
        applied: dict[tuple[str, str], tuple[int, float]] = {
            (r["projection"], r["partition"]): (int(r["position"]), float(r["age"] or 0))
            for r in positions
        }
        PROJECTION_LAG.clear()
        PROJECTION_LAG_SECONDS.clear()
        for projection in all_projections():
            oldest = 0.0
            for partition, head in heads.items():
                position, age = applied.get((projection.name, partition), (0, 0.0))
                lag = max(0, head - position)
                PROJECTION_LAG.labels(projection.name, partition).set(lag)
                if lag:
                    oldest = max(oldest, age)
            PROJECTION_LAG_SECONDS.labels(projection.name).set(oldest)
        for gauge in (CASES_OPEN, CASES_WARNING, CASES_OVERDUE):
            gauge.clear()
        for r in districts:
            CASES_OPEN.labels(r["district"] or "").set(int(r["open"] or 0))
            CASES_WARNING.labels(r["district"] or "").set(int(r["warning"] or 0))
            CASES_OVERDUE.labels(r["district"] or "").set(int(r["overdue"] or 0))


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(
    js: JetStreamContext = Depends(get_jetstream),
    topo: Topology = Depends(get_topology),
    pool: asyncpg.Pool = Depends(get_pool),
    ref: Reference = Depends(get_reference),
) -> Response:
    """Prometheus exposition: intake, consumer lag, projection lag, open / overdue cases."""
    await refresh_gauges(js, topo, pool, ref.partitions)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
