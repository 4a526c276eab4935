"""HTTP load generator: reports through the public API, measured until visible in the queue.

Two measurements (numbers, never pass/fail):
- ``intake``: as fast as the system takes them — P processes × C connections post N reports
  (unique idempotency keys, random grid by GPS, random category); the sustained rate is N ÷
  (time from the first POST until the last case is visible in the case-queue read model).
- ``latency``: a fixed rate R for D seconds; a poller reads the case queue every 10 ms and
  records when each case number first appears; report → visible p50 / p95 / p99.

    python -m benchmarks.loadgen intake --url http://127.0.0.1:8319 --reports 20000
    python -m benchmarks.loadgen latency --url http://127.0.0.1:8319 --rate 500 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import time
import uuid
from typing import Any

import asyncpg
import httpx

from benchmarks.common import summary_ms
from core.refdata import load_reference
from core.settings import Settings


async def sign_in(client: httpx.AsyncClient, user: str, password: str) -> dict[str, str]:
    response = await client.post("/v1/auth/token", data={"username": user, "password": password})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def bodies(n: int, seed: int) -> list[dict[str, Any]]:
    from benchmarks.common import report_body

    ref = load_reference(Settings())
    rng = random.Random(seed)
    return [report_body(ref, rng) for _ in range(n)]


async def _post_many(
    url: str,
    items: list[dict[str, Any]],
    concurrency: int,
    user: str,
    password: str,
    batch: int = 1,
) -> tuple[int, int, list[float]]:
    """Post ``items`` over ``concurrency`` connections: one per request, or ``batch`` per
    ``POST /v1/reports/batch`` when ``batch`` > 1. Latencies are per HTTP request."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        headers = await sign_in(client, user, password)
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        for i in range(0, len(items), batch):
            queue.put_nowait(items[i : i + batch])
        ok = failed = 0
        latencies: list[float] = []

        async def lane() -> None:
            nonlocal ok, failed
            while not queue.empty():
                group = queue.get_nowait()
                t = time.perf_counter()
                if batch == 1:
                    r = await client.post(
                        "/v1/reports",
                        json=group[0],
                        headers={**headers, "Idempotency-Key": f"bench-{uuid.uuid4().hex}"},
                    )
                    good = int(r.status_code == 202)
                else:
                    payload = [{**b, "idempotency_key": f"bench-{uuid.uuid4().hex}"} for b in group]
                    r = await client.post(
                        "/v1/reports/batch", json={"reports": payload}, headers=headers
                    )
                    good = r.json()["accepted"] if r.status_code == 200 else 0
                latencies.append(time.perf_counter() - t)
                ok += good
                failed += len(group) - good

        await asyncio.gather(*[lane() for _ in range(concurrency)])
        return ok, failed, latencies


def _process(args: tuple[str, int, int, int, str, str, int]) -> tuple[int, int, list[float]]:
    url, n, concurrency, seed, user, password, batch = args
    return asyncio.run(_post_many(url, bodies(n, seed), concurrency, user, password, batch))


async def _count_since(db: str, schema: str, since: float) -> int:
    conn = await asyncpg.connect(db, server_settings={"search_path": schema})
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM case_queue WHERE reported_at >= to_timestamp($1)", since
            )
        )
    finally:
        await conn.close()


def intake(
    url: str,
    db: str,
    schema: str,
    reports: int,
    processes: int,
    concurrency: int,
    user: str,
    password: str,
    batch: int = 1,
) -> dict[str, Any]:
    """Post ``reports`` as fast as possible (``batch`` per request); time until all are
    visible in the case queue."""
    wall0 = time.time()
    t0 = time.perf_counter()
    per = reports // processes
    with mp.get_context("spawn").Pool(processes) as pool:
        results = pool.map(
            _process, [(url, per, concurrency, i, user, password, batch) for i in range(processes)]
        )
    accepted_s = time.perf_counter() - t0
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    latencies = [x for r in results for x in r[2]]
    while asyncio.run(_count_since(db, schema, wall0 - 1)) < ok:
        time.sleep(0.05)
    visible_s = time.perf_counter() - t0
    return {
        "batch": batch,
        "reports": ok,
        "refused": failed,
        "accepted_per_s": round(ok / accepted_s),
        "visible_per_s": round(ok / visible_s),
        "seconds_to_visible": round(visible_s, 2),
        "http_request": summary_ms(latencies),
    }


async def latency(
    url: str, db: str, schema: str, rate: float, seconds: float, user: str, password: str
) -> dict[str, Any]:
    """Post at a fixed rate; measure report → visible in the case queue."""
    items = bodies(int(rate * seconds) + 1, 99)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    conn = await asyncpg.connect(db, server_settings={"search_path": schema})
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        headers = await sign_in(client, user, password)
        done = asyncio.Event()

        async def poll() -> None:
            while not (done.is_set() and len(seen) >= len(sent)):
                pending = [no for no in sent if no not in seen]
                if pending:
                    rows = await conn.fetch(
                        "SELECT case_no FROM case_queue WHERE case_no = ANY($1)", pending
                    )
                    now = time.perf_counter()
                    for r in rows:
                        seen[r["case_no"]] = now
                await asyncio.sleep(0.01)

        async def post(body: dict[str, Any]) -> None:
            t = time.perf_counter()
            r = await client.post(
                "/v1/reports",
                json=body,
                headers={**headers, "Idempotency-Key": f"lat-{uuid.uuid4().hex}"},
            )
            if r.status_code == 202:
                sent[r.json()["case_no"]] = t

        poller = asyncio.create_task(poll())
        tasks = []
        start = time.perf_counter()
        for i, body in enumerate(items):
            target = start + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(body)))
        await asyncio.gather(*tasks)
        done.set()
        await asyncio.wait_for(poller, timeout=120)
    await conn.close()
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "report_to_visible": summary_ms([seen[n] - sent[n] for n in sent]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["intake", "latency"])
    parser.add_argument("--url", default="http://127.0.0.1:8319")
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5433/griddispatch")
    parser.add_argument("--schema", default="public")
    parser.add_argument("--reports", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1, help="reports per request (batch API)")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--user", default="calltaker")
    parser.add_argument("--password", default="calltaker-demo")
    a = parser.parse_args()
    if a.mode == "intake":
        print(
            intake(
                a.url, a.db, a.schema, a.reports, a.processes, a.concurrency, a.user,
                a.password, a.batch,
            )
        )
    else:
        print(asyncio.run(latency(a.url, a.db, a.schema, a.rate, a.seconds, a.user, a.password)))


if __name__ == "__main__":
    main()
