"""HTTP load generator: reports through the public API, measured until visible in the queue.

Two measurements (numbers, never pass/fail):
- ``intake``: as fast as the system takes them — P processes × C connections post N reports
  (unique idempotency keys, random grid by GPS, random category), one per request or ``batch``
  per ``POST /v1/reports/batch``; the sustained rate is N ÷ (time from the first POST until
  the last case is visible in the case-queue read model).
- ``latency``: a fixed rate R for D seconds from P processes; a poller reads the case queue
  every 10 ms and records when each case number first appears; report → visible p50/p95/p99.

The client is aiohttp, in several processes: the load generator shares the two cores with the
system it measures, and httpx (used for the functional tests) spent about three times the CPU
per request — at 500 reports/s one httpx process could not keep the schedule.

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

import aiohttp
import asyncpg

from benchmarks.common import summary_ms
from core.ids import case_no_for_key
from core.refdata import load_reference
from core.settings import Settings


async def sign_in(client: Any, user: str, password: str) -> dict[str, str]:
    """Bearer headers for ``user`` (works with an aiohttp session or an httpx client)."""
    form = {"username": user, "password": password}
    if isinstance(client, aiohttp.ClientSession):
        async with client.post("/v1/auth/token", data=form) as response:
            response.raise_for_status()
            token = (await response.json())["access_token"]
    else:
        response = await client.post("/v1/auth/token", data=form)
        response.raise_for_status()
        token = response.json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def session(url: str, connections: int) -> aiohttp.ClientSession:
    """A keep-alive session of at most ``connections`` connections to the gateway."""
    return aiohttp.ClientSession(
        base_url=url,
        connector=aiohttp.TCPConnector(limit=connections, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(total=60),
    )


def bodies(n: int, seed: int) -> list[dict[str, Any]]:
    from benchmarks.common import report_body

    ref = load_reference(Settings())
    rng = random.Random(seed)
    return [report_body(ref, rng) for _ in range(n)]


# ----------------------------------------------------------------------------- intake


async def _post_many(
    url: str,
    items: list[dict[str, Any]],
    concurrency: int,
    user: str,
    password: str,
    batch: int = 1,
    start_at: float = 0.0,
) -> tuple[int, int, list[float], float, float]:
    """Post ``items`` over ``concurrency`` connections: one per request, or ``batch`` per
    ``POST /v1/reports/batch`` when ``batch`` > 1, from wall time ``start_at`` on (after
    signing in). Latencies are per HTTP request; also the wall times of the first POST and of
    the last answer."""
    async with session(url, concurrency) as client:
        headers = await sign_in(client, user, password)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        first = time.time()
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
                    async with client.post(
                        "/v1/reports",
                        json=group[0],
                        headers={**headers, "Idempotency-Key": f"bench-{uuid.uuid4().hex}"},
                    ) as r:
                        await r.read()
                        good = int(r.status == 202)
                else:
                    payload = [{**b, "idempotency_key": f"bench-{uuid.uuid4().hex}"} for b in group]
                    async with client.post(
                        "/v1/reports/batch", json={"reports": payload}, headers=headers
                    ) as r:
                        good = (await r.json())["accepted"] if r.status == 200 else 0
                latencies.append(time.perf_counter() - t)
                ok += good
                failed += len(group) - good

        await asyncio.gather(*[lane() for _ in range(concurrency)])
        return ok, failed, latencies, first, time.time()


def _process(
    args: tuple[str, int, int, int, str, str, int, float],
) -> tuple[int, int, list[float], float, float]:
    url, n, concurrency, seed, user, password, batch, start_at = args
    items = bodies(n, seed)
    return asyncio.run(_post_many(url, items, concurrency, user, password, batch, start_at))


async def poller(db: str, schema: str) -> asyncpg.Connection:
    """The one connection that watches for visible reports (``application_name`` says so:
    a CPU count of the database can leave its backend out, ``get_server_pid()``)."""
    conn: asyncpg.Connection = await asyncpg.connect(
        db, server_settings={"search_path": schema, "application_name": "loadgen-poller"}
    )
    return conn


async def _wait_visible(
    db: str, schema: str, table: str, since: float, ok: int, conn: asyncpg.Connection | None
) -> float:
    """Poll every 50 ms until ``ok`` rows of ``table`` were reported since ``since``; the
    wall time it was seen."""
    own = conn is None
    conn = conn or await poller(db, schema)
    query = f"SELECT count(*) FROM {table} WHERE reported_at >= to_timestamp($1)"
    try:
        while int(await conn.fetchval(query, since)) < ok:
            await asyncio.sleep(0.05)
        return time.time()
    finally:
        if own:
            await conn.close()


def intake(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`intake_async` in its own event loop."""
    return asyncio.run(intake_async(*args, **kwargs))


async def intake_async(
    url: str,
    db: str,
    schema: str,
    reports: int,
    processes: int,
    concurrency: int,
    user: str,
    password: str,
    batch: int = 1,
    *,
    table: str = "case_queue",
    conn: asyncpg.Connection | None = None,
    start_delay: float = 3.0,
) -> dict[str, Any]:
    """Post ``reports`` as fast as possible (``batch`` per request); time from the first POST
    until all are visible in ``table`` (the case queue; rows with a ``reported_at``).

    The sender processes sign in, then start together ``start_delay`` s after the call
    (process start-up is not counted). ``conn``: a :func:`poller` connection to use (else
    one is opened and closed)."""
    wall0 = time.time()
    start_at = wall0 + start_delay
    per = reports // processes
    jobs = [(url, per, concurrency, i, user, password, batch, start_at) for i in range(processes)]
    with mp.get_context("spawn").Pool(processes) as pool:
        results = await asyncio.to_thread(pool.map, _process, jobs)
    t0 = min(r[3] for r in results)
    accepted_s = max(r[4] for r in results) - t0
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    latencies = [x for r in results for x in r[2]]
    seen_at = await _wait_visible(db, schema, table, wall0 - 1, ok, conn)
    visible_s = seen_at - t0
    return {
        "batch": batch,
        "processes": processes,
        "connections_per_process": concurrency,
        "reports": ok,
        "refused": failed,
        "accepted_per_s": round(ok / accepted_s),
        "visible_per_s": round(ok / visible_s),
        "seconds_to_visible": round(visible_s, 2),
        "http_request": summary_ms(latencies),
        "first_post_at": round(t0, 3),
        "visible_at": round(seen_at, 3),
    }


# ----------------------------------------------------------------------------- latency


async def _paced(
    url: str, user: str, password: str, plan: list[tuple[float, str, dict[str, Any]]]
) -> tuple[dict[str, float], int, list[float], list[float]]:
    """Post each (wall time, key, body) of ``plan`` at its time; wall times of the 202s,
    refusals, and how late each POST started and how long each took (seconds)."""
    sent: dict[str, float] = {}
    refused = 0
    late: list[float] = []
    took: list[float] = []
    async with session(url, 200) as client:
        headers = await sign_in(client, user, password)

        async def post(at: float, key: str, body: dict[str, Any]) -> None:
            nonlocal refused
            t = time.time()
            late.append(t - at)
            try:
                async with client.post(
                    "/v1/reports", json=body, headers={**headers, "Idempotency-Key": key}
                ) as r:
                    await r.read()
                    took.append(time.time() - t)
                    if r.status == 202:
                        sent[case_no_for_key(key)] = t
                    else:
                        refused += 1
            except (TimeoutError, aiohttp.ClientError):
                # Far past saturation a request can wait longer than the client's 60 s:
                # counted as refused (the client gave up), the run goes on.
                took.append(time.time() - t)
                refused += 1

        tasks = []
        for at, key, body in plan:
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(at, key, body)))
        await asyncio.gather(*tasks)
    return sent, refused, late, took


def _paced_process(
    args: tuple[str, str, str, list[tuple[float, str, dict[str, Any]]]],
) -> tuple[dict[str, float], int, list[float], list[float]]:
    url, user, password, plan = args
    return asyncio.run(_paced(url, user, password, plan))


async def latency(
    url: str,
    db: str,
    schema: str,
    rate: float,
    seconds: float,
    user: str,
    password: str,
    processes: int = 2,
    *,
    table: str = "case_queue",
    conn: asyncpg.Connection | None = None,
    start: float | None = None,
) -> dict[str, Any]:
    """Post at a fixed rate (spread over ``processes``); measure report → visible in
    ``table`` (by its ``case_no``).

    Case numbers follow from the idempotency keys (``core.ids``), so the poller knows what to
    look for before the answers come back; times are wall-clock, comparable across processes.
    The schedule begins at wall time ``start`` (default: in 3 s; the senders sign in and wait
    for it). ``conn``: a :func:`poller` connection to use (else one is opened and closed).
    """
    n = int(rate * seconds)
    start = start if start is not None else time.time() + 3.0
    keys = [f"lat-{uuid.uuid4().hex}" for _ in range(n)]
    schedule = [(start + i / rate, keys[i], body) for i, body in enumerate(bodies(n, 99))]
    plans = [schedule[p::processes] for p in range(processes)]
    expected = {case_no_for_key(k): start + i / rate for i, k in enumerate(keys)}
    seen: dict[str, float] = {}
    own = conn is None
    conn = conn or await poller(db, schema)
    query = f"SELECT case_no FROM {table} WHERE case_no = ANY($1)"
    pool = mp.get_context("spawn").Pool(processes)
    try:
        pending_result = pool.map_async(
            _paced_process, [(url, user, password, plan) for plan in plans]
        )
        deadline = start + seconds + 120
        while time.time() < deadline:
            due = [no for no, at in expected.items() if at <= time.time() and no not in seen]
            if due:
                rows = await conn.fetch(query, due)
                now = time.time()
                for r in rows:
                    seen[r["case_no"]] = now
            if pending_result.ready() and _all_sent_seen(pending_result, seen):
                break
            await asyncio.sleep(0.01)
        results = pending_result.get(timeout=60)
    finally:
        pool.close()
        pool.join()
        if own:
            await conn.close()
    sent = {no: t for part, *_ in results for no, t in part.items()}
    refused = sum(r[1] for r in results)
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "processes": processes,
        "reports": len(sent),
        "refused": refused,
        "not_visible": len([no for no in sent if no not in seen]),
        "report_to_visible": summary_ms([seen[no] - t for no, t in sent.items() if no in seen]),
        "http_202": summary_ms([x for r in results for x in r[3]]),
        "send_lateness": summary_ms([x for r in results for x in r[2]]),
    }


def _all_sent_seen(result: Any, seen: dict[str, float]) -> bool:
    """Every report answered 202 is visible. (Counting instead — seen ≥ expected − refused —
    stopped too early once a report the client had given up on became visible anyway.)"""
    return all(no in seen for part, *_ in result.get() for no in part)


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
        print(
            asyncio.run(
                latency(a.url, a.db, a.schema, a.rate, a.seconds, a.user, a.password,
                        a.processes)
            )
        )


if __name__ == "__main__":
    main()
