"""Nearby duplicates at scale (issue 17: ≤ 50 ms p99 with 1,000,000 cases).

    python -m benchmarks.nearby [--cases 1000000] [--open-share 0.3] [--queries 3000]
                                [--database-url URL]

Fills a scratch schema's ``case_queue`` (the real DDL, so the real partial index) with
``--cases`` synthetic cases — random grid points of the sample city, categories of the
catalogue, reported over the last year, ``--open-share`` of them still open — then times
``projections.nearby.nearby`` (what ``GET /v1/cases/nearby`` runs) at random points for random
categories, with the default 100 m / 30 days and a wide 500 m / 365 days. Prints p50 / p95 /
p99 / max and the mean number of cases found. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.common import percentile
from core.catalogue import Catalogue
from core.db import create_pool
from core.jurisdiction import Jurisdiction
from core.settings import Settings
from projections import nearby
from projections.queue import DDL

STATUSES_OPEN = ("reported", "filed", "dispatched", "in_progress", "awaiting_verification")
STATUSES_DONE = ("closed", "rejected", "merged")
COLUMNS = (
    "case_id", "case_no", "partition", "status", "category", "grid", "community", "district",
    "lat", "lon", "reported_at", "updated_at", "version", "last_event", "last_position",
)


def _rows(
    j: Jurisdiction, categories: list[str], count: int, open_share: float, now: datetime,
    rng: random.Random,
) -> list[tuple[Any, ...]]:
    grids = [j.grid(code) for code in sorted(j.grids)]
    boxes = [(g, g.geometry.bounds) for g in grids]
    out = []
    for n in range(count):
        grid, (west, south, east, north) = rng.choice(boxes)
        lat, lon = rng.uniform(south, north), rng.uniform(west, east)
        status = rng.choice(STATUSES_OPEN if rng.random() < open_share else STATUSES_DONE)
        at = now - timedelta(minutes=rng.uniform(0, 365 * 24 * 60))
        out.append((
            uuid.UUID(int=rng.getrandbits(128)), f"GD-B{n:012d}", j.partition_of(grid.code),
            status, rng.choice(categories), grid.code, grid.parent, j.partition_of(grid.code),
            lat, lon, at, at, 1, "Reported", n,
        ))
    return out


async def run(
    database_url: str, count: int, open_share: float, queries: int, seed: int
) -> dict[str, Any]:
    settings = Settings()
    j = Jurisdiction.load(settings.city_dir)
    categories = [c.code for c in Catalogue.load(settings.categories_file).all()]
    now = datetime.now(UTC)
    rng = random.Random(seed)
    schema = f"bench_nearby_{os.getpid()}"
    started = time.perf_counter()
    rows = _rows(j, categories, count, open_share, now, rng)
    pool = await create_pool(database_url, schema, max_size=2)
    try:
        async with pool.acquire() as conn:
            await conn.execute(DDL)
            # Only the index under test (and the primary key) while loading.
            for (name,) in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = "
                "'case_queue' AND indexname NOT IN ('case_queue_pkey', 'case_queue_nearby_idx', "
                "'case_queue_case_no_key')", schema,
            ):
                await conn.execute(f'DROP INDEX "{name}"')
            await conn.copy_records_to_table("case_queue", records=rows, columns=COLUMNS)
            await conn.execute("ANALYZE case_queue")
            loaded = time.perf_counter()
            results: dict[str, list[float]] = {}
            found: dict[str, list[int]] = {}
            shapes = [("100 m, 30 days", 100.0, 30), ("500 m, 365 days", 500.0, 365)]
            for label, radius, days in shapes:
                for i in range(queries + 50):
                    grid = j.grid(rng.choice(sorted(j.grids)))
                    west, south, east, north = grid.geometry.bounds
                    lat, lon = rng.uniform(south, north), rng.uniform(west, east)
                    t0 = time.perf_counter()
                    items = await nearby.nearby(
                        conn, lat=lat, lon=lon, category=rng.choice(categories),
                        radius_m=radius, since=now - timedelta(days=days),
                    )
                    if i >= 50:  # the first ones warm the cache
                        results.setdefault(label, []).append((time.perf_counter() - t0) * 1000)
                        found.setdefault(label, []).append(len(items))
            size = await conn.fetchval(
                "SELECT pg_size_pretty(pg_relation_size('case_queue_nearby_idx'))"
            )
            open_cases = await conn.fetchval(f"SELECT count(*) FROM case_queue WHERE {nearby.OPEN}")
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()
    return {
        "cases": count,
        "open": open_cases,
        "index_size": size,
        "load_s": round(loaded - started, 1),
        "shapes": {
            label: {
                "p50": round(percentile(ms, 50), 2), "p95": round(percentile(ms, 95), 2),
                "p99": round(percentile(ms, 99), 2), "max": round(max(ms), 2),
                "found_mean": round(sum(found[label]) / len(found[label]), 2),
            }
            for label, ms in results.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--open-share", type=float, default=0.3)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=12319)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    r = asyncio.run(run(args.database_url, args.cases, args.open_share, args.queries, args.seed))
    print(f"{r['cases']} cases, {r['open']} open; nearby index {r['index_size']}; "
          f"generated and loaded in {r['load_s']} s")
    print(f"{'query':<18}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'found':>8}")
    for label, s in r["shapes"].items():
        print(f"{label:<18}{s['p50']:>9}{s['p95']:>9}{s['p99']:>9}{s['max']:>9}"
              f"{s['found_mean']:>8}")


if __name__ == "__main__":
    main()
