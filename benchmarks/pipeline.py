"""Back-end capacity without HTTP: publish N report commands straight to JetStream and time
until every case is stored and visible in the case queue (worker + store + relay + projection).

    python -m benchmarks.pipeline --reports 20000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import report_command, rss_mb
from core import codec
from core.logging import configure_logging
from core.settings import Settings
from gateways.runtime import ROLES, Runtime


async def run(
    settings: Settings, nats_url: str, database_url: str, n: int, external: bool = False
) -> dict[str, Any]:
    """Publish ``n`` reports and wait until visible; ``external``: the roles run elsewhere
    (``gridctl up`` or ``gridctl run …`` processes on the same schema and stream prefix)."""
    runtime = await Runtime.open(settings, nats_url, database_url)
    if not external:
        runtime.start([r for r in ROLES if r != "watcher"])
    rng = random.Random(7)
    try:
        now = datetime.now(UTC)
        commands = [
            report_command(runtime.ref, f"pipe-{uuid.uuid4().hex}", now, rng) for _ in range(n)
        ]
        t0 = time.perf_counter()
        futures = []
        for cmd in commands:
            futures.append(
                await runtime.js.publish_async(
                    runtime.topo.command_subject(cmd.partition, "report"),
                    codec.dumps(cmd.model_dump(mode="json")),
                    headers={"Nats-Msg-Id": f"report:{cmd.command_id}"},
                )
            )
        await asyncio.gather(*futures)
        published = time.perf_counter() - t0
        trace = []
        while True:
            async with runtime.pool.acquire() as conn:
                seen = await conn.fetchval(
                    "SELECT count(*) FROM case_queue WHERE reported_at >= $1", now
                )
                stored = await conn.fetchval(
                    "SELECT coalesce(sum(position), 0) FROM relay_positions"
                )
            trace.append((round(time.perf_counter() - t0, 1), stored, seen))
            if seen >= n:
                break
            await asyncio.sleep(0.5)
        print(trace)
        total = time.perf_counter() - t0
        return {
            "reports": n,
            "publish_s": round(published, 2),
            "visible_s": round(total, 2),
            "reports_per_s": round(n / total),
            "rss_mb": rss_mb(),
        }
    finally:
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=20000)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--external",
        action="store_true",
        help="roles already run elsewhere with GRID_DB_SCHEMA/GRID_STREAM_PREFIX",
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    if args.external:
        settings = Settings()
    else:
        tag = uuid.uuid4().hex[:8]
        settings = Settings(GRID_DB_SCHEMA=f"bench_{tag}", GRID_STREAM_PREFIX=f"BENCH{tag.upper()}")
    print(asyncio.run(run(settings, args.nats, args.db, args.reports, args.external)))


if __name__ == "__main__":
    main()
