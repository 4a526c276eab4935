"""The domain alone, no database: µs per event of the case aggregate on a synthetic load.

    python -m benchmarks.domain --cases 2000          # this checkout
    (cd <worktree of an older revision> && python -m benchmarks.domain)   # compare

Each case is reported (the gateway's command for a random grid and category,
``benchmarks.common.report_command``) and walked 2 or 6 steps along the happy path by
``CaseService.execute`` (``benchmarks.bulk_load.lifecycle``): triage, deadlines, the event
payloads with their summaries and offers, and the per-case hash chain — what the worker and
the bulk loader spend per event before anything is stored. ``--profile`` prints cProfile's
top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
import uuid
from datetime import UTC, datetime

from aggregates.service import CaseService
from benchmarks.bulk_load import lifecycle, report_in
from core.refdata import load_reference
from core.settings import Settings


def run(cases: int, seed: int = 1) -> tuple[int, float, float]:
    """Events made, CPU seconds taken for ``cases`` cases, and of those the seconds of the
    reports alone (each case's first event: what the worker spends per report at intake,
    ``report_in``'s making of the command not counted)."""
    ref = load_reference(Settings())
    service = CaseService(ref.catalogue, ref.jurisdiction, ref.calendar)
    grids = sorted(ref.jurisdiction.grids)
    rng = random.Random(seed)
    at = datetime(2026, 5, 4, 1, tzinfo=UTC)
    events = 0
    reporting = 0.0
    clock = time.process_time  # CPU, not wall: steadier on a shared box
    started = clock()
    for i in range(cases):
        command = report_in(ref, f"bench-{i}-{uuid.uuid4().hex}", at, rng, grids)
        before = clock()
        case = next(iter(service.execute(command, None, lambda _id: None)))
        reporting += clock() - before
        lifecycle(service, case, 6 if i % 2 else 2, at)
        events += len(case.collect_events())
    return events, clock() - started, reporting


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.domain",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    run(200)  # warm-up: imports, caches
    events, seconds, reporting = run(args.cases)
    print(f"{args.cases} cases, {events} events: {seconds / events * 1e6:.0f} µs per event, "
          f"{seconds / args.cases * 1e6:.0f} µs per case, "
          f"{reporting / args.cases * 1e6:.0f} µs per report (the first event alone)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, args.cases // 2)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
