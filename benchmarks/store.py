"""Store-level benchmarks: bulk-load cases through the domain, rebuild the read models,
then time the command-centre queries and the auditor's history on that data.

The cases are made by the real ``CaseService`` + ``Case`` aggregate and saved by the real
event store, many per transaction (what the worker does), skipping only HTTP and NATS —
the point is to have N cases in the store and the read models, then measure queries.

    python -m benchmarks.store --cases 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from aggregates.case import Case
from aggregates.commands import Command
from benchmarks.common import report_command, rss_mb, summary_ms
from core.logging import configure_logging
from core.settings import Settings
from gateways.runtime import Runtime, all_projections
from projections.rebuild import rebuild

STEPS = ("file", "dispatch", "accept", "report_result", "verify_pass", "close")


def _lifecycle(runtime: Runtime, case: Case, steps: int, at: datetime, rng: random.Random) -> None:
    """Move a freshly reported case ``steps`` steps along the happy path."""
    roles = {
        "file": "dispatcher",
        "dispatch": "dispatcher",
        "accept": "handler",
        "report_result": "handler",
        "verify_pass": "inspector",
        "close": "dispatcher",
    }
    args: dict[str, dict[str, Any]] = {"report_result": {"note": "已處置"}}
    for i, verb in enumerate(STEPS[:steps]):
        cmd = Command(
            command_id=uuid.uuid4().hex,
            verb=verb,  # type: ignore[arg-type]
            case_id=str(case.id),
            case_no=case.case_no,
            partition=case.district,
            actor="bench",
            role=roles[verb],
            channel="bench",
            at=at + timedelta(minutes=10 * (i + 1)),
            args=args.get(verb, {}),
        )
        runtime.service.execute(cmd, case, lambda _id: None)


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
            _lifecycle(runtime, case, rng.choice([0, 1, 2, 3, 6]), cmd.at, rng)
            events += len(case.pending_events)  # type: ignore[attr-defined]
            cases.append(case)
            numbers.append(case.case_no)
        store.save(*cases)
    return events, numbers


async def bulk_load(runtime: Runtime, n: int, batch: int = 1000) -> dict[str, Any]:
    """Put ``n`` cases (with a realistic spread of lifecycle steps) into the store."""
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


async def rebuild_all(runtime: Runtime) -> dict[str, Any]:
    out = {}
    for projection in all_projections():
        t0 = time.perf_counter()
        result = await rebuild(
            runtime.database_url,
            runtime.settings.db_schema,
            projection,
            runtime.stores,
            runtime.ref.partitions,
        )
        seconds = time.perf_counter() - t0
        out[projection.name] = {
            "events": result.events,
            "seconds": round(seconds, 1),
            "events_per_s": round(result.events / seconds),
        }
    return out


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
            args={"reason": f"督辦 {i}"},
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
    """p50/p99 of the dispatcher's everyday queries and of one case's detail."""
    rng = random.Random(1)
    first = (await client.get("/v1/cases", params={"limit": 50}, headers=headers)).json()
    cursor = first.get("next_cursor")
    queries: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "queue_newest": [("/v1/cases", {"limit": 50})],
        "queue_by_status_district": [
            ("/v1/cases", {"status": "reported", "district": district, "limit": 50})
        ],
        "queue_next_page": [("/v1/cases", {"limit": 50, "cursor": cursor})],
        "case_detail": [(f"/v1/cases/{no}", {}) for no in case_nos[:100]],
    }
    out = {}
    for name, calls in queries.items():
        times = []
        for _ in range(repeats):
            path, params = rng.choice(calls)
            t = time.perf_counter()
            r = await client.get(path, params=params, headers=headers)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
        out[name] = summary_ms(times)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from gateways.http.app import create_app

    tag = uuid.uuid4().hex[:8]
    os.environ["GRID_RATE_LIMITS"] = "false"  # measure capacity, not per-token limits
    settings = Settings(
        GRID_DB_SCHEMA=f"bench_store_{tag}",
        GRID_STREAM_PREFIX=f"BSTORE{tag.upper()}",
    )
    runtime = await Runtime.open(settings, args.nats, args.db)
    try:
        loaded = await bulk_load(runtime, args.cases)
        history_no = await long_history_case(runtime)
        rebuilt = await rebuild_all(runtime)
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
            audit = await client.post(
                "/v1/auth/token", data={"username": "auditor", "password": "auditor-demo"}
            )
            aheaders = {"Authorization": f"Bearer {audit.json()['access_token']}"}
            history = []
            for _ in range(200):
                t = time.perf_counter()
                r = await client.get(f"/v1/audit/cases/{history_no}/history", headers=aheaders)
                history.append(time.perf_counter() - t)
            auditor = summary_ms(history) | {"status": r.status_code}
        loaded.pop("sample_case_nos")
        return {
            "load": loaded,
            "rebuild": rebuilt,
            "queries": queries,
            "auditor_history_50_events": auditor,
            "rss_mb": rss_mb(),
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
    configure_logging("WARNING")
    print(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
