"""``gridctl bench``: the standard benchmark set; the numbers go into docs/performance.md.

Starts its own ``gridctl up`` (embedded NATS + PostgreSQL on free ports, rate limits off, no
sample data) in a temporary state directory, then measures, while a sampler records the peak
RSS of every process of the system:
1. sustained intake over HTTP, one report per request and batched (``POST /v1/reports/batch``):
   accepted → stored → visible in the case-queue read model;
2. report → visible latency at fixed rates (single reports): the curve up to ``--rate``;
3. the realistic mix (``benchmarks.mix``): singles and batches, file + dispatch commands,
   dispatcher queries, all at once;
4. on a separate store in the same PostgreSQL: N cases loaded through the domain, projection
   rebuild events/s, command-centre query and auditor history latency (``benchmarks.store``).
Numbers are printed and written between the ``bench`` markers of docs/performance.md with the
machine and the command; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import loadgen, mix, store
from core.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _start_system(
    state: Path, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], str, str, str]:
    http, nats_port, pg_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        GRID_RATE_LIMITS="false",
        GRID_NATS_PORT=str(nats_port),
        GRID_PG_PORT=str(pg_port),
        GRID_LOG_LEVEL="WARNING",
    )
    env.pop("NATS_URL", None)
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateways.cli", "up", "--state-dir", str(state),
         "--port", str(http), "--sample", "0"],
        env=env,
        cwd=cwd,  # another checkout's code (benchmarks/versions.py); this one's when None
        stdout=(state / "up.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{http}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        raise RuntimeError(f"system did not start; see {state / 'up.log'}")
    return (
        proc,
        url,
        f"nats://127.0.0.1:{nats_port}",
        f"postgresql://postgres@127.0.0.1:{pg_port}/griddispatch",
    )


def _name(proc: psutil.Process, root: int) -> str:
    """A readable name for a process of the system tree (role, server, or the supervisor)."""
    cmd = proc.cmdline()
    if proc.pid == root:
        return "gridctl up (supervisor)"
    if "run" in cmd and cmd.index("run") + 1 < len(cmd):
        return cmd[cmd.index("run") + 1]
    exe = Path(cmd[0]).name if cmd else proc.name()
    return "postgres (all backends)" if exe.startswith("postgres") else exe


class RssSampler:
    """Peak RSS (MB) per process name of a process tree, sampled every ``interval`` s.

    PostgreSQL's backends are summed (they share most pages, so the sum overstates)."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root = root
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> dict[str, float]:
        now: dict[str, float] = {}
        try:
            root = psutil.Process(self.root)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return now
        for proc in procs:
            try:
                name = _name(proc, self.root)
                now[name] = now.get(name, 0.0) + proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, mb in self.sample().items():
                self.peak[name] = round(max(self.peak.get(name, 0.0), mb), 1)
            self._stop.wait(self.interval)


def python_speed_ms() -> float:
    """Best of three runs of a fixed pure-Python loop (10 M additions), in ms.

    Virtual 2-core machines of the same kind differ (and change from day to day) by a factor
    of two or more in single-thread speed; every number here scales with it, so the run
    records it before and after the load, next to the CPU time the hypervisor stole."""

    def loop() -> int:
        total = 0
        for i in range(10_000_000):
            total += i
        return total

    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        loop()
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


def cpu_ticks() -> tuple[int, int]:
    """(all, steal) jiffies from /proc/stat's ``cpu`` line; (0, 0) where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0, 0
    numbers = [int(x) for x in fields[:8]]
    return sum(numbers), numbers[7] if len(numbers) > 7 else 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    speed_before = python_speed_ms()
    ticks_before = cpu_ticks()
    results: dict[str, Any] = {}
    try:
        _run_parts(args, results)
    finally:
        ticks_after = cpu_ticks()
        elapsed = ticks_after[0] - ticks_before[0]
        results["machine"] = {
            "python_loop_ms_before": speed_before,
            "python_loop_ms_after": python_speed_ms(),
            "cpu_steal_pct": round(100 * (ticks_after[1] - ticks_before[1]) / elapsed, 1)
            if elapsed else None,
        }
    return results


def _run_parts(args: argparse.Namespace, results: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="griddispatch-bench-") as tmp:
        proc, url, nats_url, db = _start_system(Path(tmp))
        try:
            with RssSampler(proc.pid) as rss:
                who = ("calltaker", "calltaker-demo")
                _say("intake, one report per request")
                results["intake_single"] = loadgen.intake(
                    url, db, "public", args.reports, 2, 32, *who
                )
                _say(f"  {results['intake_single']}")
                _say(f"intake, {args.batch} reports per request")
                results["intake_batched"] = loadgen.intake(
                    url, db, "public", args.reports * 2, 2, 4, *who, batch=args.batch
                )
                _say(f"  {results['intake_batched']}")
                results["latency"] = {}
                for rate in sorted({*args.latency_rates, args.rate}):
                    _say(f"latency at {rate:g}/s, one report per request")
                    results["latency"][f"{rate:g}_per_s"] = asyncio.run(
                        loadgen.latency(url, db, "public", rate, args.seconds, *who)
                    )
                    _say(f"  {results['latency'][f'{rate:g}_per_s']}")
                _say(f"mix at {args.rate}/s")
                results["mix"] = asyncio.run(
                    mix.run_mix(url, db, "public", args.rate, args.seconds)
                )
                results["rss_peak_mb"] = dict(sorted(rss.peak.items()))
            if args.cases:
                _say(f"store: {args.cases:,} cases")
                store_args = argparse.Namespace(
                    cases=args.cases, nats=nats_url, db=db, keep=False, slow_load=False,
                    jobs=None, slow_rebuild=False,
                )
                results["store"] = asyncio.run(store.main_async(store_args))
        finally:
            proc.terminate()
            proc.wait(timeout=120)


def _say(text: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def report(results: dict[str, Any], command: str) -> str:
    """The generated section: when, where, how, then every number as JSON."""
    return "\n".join(
        [
            START,
            "## Latest `gridctl bench` run (generated)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, with",
            "",
            f"    {command}",
            "",
            "Load generator, gateway, worker, relay, projector, watcher, notifier, NATS and "
            "PostgreSQL all share the same machine.",
            "",
            *_speed_line(results.get("machine")),
            "```json",
            json.dumps(results, indent=2, ensure_ascii=False, default=str),
            "```",
            END,
        ]
    )


def _speed_line(speed: dict[str, Any] | None) -> list[str]:
    """How fast this machine was (numbers from different days compare only through it)."""
    if not speed:
        return []
    return [
        f"Machine speed: a 10 M-step pure-Python loop took {speed['python_loop_ms_before']} ms "
        f"before and {speed['python_loop_ms_after']} ms after the run; the hypervisor stole "
        f"{speed['cpu_steal_pct']} % of the CPU time during it.",
        "",
    ]


def write_into(path: Path, section: str) -> None:
    """Replace the text between the bench markers (or append the section)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gridctl bench", description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=20_000, help="single-report intake size")
    parser.add_argument("--batch", type=int, default=50, help="reports per batch request")
    parser.add_argument("--rate", type=float, default=500, help="reports/s for latency + mix")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--latency-rates", type=lambda v: [float(x) for x in v.split(",") if x],
        default=[200.0, 300.0, 400.0], help="more fixed rates for the latency curve",
    )
    parser.add_argument("--cases", type=int, default=1_000_000, help="0 skips the store part")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args(argv)
    results = run(args)
    print(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    command = "gridctl bench " + " ".join(argv if argv is not None else sys.argv[1:])
    write_into(args.out, report(results, command.strip()))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
