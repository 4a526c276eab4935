"""Search-as-you-type over the standard address list (issue 17: ≤ 50 ms p99 at 500,000).

    python -m benchmarks.places [--addresses 500000] [--queries 3000] [--database-url URL]

Generates ``--addresses`` rows with the sample city's generator (roads across every
community, numbers, buildings, POIs), checks and stores them like ``gridctl places import``
into a scratch schema, then times ``core.places.search`` — what ``GET /v1/places`` runs — for
prefixes people type: the first 1–4 characters of a road, a road and part of its number,
POI names, pinyin initials (2–5 letters) and full pinyin. Prints p50 / p95 / p99 / max per
kind and overall, and the import's times. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from typing import Any

from benchmarks.common import percentile
from core import places
from core.db import create_pool
from core.jurisdiction import Jurisdiction
from core.settings import Settings
from gateways.cli_places import generate


def _typed(rng: random.Random, entry: places.Place) -> tuple[str, str]:
    """A (kind, prefix) someone could be typing when looking for ``entry``."""
    road = entry.road or ""
    choice = rng.random()
    if entry.poi and choice < 0.2:
        return "poi", entry.poi[: rng.randint(2, min(5, len(entry.poi)))]
    if choice < 0.45:
        return "road prefix", road[: rng.randint(1, min(4, len(road)))]
    if choice < 0.6:
        return "road + number", (entry.address or road)[: len(road) + rng.randint(1, 2)]
    if choice < 0.85:
        return "initials", entry.py[: rng.randint(2, min(5, len(entry.py)))]
    return "full pinyin", entry.pinyin[: rng.randint(3, min(10, len(entry.pinyin)))]


async def run(database_url: str, count: int, queries: int, seed: int) -> dict[str, Any]:
    j = Jurisdiction.load(Settings().city_dir)
    schema = f"bench_places_{os.getpid()}"
    started = time.perf_counter()
    rows = generate(j, count, seed)
    generated = time.perf_counter()
    entries: list[places.Place] = []
    for raw in rows:
        with contextlib.suppress(places.PlaceRejected):
            entries.append(places.check(raw, j))
    entries += places.roads(entries, j)
    checked = time.perf_counter()
    pool = await create_pool(database_url, schema, max_size=2)
    try:
        async with pool.acquire() as conn:
            trgm = await places.setup(conn)
            await places.store(conn, entries)
            await conn.execute("ANALYZE places")
            stored = time.perf_counter()
            rng = random.Random(seed)
            typed = [_typed(rng, rng.choice(entries)) for _ in range(queries)]
            for _, q in typed[:100]:  # warm the cache and the prepared statements
                await places.search(conn, q)
            times: dict[str, list[float]] = {}
            empty = 0
            for kind, q in typed:
                t0 = time.perf_counter()
                found = await places.search(conn, q)
                times.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
                empty += not found
            total = await places.count(conn)
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()
    every = [t for ts in times.values() for t in ts]
    return {
        "entries": total,
        "trgm": trgm,
        "generate_s": round(generated - started, 1),
        "check_s": round(checked - generated, 1),
        "store_s": round(stored - checked, 1),
        "queries": len(every),
        "no_result": empty,
        "by_kind": {
            kind: _stats(ts) for kind, ts in sorted(times.items())
        },
        "all": _stats(every),
    }


def _stats(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p95": round(percentile(ms, 95), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--addresses", type=int, default=500_000)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=12319)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.database_url, args.addresses, args.queries, args.seed))
    print(
        f"{result['entries']} entries (pg_trgm: {result['trgm']}); generated in "
        f"{result['generate_s']} s, checked (pinyin, grid) in {result['check_s']} s, "
        f"stored in {result['store_s']} s"
    )
    print(f"{result['queries']} searches, {result['no_result']} without a result")
    print(f"{'kind':<16}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for kind, s in [*result["by_kind"].items(), ("all", result["all"])]:
        print(f"{kind:<16}{s['n']:>6}{s['p50']:>9}{s['p95']:>9}{s['p99']:>9}{s['max']:>9}")


if __name__ == "__main__":
    main()
