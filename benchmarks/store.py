"""Store-level benchmarks: bulk-load cases through the domain, rebuild the read models,
then time the command-centre queries and the auditor's history on that data.

The cases are made by the real ``CaseService`` + ``Case`` aggregate and turned into stored
rows by the event store's own mapper; ``benchmarks/bulk_load.py`` writes them with COPY in
parallel processes (``--slow-load``: saved by the store, 1,000 cases per transaction, what
the worker does). HTTP and NATS are skipped — the point is to have N cases in the store,
rebuild the read models from it (the rebuild's events/s is measured per projection), then
measure the queries through the full ASGI stack.

    python -m benchmarks.store --cases 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aggregates.commands import Command
from benchmarks import bulk_load as copy_loader
from benchmarks.bulk_load import STEP_CHOICES, lifecycle
from benchmarks.common import report_command, rss_mb, summary_ms
from core.logging import configure_logging
from core.settings import Settings

if TYPE_CHECKING:
    # Imported where used: the loader's processes import this module again (spawn) and
    # need none of the gateway (half a second of imports each, counted in the load's time).
    import httpx

    from gateways.bootstrap import Runtime


def _load_partition(
    runtime: Runtime, partition: str, commands: list[Command], rng: random.Random, batch: int
) -> tuple[int, list[str]]:
    store = runtime.stores.get(partition)
    events = 0
    numbers: list[str] = []
    for i in range(0, len(commands), batch):
        cases = []
        for cmd in commands[i : i + batch]:
            (case,) = runtime.service.execute(cmd, None, lambda _id: None)
            lifecycle(runtime.service, case, rng.choice(STEP_CHOICES), cmd.at)
            events += len(case.pending_events)  # type: ignore[attr-defined]
            cases.append(case)
            numbers.append(case.state.case_no)
        store.save(*cases)
    return events, numbers


async def bulk_load(runtime: Runtime, n: int, batch: int = 1000) -> dict[str, Any]:
    """Put ``n`` cases into the store through ``CaseStore.save`` (the worker's path; slow,
    ~300–1,600 cases/s: :func:`fast_load` for big loads)."""
    rng = random.Random(2026)
    start = datetime.now(UTC) - timedelta(days=60)
    by_partition: dict[str, list[Command]] = defaultdict(list)
    for i in range(n):
        at = start + timedelta(seconds=i * 5)
        cmd = report_command(runtime.ref, f"bulk-{uuid.uuid4().hex}", at, rng)
        by_partition[cmd.partition].append(cmd)
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *[
            asyncio.to_thread(_load_partition, runtime, p, cmds, random.Random(p), batch)
            for p, cmds in by_partition.items()
        ]
    )
    seconds = time.perf_counter() - t0
    events = sum(r[0] for r in results)
    return {
        "cases": n,
        "events": events,
        "seconds": round(seconds, 1),
        "cases_per_s": round(n / seconds),
        "sample_case_nos": results[0][1][:200],
    }


async def fast_load(runtime: Runtime, n: int, jobs: int | None = None) -> dict[str, Any]:
    """Put ``n`` cases into the store with COPY (benchmarks/bulk_load.py)."""
    result = await asyncio.to_thread(
        copy_loader.load,
        runtime.settings,
        runtime.database_url,
        runtime.settings.db_schema,
        n,
        jobs,
        10_000,
        None,
        True,
    )
    sample = result.pop("sample")
    rng = random.Random(3)
    rng.shuffle(sample)
    result["sample_case_nos"] = [no for no, _ in sample[:200]]
    return result


async def rebuild_all(runtime: Runtime, fast: bool = True) -> dict[str, Any]:
    """Rebuild every read model from the store (scratch schema + swap), one after the other."""
    from gateways.bootstrap import all_projections
    from projections.rebuild import rebuild

    out = {}
    for projection in all_projections():
        t0 = time.perf_counter()
        result = await rebuild(
            runtime.database_url,
            runtime.settings.db_schema,
            projection,
            runtime.stores,
            runtime.ref.partitions,
            fast=fast,
        )
        seconds = time.perf_counter() - t0
        out[projection.name] = {
            "events": result.events,
            "seconds": round(seconds, 1),
            "events_per_s": round(result.events / seconds),
        }
        _say(f"rebuilt {projection.name}: {out[projection.name]}")
    return out


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def long_history_case(runtime: Runtime, events: int = 50) -> str:
    """A case with ``events`` events (supervision orders pile up on a slow case)."""
    rng = random.Random(5)
    cmd = report_command(runtime.ref, f"history-{uuid.uuid4().hex}", datetime.now(UTC), rng)
    (case,) = runtime.service.execute(cmd, None, lambda _id: None)
    for i in range(events - 1):
        sup = Command(
            command_id=uuid.uuid4().hex,
            verb="supervise",
            case_id=cmd.case_id,
            case_no=cmd.case_no,
            partition=cmd.partition,
            actor="leader",
            role="supervisor",
            channel="bench",
            at=cmd.at + timedelta(minutes=i + 1),
            args={"reason": f"督办 {i}"},
        )
        runtime.service.execute(sup, case, lambda _id: None)
    await asyncio.to_thread(runtime.stores.get(cmd.partition).save, case)
    return cmd.case_no


async def time_queries(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    case_nos: list[str],
    district: str,
    repeats: int = 200,
) -> dict[str, Any]:
    """p50/p99 of the dispatcher's everyday queries, one case's detail, and the command
    centre's queue, map and metrics, through the full ASGI stack (auth included)."""
    rng = random.Random(1)
    first = (await client.get("/v1/cases", params={"limit": 50}, headers=headers)).json()
    cursor = first.get("next_cursor")
    deep = (
        await client.get("/v1/queue", params={"limit": 500, "status": "closed"}, headers=headers)
    ).json()
    queries: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "queue_newest": [("/v1/cases", {"limit": 50})],
        "queue_by_status_district": [
            ("/v1/cases", {"status": s, "district": district, "limit": 50})
            for s in ("reported", "filed", "dispatched", "in_progress", "closed")
        ],
        "queue_next_page": [("/v1/cases", {"limit": 50, "cursor": cursor})],
        "case_detail": [(f"/v1/cases/{no}", {}) for no in case_nos[:100]],
        "centre_queue_due_soonest": [("/v1/queue", {"limit": 50, "sort": "due_at"})],
        "centre_queue_open_district": [
            ("/v1/queue", {"limit": 50, "open": "true", "district": district})
        ],
        "centre_queue_next_page": [
            ("/v1/queue", {"limit": 50, "status": "closed", "cursor": deep["next_cursor"]})
        ],
        "centre_map_city": [("/v1/map", {})],
        "centre_map_district": [("/v1/map", {"node": district})],
        "centre_metrics_30_days": [("/v1/metrics", {})],
        "centre_metrics_by_district": [("/v1/metrics", {"group_by": "district"})],
    }
    out = {}
    for name, calls in queries.items():
        for path, params in calls[:3]:  # warm the plans and the pool
            await client.get(path, params=params, headers=headers)
        times = []
        for _ in range(repeats):
            path, params = rng.choice(calls)
            t = time.perf_counter()
            r = await client.get(path, params=params, headers=headers)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
        out[name] = summary_ms(times)
        _say(f"{name}: p50 {out[name]['p50_ms']} ms, p99 {out[name]['p99_ms']} ms")
    return out


async def auditor_history(client: httpx.AsyncClient, case_no: str) -> dict[str, Any]:
    audit = await client.post(
        "/v1/auth/token", data={"username": "auditor", "password": "auditor-demo"}
    )
    headers = {"Authorization": f"Bearer {audit.json()['access_token']}"}
    from benchmarks.auditor import measure_history

    return await measure_history(client, headers, case_no, 200)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from gateways.bootstrap import Runtime
    from gateways.http.app import create_app

    tag = uuid.uuid4().hex[:8]
    os.environ["GRID_RATE_LIMITS"] = "false"  # measure capacity, not per-token limits
    settings = Settings(
        GRID_DB_SCHEMA=f"bench_store_{tag}",
        GRID_STREAM_PREFIX=f"BSTORE{tag.upper()}",
    )
    runtime = await Runtime.open(settings, args.nats, args.db)
    started = time.perf_counter()
    try:
        _say(f"loading {args.cases:,} cases into schema {settings.db_schema}")
        if getattr(args, "slow_load", False):
            loaded = await bulk_load(runtime, args.cases)
        else:
            loaded = await fast_load(runtime, args.cases, getattr(args, "jobs", None))
        _say(f"loaded: { {k: v for k, v in loaded.items() if k != 'sample_case_nos'} }")
        history_no = await long_history_case(runtime)
        rebuilt = await rebuild_all(runtime, fast=not getattr(args, "slow_rebuild", False))
        gc.collect()
        app = create_app(runtime)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            token = (
                await client.post(
                    "/v1/auth/token", data={"username": "dispatcher", "password": "dispatcher-demo"}
                )
            ).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            district = runtime.ref.partitions[0]
            queries = await time_queries(client, headers, loaded["sample_case_nos"], district)
            auditor = await auditor_history(client, history_no)
            _say(f"auditor history: {auditor}")
        loaded.pop("sample_case_nos")
        return {
            "load": loaded,
            "rebuild": rebuilt,
            "queries": queries,
            "auditor_history_50_events": auditor,
            "rss_mb": rss_mb(),
            "total_seconds": round(time.perf_counter() - started),
        }
    finally:
        if not args.keep:
            await drop_deployment(runtime)
        await runtime.close()


async def drop_deployment(runtime: Runtime) -> None:
    """Remove the bench's schema and streams (it made them; nothing else is touched)."""
    import asyncpg

    from core.messaging import delete_streams

    await delete_streams(runtime.js, runtime.topo)
    conn = await asyncpg.connect(runtime.database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {runtime.settings.db_schema} CASCADE")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="keep the bench schema")
    parser.add_argument("--jobs", type=int, default=None, help="loader processes (default: cores)")
    parser.add_argument(
        "--slow-load", action="store_true", help="save through the store, not COPY"
    )
    parser.add_argument(
        "--slow-rebuild", action="store_true", help="rebuild through apply_batch, not COPY"
    )
    configure_logging("WARNING")
    print(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
