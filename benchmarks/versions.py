"""The same load on several versions of griddispatch, interleaved: what one report costs each.

    python -m benchmarks.versions 2218e8d HEAD --rounds 2 --reports 3000
    python -m benchmarks.versions 2218e8d 0a0c685 HEAD --measures intake,latency --rates 50

Issue 14 asks that ``gridctl bench`` figures are not worse after the redesign; issue 19 asks
where the cost of a report went. Both need versions compared in one run on one machine (a
figure from yesterday on this shared box means little). For each revision a git worktree is
checked out (in a temporary directory; HEAD means the working tree itself) and its
``gridctl up --sample 0`` is started from there, on its own embedded NATS and PostgreSQL and
free ports, exactly as ``gridctl bench`` starts it. The harness — load generator, CPU
sampling from ``/proc``, process naming, PostgreSQL backends by the role they serve — is this
checkout's (``benchmarks.against_plain``), so every version is driven and counted the same
way. Rounds are interleaved (the versions in order in odd rounds, reversed in even ones).

Prints, per version, single reports visible per second and CPU µs per report at saturation
by process (median over rounds); with ``batch`` batched intake (``--batch`` per request);
with ``latency`` the report → visible percentiles and CPU per report at each fixed rate.
Old versions must have ``gridctl up --sample 0`` and the ``case_queue`` read model (every
version since the walking skeleton's second week).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.against_plain import RATES, Side, load_average, run_side
from benchmarks.standard import ROOT, _say, _start_system, machine


@contextmanager
def checkout(rev: str, into: Path) -> Iterator[Path]:
    """The code of ``rev``: this working tree for ``HEAD``/``.``, else a detached worktree."""
    if rev in ("HEAD", "."):
        yield ROOT
        return
    path = into / rev.replace("/", "_")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), rev],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                       check=False, capture_output=True)


@contextmanager
def system_of(name: str, code: Path, state: Path) -> Iterator[Side]:
    """``gridctl up`` of the checkout at ``code`` (its own servers, ports and state)."""
    state.mkdir(parents=True, exist_ok=True)
    proc, url, _, db = _start_system(state, cwd=code)
    try:
        yield Side(name, url, db, "public", "case_queue", "/v1/cases/{no}",
                   [proc.pid], {proc.pid: "gridctl up (supervisor)"})
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(sides: list[Side], args: argparse.Namespace) -> str:
    """The comparison as markdown: throughput and CPU per report by process, per version."""
    heads = [s.name for s in sides]
    lines = [f"| measure (median over {args.rounds} rounds) | " + " | ".join(heads) + " |",
             "|---|" + "---|" * len(heads)]

    def row(label: str, values: list[float], digits: int = 0) -> None:
        lines.append(f"| {label} | " + " | ".join(
            "–" if v != v else f"{v:,.{digits}f}" for v in values) + " |")

    def runs(side: Side, key: str) -> list[dict[str, Any]]:
        return side.runs.get(key, [])

    if "intake" in args.measures:
        row("single reports visible per s",
            [_median([r["visible_per_s"] for r in runs(s, "intake")]) for s in sides])
        names = sorted({n for s in sides for r in runs(s, "intake")
                        for n in r["cpu_us_per_report"]} - {"total"})
        for n in names:
            row(f"CPU µs per report, {n}", [
                _median([r["cpu_us_per_report"].get(n, 0) for r in runs(s, "intake")])
                for s in sides])
        row("**CPU µs per report, total**", [
            _median([r["cpu_us_per_report"]["total"] for r in runs(s, "intake")])
            for s in sides])
    if "batch" in args.measures:
        row(f"batched reports ({args.batch} per request) visible per s",
            [_median([r["visible_per_s"] for r in runs(s, "batch")]) for s in sides])
        row("batched: CPU µs per report, total", [
            _median([r["cpu_us_per_report"]["total"] for r in runs(s, "batch")])
            for s in sides])
    if "latency" in args.measures:
        for rate in args.rates:
            key = f"latency_{rate:g}"
            for pct in ("p50_ms", "p99_ms"):
                row(f"{rate:g}/s report → visible {pct[:3]} (ms)", [
                    _median([r["report_to_visible"][pct] for r in runs(s, key)])
                    for s in sides], 1)
            row(f"{rate:g}/s CPU µs per report, total", [
                _median([r["cpu_us_per_report"]["total"] for r in runs(s, key)])
                for s in sides])
    return "\n".join(lines)


async def _rounds(sides: list[Side], codes: list[Path], args: argparse.Namespace) -> None:
    args.settle_roots = [root for side in sides for root in side.roots]  # all quiet first
    for n in range(args.rounds):
        order = list(zip(sides, codes, strict=True))
        for side, code in order if n % 2 == 0 else reversed(order):
            _say(f"round {n + 1}/{args.rounds}: {side.name}")
            # The load generator's bodies come from that version's city and categories (an
            # older version refuses answers to questions its catalogue does not ask).
            os.environ["GRID_CITY"] = str(code / "deploy" / "cities" / "guiyang")
            os.environ["GRID_CATEGORIES"] = str(code / "deploy" / "categories.v1.json")
            await run_side(side, args)


def run(args: argparse.Namespace) -> str:
    header = [
        f"Measured {machine()}.",
        f"Command: python -m benchmarks.versions {' '.join(args.argv)}",
        f"Load before: {load_average()}",
    ]
    with tempfile.TemporaryDirectory(prefix="versions-") as tmp, ExitStack() as stack:
        sides, codes = [], []
        for i, rev in enumerate(args.revs):
            code = stack.enter_context(checkout(rev, Path(tmp)))
            _say(f"starting {rev} ({code})")
            codes.append(code)
            sides.append(stack.enter_context(
                system_of(rev, code, Path(tmp) / f"state-{i}")))
        asyncio.run(_rounds(sides, codes, args))
    header.append(f"Load after:  {load_average()}")
    return "\n".join(header) + "\n\n" + render(sides, args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.versions",
                                description=__doc__.split("\n")[0])
    p.add_argument("revs", nargs="+", help="git revisions (HEAD: this working tree)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--reports", type=int, default=3000, help="reports per intake run")
    p.add_argument("--warmup", type=int, default=300, help="reports before the first round")
    p.add_argument("--seconds", type=float, default=15, help="seconds per fixed-rate run")
    p.add_argument("--lead", type=float, default=6.0, help="start-up time of fixed-rate senders")
    p.add_argument("--batch", type=int, default=50, help="reports per batch request")
    p.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",") if x],
                   default=list(RATES[1:]), help="fixed rates for latency (reports/s)")
    p.add_argument("--measures", type=lambda v: [x for x in v.split(",") if x],
                   default=["intake"], help="any of intake, batch, latency")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    print(run(args))


if __name__ == "__main__":
    main()
