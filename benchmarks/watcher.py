"""The SLA watcher's pass over the open deadlines: CPU per pass for N open cases.

    python -m benchmarks.watcher --cases 5000,20000
    python -m benchmarks.watcher --cases 5000,20000 --unrecorded [--no-keep]

Builds a case queue of N open cases in a scratch schema (due in 3–22 days, none warned: the
usual state of an open case; one in a hundred past its yellow moment) and times what one
pass of ``gateways/watcher.py`` does before it publishes anything: ``open_deadlines``
(every page) and ``aggregates.sla.decide`` per row read. By default each row carries the
yellow moment its case recorded (``warning_at``), so the pass reads only the deadlines that
need a decision. ``--unrecorded``: the rows of a store written before events recorded it —
every pass reads them all and computes their moments, kept between passes
(``WarningTimes``, as the watcher does) or not (``--no-keep``). CPU of this process, best of
``--passes`` passes. The schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from aggregates import deadlines
from aggregates.sla import WarningTimes, decide
from core.db import _init_connection
from core.refdata import load_reference
from core.settings import Settings
from gateways.watcher import open_deadlines
from projections.queue import DDL

#: A Wednesday, 10:00 in Guiyang: working hours, so the working clock runs.
NOW = datetime(2026, 6, 3, 2, tzinfo=UTC)
OFFERS = {"dispatcher": ["dispatch", "return", "reject"], "system": ["escalate"]}


async def measure(
    db: str, counts: list[int], passes: int, keep: bool, recorded: bool = True
) -> list[str]:
    ref = load_reference(Settings())
    clock = ref.catalogue.get("BJ0101").clock
    since = NOW - timedelta(minutes=5)
    conn = await asyncpg.connect(db)
    schema = f"bench_watcher_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
    await _init_connection(conn)  # JSON columns as the watcher's pool reads them
    await conn.execute(DDL)
    lines = []
    try:
        for n in counts:
            await conn.execute("TRUNCATE case_queue")
            rows_in = []
            for i in range(n):
                due = NOW + timedelta(days=3 + i % 20)
                yellow = deadlines.warning_at(since, due, clock, ref.calendar)
                if i % 100 == 0:  # one in a hundred: its yellow moment has come
                    yellow = NOW - timedelta(minutes=1)
                rows_in.append((uuid.uuid4(), f"GD-BENCH-{i}", since, due,
                                yellow if recorded else None, OFFERS, i))
            await conn.executemany(
                "INSERT INTO case_queue (case_id, case_no, partition, status, category, grid, "
                "reported_at, updated_at, due_at, due_step, due_started_at, warning_at, "
                "offers, version, last_event, last_position) VALUES ($1, $2, '520102', "
                "'filed', 'BJ0101', '520102001001', $3, $3, $4, 'dispatch', $3, $5, $6, 1, "
                "'Filed', $7)",
                rows_in,
            )
            await conn.execute("ANALYZE case_queue")
            times = WarningTimes(ref.calendar) if keep else None
            best = float("inf")
            for _ in range(passes):
                started = time.process_time()
                rows = decisions = 0
                async for page in open_deadlines(conn, NOW, 5000):
                    rows += len(page)
                    decisions += sum(len(decide(dict(r), NOW, ref, times)) for r in page)
                if times is not None:
                    times.end_pass()
                best = min(best, time.process_time() - started)
            lines.append(
                f"{n:,} open cases ({rows:,} read, {decisions} decisions): {best * 1e3:.0f} ms "
                f"of CPU per pass, {best / rows * 1e6:.1f} µs per case"
            )
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watcher",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="5000,20000")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--unrecorded", action="store_true",
                        help="rows without a recorded yellow moment (an older store)")
    parser.add_argument("--no-keep", action="store_true",
                        help="with --unrecorded: compute every yellow moment on every pass")
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    counts = [int(c) for c in args.cases.split(",") if c]
    for line in asyncio.run(
        measure(args.db, counts, args.passes, not args.no_keep, not args.unrecorded)
    ):
        print(line)


if __name__ == "__main__":
    main()
