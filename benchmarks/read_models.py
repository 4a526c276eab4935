"""Each read model alone: CPU per report of the projector and of its PostgreSQL backend.

    python -m benchmarks.read_models --reports 3000 --batches 1,50

Why: at saturation the projector and its PostgreSQL are about a fifth of a report's CPU, and
the harness (``benchmarks.against_plain``) sees the process, not which of its read models
costs what. Here ``--reports`` reports are made by the real domain (``CaseService.execute``
on the gateway's commands, ``benchmarks.common.report_command``), saved through the
partitions' event stores in a scratch schema and read back as the relay publishes them
(``core.eventlog.read_envelopes``). Every read model the ``projector,notifier`` process keeps
then applies them alone, in batches of B (one transaction each, as the runner does), into its
own fresh tables: this process's CPU (``time.process_time``) and the database backend's
(``against_plain.live_threads_cpu``: ``schedstat``, so the database must run on this
machine), per report. Each round takes the next share of the reports (new cases, as at
intake). The schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import asyncpg

from aggregates.service import CaseService
from benchmarks.against_plain import live_threads_cpu
from benchmarks.common import report_command
from core import eventlog
from core.clock import SystemClock
from core.db import _init_connection
from core.eventstore import StoreRegistry
from core.refdata import load_reference
from core.settings import Settings
from projections.base import Envelope, Projection
from projections.notifications import NotifyProjection
from projections.read_models import all_projections
from projections.reporter_messages import ReporterMessages


def projector_models() -> list[Projection]:
    """What ``gridctl up``'s ``projector,notifier`` process applies to every event."""
    clock = SystemClock()
    return [*all_projections(), NotifyProjection(clock, 3600.0), ReporterMessages(clock, 3600.0)]


def stored_reports(db: str, schema: str, n: int, seed: int) -> list[str]:
    """``n`` reports made by the domain and saved through the event stores (blocking); the
    partitions written."""
    ref = load_reference(Settings())
    service = CaseService(ref.catalogue, ref.jurisdiction, ref.calendar)
    grids = sorted(ref.jurisdiction.grids)
    rng = random.Random(seed)
    by_partition: dict[str, list[Any]] = defaultdict(list)
    for i in range(n):
        command = report_command(ref, f"rm-{i}-{uuid.uuid4().hex}", datetime.now(UTC), rng,
                                 grids)
        by_partition[command.partition].extend(service.execute(command, None, lambda _id: None))
    stores = StoreRegistry(db, schema)
    try:
        for partition, cases in by_partition.items():
            for i in range(0, len(cases), 500):
                stores.get(partition).save(*cases[i: i + 500])
    finally:
        stores.close()
    return sorted(by_partition)


async def measure(
    db: str, reports: int, batches: list[int], rounds: int, schema: str | None = None
) -> dict[int, dict[str, list[tuple[float, float]]]]:
    """Per batch size, per read model, per round: (client µs, PostgreSQL µs) per report, in
    the scratch schema ``schema`` (default a new name), dropped afterwards."""
    schema = schema or f"bench_rm_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(db)
    await _init_connection(conn)  # JSON codecs, as the projector's pool has them
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        partitions = await asyncio.to_thread(stored_reports, db, schema, reports, 1)
        await conn.execute(f"SET search_path TO {schema}")
        envelopes: list[Envelope] = []
        for partition in partitions:
            envelopes.extend(await eventlog.read_envelopes(conn, partition, 0, 10**9))
        models = projector_models()
        for model in models:
            await conn.execute(model.ddl())
        await conn.execute("SET synchronous_commit = off")  # as the projector commits
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        share = len(envelopes) // (rounds * len(batches))
        out: dict[int, dict[str, list[tuple[float, float]]]] = {}
        for r in range(rounds):
            for b, size in enumerate(batches):
                start = (r * len(batches) + b) * share
                part = envelopes[start: start + share]
                for model in models:
                    client, server = time.process_time(), live_threads_cpu(backend)
                    for i in range(0, len(part), size):
                        async with conn.transaction():
                            await model.apply(conn, part[i: i + size])
                    spent = (1e6 * (time.process_time() - client) / len(part),
                             1e6 * (live_threads_cpu(backend) - server) / len(part))
                    out.setdefault(size, {}).setdefault(type(model).__name__, []).append(spent)
        return out
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


def render(results: dict[int, dict[str, list[tuple[float, float]]]], rounds: int) -> str:
    lines = []
    for size, models in results.items():
        lines += [f"\nBatches of {size}: CPU µs per report (rounds: ·)\n",
                  "| read model | projector (this process) | PostgreSQL backend |",
                  "|---|---|---|"]
        for name, spent in models.items():
            lines.append(f"| {name} | {' · '.join(f'{c:,.0f}' for c, _ in spent)} | "
                         f"{' · '.join(f'{s:,.0f}' for _, s in spent)} |")
        totals = [(sum(v[i][0] for v in models.values()), sum(v[i][1] for v in models.values()))
                  for i in range(rounds)]
        lines.append(f"| **all** | {' · '.join(f'{c:,.0f}' for c, _ in totals)} | "
                     f"{' · '.join(f'{s:,.0f}' for _, s in totals)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.read_models",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=3000)
    parser.add_argument("--batches", default="1,50", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b]
    results = asyncio.run(measure(args.db, args.reports, batches, args.rounds))
    print(f"{args.reports} reports, {args.rounds} rounds, batch sizes {batches}")
    print(render(results, args.rounds))


if __name__ == "__main__":
    main()
