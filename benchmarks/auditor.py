"""Auditor benchmark: latency of ``GET /v1/audit/cases/{no}/history`` for a long case.

Through the full ASGI stack with auth (an auditor's bearer token, the read log written per
request), like ``benchmarks/store.py``: a case with 50 events (one report, 49 supervision
orders) among ``--cases`` ordinary ones, the relay sealing them into ``log_chain`` and the
projector indexing them in ``case_queue`` (so the history is what an auditor sees in
production: located through the queue, sealed, verified); both roles are stopped before the
timing, as the gateway process does not run them.

    python -m benchmarks.auditor --cases 2000 --repeats 500

Prints ``{"history": {p50_ms, p95_ms, p99_ms, …}, …}`` as JSON. Makes its own schema and
stream prefix and drops them afterwards (``--keep`` keeps them).
:func:`measure_history` is the timing loop, for other benchmarks to reuse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from typing import Any

import httpx

from benchmarks.common import rss_mb, summary_ms
from core.logging import configure_logging
from core.settings import Settings
from gateways.bootstrap import Runtime


async def measure_history(
    client: httpx.AsyncClient, headers: dict[str, str], case_no: str, repeats: int
) -> dict[str, Any]:
    """p50/p95/p99 (ms) of ``repeats`` sequential history requests for ``case_no``, plus the
    status code and event count of the last answer (a few warm-up requests first)."""
    path = f"/v1/audit/cases/{case_no}/history"
    for _ in range(min(5, repeats)):
        r = await client.get(path, headers=headers)
        assert r.status_code == 200, (r.status_code, r.text[:300])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = await client.get(path, headers=headers)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, (r.status_code, r.text[:300])
    body = r.json()
    return summary_ms(times) | {
        "status": r.status_code,
        "events": len(body["events"]),
        "integrity_ok": body["integrity"]["ok"],
        "sealed": body["integrity"]["sealed"],
    }


async def _wait_indexed(runtime: Runtime, case_no: str, events: int, timeout: float = 120) -> None:
    """Until the projector has the case at ``events`` and the relay sealed all of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with runtime.pool.acquire() as conn:
            if not await conn.fetchval("SELECT to_regclass('log_chain')"):
                row = None  # the relay creates it when it starts
            else:
                row = await conn.fetchrow(
                    "SELECT q.version, (SELECT count(*) FROM log_chain l "
                    "WHERE l.case_id = q.case_id) AS sealed FROM case_queue q WHERE q.case_no = $1",
                    case_no,
                )
        if row is not None and row["version"] == events and row["sealed"] == events:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"case {case_no} not indexed and sealed within {timeout} s")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.store import bulk_load, long_history_case
    from gateways.http.app import create_app

    tag = uuid.uuid4().hex[:8]
    os.environ["GRID_RATE_LIMITS"] = "false"  # measure capacity, not per-token limits
    settings = Settings(
        GRID_DB_SCHEMA=f"bench_audit_{tag}",
        GRID_STREAM_PREFIX=f"BAUDIT{tag.upper()}",
    )
    try:
        runtime = await Runtime.open(settings, args.nats, args.db)
    except BaseException:
        await _drop_partial(args, settings)  # the schema / streams made before it failed
        raise
    try:
        if args.cases:
            await bulk_load(runtime, args.cases)
        case_no = await long_history_case(runtime, args.events)
        runtime.start(["relay", "projector"])
        await _wait_indexed(runtime, case_no, args.events)
        # Sealed and indexed: stop them, as in production the gateway process serves HTTP
        # and the relay / projector run in processes of their own (the relay would otherwise
        # poll the store every 50 ms in this process while we measure).
        for role in ("relay", "projector"):
            await runtime.stop_role(role)
        app = create_app(runtime)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            token = await client.post(
                "/v1/auth/token", data={"username": "auditor", "password": "auditor-demo"}
            )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            if args.profile:  # optional: pyinstrument is not a dependency
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="enabled")
                with profiler:
                    history = await measure_history(client, headers, case_no, args.repeats)
                with open(args.profile, "w") as out:
                    out.write(profiler.output_text(unicode=True, show_all=False))
            else:
                history = await measure_history(client, headers, case_no, args.repeats)
        return {
            "history": history,
            "case_events": args.events,
            "background_cases": args.cases,
            "rss_mb": rss_mb(),
        }
    finally:
        if not args.keep:
            await _drop(runtime)
        await runtime.close()


async def _drop(runtime: Runtime) -> None:
    """Remove the bench's streams and schema, on the runtime's own pool (a new connection
    can be refused when PostgreSQL's 100 are taken by other suites)."""
    from core.messaging import delete_streams

    with contextlib.suppress(Exception):
        await delete_streams(runtime.js, runtime.topo)
    async with runtime.pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {runtime.settings.db_schema} CASCADE")


async def _drop_partial(args: argparse.Namespace, settings: Settings) -> None:
    """Best-effort removal of what a failed ``Runtime.open`` may have made (retried: it
    failed most likely for want of a free PostgreSQL connection)."""
    import asyncpg

    from core.messaging import Topology, delete_streams
    from core.messaging import connect as nats_connect

    for _ in range(10):
        try:
            conn = await asyncpg.connect(args.db)
        except Exception:
            await asyncio.sleep(3)
            continue
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {settings.db_schema} CASCADE")
        finally:
            await conn.close()
        break
    with contextlib.suppress(Exception):
        nc = await nats_connect(args.nats, name="bench-auditor-cleanup")
        try:
            await delete_streams(nc.jetstream(), Topology(settings.stream_prefix))
        finally:
            await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="ordinary cases around it")
    parser.add_argument("--events", type=int, default=50, help="events of the measured case")
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--profile", metavar="FILE",
                        help="write a pyinstrument profile of the timed loop (text) to FILE; "
                        "it sees the event loop thread (the store reads run in a worker thread)")
    parser.add_argument("--keep", action="store_true", help="keep the bench schema and streams")
    configure_logging("WARNING")
    print(json.dumps(asyncio.run(main_async(parser.parse_args()))))


if __name__ == "__main__":
    main()
