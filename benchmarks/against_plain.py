"""Issue 19: griddispatch side by side with the plain INSERT app, same machine, same load.

    gridctl bench --against-plain --rounds 1 --seconds 8 --reports 3000    # ≈ 3 minutes
    python -m benchmarks.against_plain --rounds 2 --seconds 15              # the full run

Starts both systems on free ports, each with its **own embedded servers** of the same builds
and settings (``core.embedded``: nats-server and PostgreSQL 16 from the wheels):
- griddispatch: ``gridctl up`` exactly as ``gridctl bench`` starts it (``benchmarks.standard``:
  one OS process per role, rate limits off, no sample data, its own state directory);
- the plain app (``benchmarks.plain_app``): one uvicorn process and its own PostgreSQL.
Embedded rather than the machine's shared servers on :5432 / :4222 because every process of a
server then belongs to one side and is counted whole — backends, WAL writer, checkpointer,
nats-server — while other engineers' tests on the shared servers would land in any server-wide
CPU delta; and nobody else's streams or schemas are touched.

Each side first takes ``--warmup`` reports (not measured). Rounds are interleaved
(griddispatch first in odd rounds, the plain app first in even ones) and each side is
driven by the same load generator (``benchmarks.loadgen``: aiohttp, two processes, the same
bodies). A report counts as visible when its row is in the table the read endpoint serves —
``case_queue`` for ``GET /v1/cases/{no}``, ``reports`` for the plain app's
``GET /v1/reports/{no}`` — polled by one connection (its backend is left out of the CPU);
after each side's round a sample of those reports is fetched through the HTTP endpoint
itself as a check.

CPU: user + system time of every process of a side's tree (all its threads, ended ones
included) from ``/proc/<pid>/stat``, sampled every 0.25 s while that side runs (10 ms
ticks: ± 10 ms per process and window; the whole round is also counted to the ns from the
live threads' ``/proc/<pid>/task/*/schedstat`` as a cross-check); PostgreSQL backends
are named by the process whose socket they serve (``pg:worker``…), the server's own
processes ``pg:server``. Saturation: CPU from the first POST until the last
report is visible ÷ reports. Steady rate R: CPU per second in the middle of the fixed-rate
run (from 1 s after its start to 0.5 s before its end) ÷ R. The load generator's own
processes are not counted (the same for both sides). The other side idles meanwhile and is
not counted either.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import loadgen
from benchmarks.pipeline import _cpu_s, _local_ports
from benchmarks.standard import _name, _say, _start_system, machine
from core.embedded import EmbeddedPostgres, free_port

WHO = ("calltaker", "calltaker-demo")
MEASURES = ("intake", "batch", "latency", "idle")
RATES = (20.0, 50.0, 100.0)
STEADY_RATES = (50.0, 100.0)


# ----------------------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class Target:
    """One target of issue 19: ``measure`` of griddispatch, alone or as a ratio to the plain
    app, must be ≥ (``at_least``) or ≤ the bound."""

    measure: str
    label: str
    bound: float
    at_least: bool
    ratio: bool  # griddispatch ÷ plain app; else griddispatch's own value


TARGETS = (
    Target("intake_single", "single-report intake, visible/s (× plain)", 0.7, True, True),
    Target("latency_100_p99", "report → visible p99 at 100/s (ms)", 50.0, False, False),
    Target("latency_20_p99", "report → visible p99 at 20/s (ms)", 30.0, False, False),
    Target("cpu_saturation", "CPU per report at saturation (× plain)", 2.0, False, True),
    Target("cpu_steady_50", "CPU per report at a steady 50/s (× plain)", 3.0, False, True),
    Target("cpu_steady_100", "CPU per report at a steady 100/s (× plain)", 3.0, False, True),
    Target("intake_batch", "batched intake (50 per request), visible/s (× plain)", 0.5, True,
           True),
)


@dataclass(frozen=True)
class Verdict:
    target: Target
    values: list[float]  # per round: the ratio, or griddispatch's value
    value: float  # the median of ``values``
    passed: bool


Rounds = tuple[list[float | None], list[float | None]]


def judge(measures: dict[str, Rounds]) -> list[Verdict]:
    """Each target against the per-round values ``measures[name] = (griddispatch, plain)``
    (rounds in the same order on both sides; ratios are taken round by round, as the rounds
    are interleaved pairs; ``None`` is a run that does not count, and its round is left out
    of a ratio). The verdict is on the median over rounds; a measure without a counting
    round has no verdict."""
    out = []
    for target in TARGETS:
        ours, plain = measures.get(target.measure, ([], []))
        if target.ratio:
            pairs = [(a, b) for a, b in zip(ours, plain, strict=False)
                     if a is not None and b is not None]
            values = [a / b if b else float("inf") for a, b in pairs]
        else:
            values = [a for a in ours if a is not None]
        if not values:
            continue
        value = statistics.median(values)
        passed = value >= target.bound if target.at_least else value <= target.bound
        out.append(Verdict(target, values, value, passed))
    return out


# ----------------------------------------------------------------------------- CPU from /proc


def live_threads_cpu(pid: int) -> float:
    """CPU time so far of a process's live threads: the sum of ``/proc/<pid>/task/*/schedstat``
    (ns; a process's own ``schedstat`` is its main thread only), else ``/proc/<pid>/stat``.
    Precise, but a thread that ended (anyio's and asyncio's pool threads end when idle)
    takes its time with it — so this is only the cross-check of :func:`_cpu_s`."""
    try:
        return sum(
            int((task / "schedstat").read_text().split()[0])
            for task in Path(f"/proc/{pid}/task").iterdir()
        ) / 1e9
    except (OSError, ValueError, IndexError):
        return _cpu_s(pid)


class CpuSampler:
    """CPU seconds of every process of some process trees, sampled every ``interval`` s in a
    thread: ``window(a, b)`` is the CPU spent between wall times ``a`` and ``b`` by process,
    from the last sample at or before ``a`` to the first at or after ``b`` (a process that
    appeared in between counts from zero)."""

    def __init__(self, roots: list[int], exclude: set[int], interval: float = 0.25) -> None:
        self.roots = roots
        self.exclude = exclude
        self.interval = interval
        self.samples: list[tuple[float, dict[int, float]]] = []
        self.cross_check = (0.0, 0.0)  # CPU s of the last run: (stat, live threads)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        found = []
        for root in self.roots:
            try:
                proc = psutil.Process(root)
                found += [proc.pid, *(c.pid for c in proc.children(recursive=True))]
            except psutil.Error:
                continue
        return [p for p in found if p not in self.exclude]

    def snapshot(self, read: Callable[[int], float] = _cpu_s) -> dict[int, float]:
        """CPU seconds by pid (``read``: :func:`_cpu_s`, or :func:`live_threads_cpu`)."""
        out = {}
        for pid in self.pids():
            try:
                out[pid] = read(pid)
            except OSError:
                continue
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.snapshot()))
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[CpuSampler]:
        self.samples = []
        self._stop.clear()
        exact = self.snapshot(live_threads_cpu)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.samples.append((time.time(), self.snapshot()))
            after = self.snapshot(live_threads_cpu)
            self.cross_check = (
                sum(self.window(self.samples[0][0], self.samples[-1][0])[1].values()),
                sum(after.values()) - sum(exact.get(pid, 0.0) for pid in after),
            )

    def window(self, a: float, b: float) -> tuple[float, dict[int, float]]:
        """(seconds between the two samples used, CPU seconds by pid)."""
        before = [s for s in self.samples if s[0] <= a] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= b] or self.samples[-1:]
        (t0, first), (t1, last) = before[-1], after[0]
        return t1 - t0, {pid: cpu - first.get(pid, 0.0) for pid, cpu in last.items()}


def process_names(roots: list[int], label: dict[int, str]) -> dict[int, str]:
    """A name for every process of the trees: a role (``label`` of the pid, or the
    ``gridctl run <role>`` it runs), ``nats-server``, ``pg:<role>`` for a PostgreSQL backend
    serving a socket of that role's process, ``pg:server`` for PostgreSQL's own processes."""
    names: dict[int, str] = {}
    procs: list[psutil.Process] = []
    for root in roots:
        try:
            proc = psutil.Process(root)
            procs += [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    owners: dict[int, str] = {}
    for proc in procs:
        try:
            cmd = proc.cmdline()
            exe = Path(cmd[0]).name if cmd else proc.name()
        except psutil.Error:
            continue
        if exe.startswith("postgres"):
            continue
        names[proc.pid] = label.get(proc.pid) or _name(proc, -1)
        try:
            for port in _local_ports(proc.pid):
                owners[port] = names[proc.pid]
        except OSError:
            pass
    for proc in procs:
        if proc.pid in names:
            continue
        try:
            title = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        client = re.search(r"\((\d+)\)", title)
        names[proc.pid] = (
            f"pg:{owners.get(int(client.group(1)), 'other')}" if client else "pg:server"
        )
    return names


def by_process_name(cpu: dict[int, float], names: dict[int, str]) -> dict[str, float]:
    """CPU seconds summed by process name (a pid without one: ``pg:other``)."""
    out: dict[str, float] = {}
    for pid, seconds in cpu.items():
        name = names.get(pid, "pg:other")
        out[name] = out.get(name, 0.0) + seconds
    return out


def per_report_us(
    cpu: dict[int, float], names: dict[int, str], reports: float
) -> dict[str, float]:
    """µs of CPU per report by process name, and their ``total``."""
    out = by_process_name(cpu, names)
    scaled: dict[str, float] = {
        k: round(1e6 * v / reports) for k, v in sorted(out.items()) if reports
    }
    scaled["total"] = sum(scaled.values())
    return scaled


# ----------------------------------------------------------------------------- the systems


@dataclass
class Side:
    """One system under test: where to send reports, where they become visible, and the
    process trees whose CPU counts."""

    name: str
    url: str
    db: str
    schema: str
    table: str
    read_path: str  # the HTTP read of one report, {no} for its number
    roots: list[int]
    label: dict[int, str] = field(default_factory=dict)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    ticks: list[str] = field(default_factory=list)


def jetstream_sync(nats_pid: int | None) -> str:
    """The JetStream sync setting of the running nats-server, from its monitoring ``/varz``."""
    if nats_pid is None:
        return "unknown (no nats-server found)"
    cmd = psutil.Process(nats_pid).cmdline()
    port = cmd[cmd.index("--http_port") + 1] if "--http_port" in cmd else None
    if port is None:
        return "unknown (no monitoring port)"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as answer:
        varz = json.load(answer)
    config = varz.get("jetstream", {}).get("config", {})
    interval_s = config.get("sync_interval", 0) / 1e9
    always = bool(config.get("sync_always", False))
    return (
        f"nats-server {varz.get('version')}: sync_interval {interval_s:g} s, sync_always "
        f"{str(always).lower()} (the nats-server defaults; neither core/embedded.py nor "
        "deploy/nats nor core/messaging.py sets them): an acknowledged message is written to "
        "the OS before the ack and fsynced every interval — it survives the crash of any "
        "process, nats-server included, not an OS crash or power loss within the interval"
    )


async def pg_setting(db: str, name: str) -> str:
    conn = await loadgen.poller(db, "public")
    try:
        return str(await conn.fetchval(f"SHOW {name}"))
    finally:
        await conn.close()


@contextmanager
def plain_system(state: Path) -> Iterator[tuple[Side, EmbeddedPostgres]]:
    """The plain app on its own embedded PostgreSQL, ready."""
    pg = EmbeddedPostgres(state / "plain-postgres", port=free_port())
    pg.start()
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.plain_app", "--port", str(port), "--db", pg.url,
         "--schema", "plain"],
        stdout=(state / "plain.log").open("wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, state / "plain.log")
        assert pg.pid is not None
        yield (
            Side("plain", url, pg.url, "plain", "reports", "/v1/reports/{no}",
                 [app.pid, pg.pid], {app.pid: "plain-app"}),
            pg,
        )
    finally:
        app.terminate()
        app.wait(timeout=30)
        pg.stop()


def _wait_ready(url: str, log: Path) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the plain app did not start; see {log}")


@contextmanager
def griddispatch_system(state: Path) -> Iterator[Side]:
    state.mkdir(parents=True, exist_ok=True)
    proc, url, _, db = _start_system(state)
    try:
        yield Side("griddispatch", url, db, "public", "case_queue", "/v1/cases/{no}",
                   [proc.pid], {proc.pid: "gridctl up (supervisor)"})
    finally:
        proc.terminate()
        proc.wait(timeout=120)


# ----------------------------------------------------------------------------- one round


#: A run starts when every system under test together uses less than this share of one
#: core (over :data:`SETTLE_WINDOW_S`), or after :data:`SETTLE_MAX_S` whatever the load.
SETTLE_BELOW = 0.15
SETTLE_WINDOW_S = 1.0
SETTLE_MAX_S = 60.0


async def settle(roots: list[int], max_s: float = SETTLE_MAX_S) -> float:
    """Wait until the process trees of ``roots`` are nearly idle; returns the share of a core
    they used in the last window. Why: a burst leaves work behind (the notifier, the metrics,
    PostgreSQL's checkpoints and autovacuum, nats-server's flushes) — measured in a quiet
    stop, the plain app's figures were 1.7 × its own quiet ones when it ran right after
    griddispatch's intake, so its ratios flattered griddispatch."""
    sampler = CpuSampler(roots, exclude=set())
    deadline = time.monotonic() + max_s
    share = 1.0
    while time.monotonic() < deadline:
        before = sampler.snapshot()
        await asyncio.sleep(SETTLE_WINDOW_S)
        after = sampler.snapshot()
        share = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()) / SETTLE_WINDOW_S
        if share < SETTLE_BELOW:
            return share
    _say(f"  not quiet after {max_s:g} s ({share:.0%} of a core); measuring anyway")
    return share




async def run_side(side: Side, args: argparse.Namespace) -> None:
    """One round of the chosen measures on one side; results appended to ``side.runs``."""
    conn = await loadgen.poller(side.db, side.schema)
    sampler = CpuSampler(side.roots, exclude={conn.get_server_pid()})
    names = process_names(side.roots, side.label)
    try:
        if args.warmup and not side.runs:
            await loadgen.intake_async(side.url, side.db, side.schema, args.warmup, 2, 8, *WHO,
                                       table=side.table, conn=conn)
        quiet = getattr(args, "settle_roots", None) or side.roots
        with sampler.running():
            if "intake" in args.measures:
                await settle(quiet)
                await _intake(side, args, conn, sampler, names, "intake", 1, 32, args.reports)
            if "batch" in args.measures:
                await settle(quiet)
                await _intake(side, args, conn, sampler, names, "batch", args.batch, 4,
                              args.reports * 2)
            if "latency" in args.measures:
                for rate in args.rates:
                    for attempt in (1, 2):
                        await settle(quiet)
                        result = await _fixed_rate(side, args, conn, sampler, rate)
                        names = process_names(side.roots, side.label) | names
                        if result["on_schedule"] or attempt == 2:
                            break
                        _say(f"  {side.name} {rate:g}/s: the senders were late "
                             f"({result['send_lateness']}); once more")
                    result["cpu_us_per_report"] = per_report_us(
                        result.pop("cpu"), names, result.pop("counted"))
                    _keep(side, f"latency_{rate:g}", result)
            if "idle" in args.measures:
                await settle(quiet)
                _keep(side, "idle", await _idle(sampler, names, args.seconds))
            side.checks.append(await _read_check(side, conn))
        ticks, exact = sampler.cross_check
        side.ticks.append(f"{ticks:.1f} s (stat) vs {exact:.1f} s (live threads' schedstat)")
    finally:
        await conn.close()


#: A fixed-rate run counts when 95 % of its POSTs left within this many ms of their time.
ON_SCHEDULE_MS = 100.0


async def _fixed_rate(
    side: Side, args: argparse.Namespace, conn: Any, sampler: CpuSampler, rate: float
) -> dict[str, Any]:
    """One fixed-rate run; the CPU of its middle (1 s after the start to 0.5 s before the
    end) and the reports that schedule sent meanwhile. ``on_schedule``: the senders kept the
    schedule (on a loaded box their start-up can miss it, and they then post the backlog at
    once — neither latency nor steady CPU mean anything then)."""
    start = time.time() + args.lead
    result = await loadgen.latency(
        side.url, side.db, side.schema, rate, args.seconds, *WHO,
        table=side.table, conn=conn, start=start,
    )
    span, cpu = sampler.window(start + 1.0, start + args.seconds - 0.5)
    result["on_schedule"] = result["send_lateness"]["p95_ms"] <= ON_SCHEDULE_MS
    return result | {"cpu": cpu, "counted": rate * span}


async def _idle(
    sampler: CpuSampler, names: dict[int, str], seconds: float
) -> dict[str, Any]:
    """``seconds`` with no load: the CPU each process spends anyway (polls, timers, pull
    requests renewed at their expiry, the servers' housekeeping), in ms per second. Why: at
    a steady rate R every report carries idle ÷ R of it — the part of the steady-rate cost
    that is not the report's own way."""
    start = time.time()
    await asyncio.sleep(seconds)
    span, cpu = sampler.window(start + 0.5, time.time())
    by_name = by_process_name(cpu, names)
    ms = {k: round(1e3 * v / span, 1) for k, v in sorted(by_name.items()) if span}
    ms["total"] = round(sum(ms.values()), 1)
    return {"seconds": round(span, 2), "cpu_ms_per_s": ms}


async def _intake(
    side: Side, args: argparse.Namespace, conn: Any, sampler: CpuSampler,
    names: dict[int, str], key: str, batch: int, concurrency: int, reports: int,
) -> None:
    result = await loadgen.intake_async(
        side.url, side.db, side.schema, reports, 2, concurrency, *WHO, batch=batch,
        table=side.table, conn=conn,
    )
    _, cpu = sampler.window(result["first_post_at"], result["visible_at"])
    names.update(process_names(side.roots, side.label))
    result["cpu_us_per_report"] = per_report_us(cpu, names, result["reports"])
    _keep(side, key, result)


def _keep(side: Side, key: str, result: dict[str, Any]) -> None:
    side.runs.setdefault(key, []).append(result)
    cpu = ({"cpu_total_ms_per_s": result["cpu_ms_per_s"]["total"]} if "cpu_ms_per_s" in result
           else {"cpu_total_us": result["cpu_us_per_report"]["total"]})
    _say(f"  {side.name} {key}: " + json.dumps(
        {k: v for k, v in result.items() if k in (
            "visible_per_s", "report_to_visible", "refused", "not_visible")} | cpu))


async def _read_check(side: Side, conn: Any) -> str:
    """Fetch up to 20 of the newest reports through the side's HTTP read endpoint."""
    rows = await conn.fetch(
        f"SELECT case_no FROM {side.table} ORDER BY reported_at DESC LIMIT 20"
    )
    async with httpx.AsyncClient(base_url=side.url, timeout=10) as client:
        headers = await loadgen.sign_in(client, *WHO)
        found = 0
        for r in rows:
            answer = await client.get(side.read_path.format(no=r["case_no"]), headers=headers)
            found += answer.status_code == 200
    return f"{found}/{len(rows)} through GET {side.read_path}"


# ----------------------------------------------------------------------------- the report


def measures_of(ours: Side, plain: Side) -> dict[str, Rounds]:
    """Per-round values of each judged measure, for :func:`judge` (a fixed-rate run off its
    schedule does not count)."""

    def pick(side: Side, run: str, get: Any) -> list[float | None]:
        return [float(get(r)) if r.get("on_schedule", True) else None
                for r in side.runs.get(run, [])]

    table = {
        "intake_single": ("intake", lambda r: r["visible_per_s"]),
        "intake_batch": ("batch", lambda r: r["visible_per_s"]),
        "latency_100_p99": ("latency_100", lambda r: r["report_to_visible"]["p99_ms"]),
        "latency_20_p99": ("latency_20", lambda r: r["report_to_visible"]["p99_ms"]),
        "cpu_saturation": ("intake", lambda r: r["cpu_us_per_report"]["total"]),
        "cpu_steady_50": ("latency_50", lambda r: r["cpu_us_per_report"]["total"]),
        "cpu_steady_100": ("latency_100", lambda r: r["cpu_us_per_report"]["total"]),
    }
    out = {}
    for name, (run, get) in table.items():
        if run in ours.runs:
            out[name] = (pick(ours, run, get), pick(plain, run, get))
    return out


def _span(values: list[float], digits: int = 0) -> str:
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    fmt = f"{{:,.{digits}f}}"
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}–{fmt.format(hi)}"


def render(ours: Side, plain: Side, header: list[str]) -> str:
    """The printed report: header, measures per round, CPU per process, the verdicts."""
    lines = [*header, ""]
    lines += ["| measure (per round, min–max) | griddispatch | plain INSERT app | ratio |",
              "|---|---|---|---|"]

    def row(label: str, run: str, get: Any, digits: int = 0) -> None:
        counted = [[float(get(r)) if r.get("on_schedule", True) else None
                    for r in side.runs.get(run, [])] for side in (ours, plain)]
        a, b = ([x for x in values if x is not None] for values in counted)
        if not a:
            return
        ratios = [x / y for x, y in zip(*counted, strict=False) if x is not None and y]
        lines.append(f"| {label} | {_span(a, digits)} | {_span(b, digits)} | "
                     f"{_span(ratios, 2)} |")

    row("single reports visible per s", "intake", lambda r: r["visible_per_s"])
    row(f"batched ({ours.runs.get('batch', [{}])[0].get('batch', 50)} per request) "
        "reports visible per s", "batch", lambda r: r["visible_per_s"])
    for rate in sorted({float(k.split("_")[1]) for k in ours.runs if k.startswith("latency_")}):
        run = f"latency_{rate:g}"
        row(f"report → visible p50 at {rate:g}/s (ms)", run,
            lambda r: r["report_to_visible"]["p50_ms"], 1)
        row(f"report → visible p99 at {rate:g}/s (ms)", run,
            lambda r: r["report_to_visible"]["p99_ms"], 1)
    row("CPU per report at saturation, all processes (µs)", "intake",
        lambda r: r["cpu_us_per_report"]["total"])
    row("CPU per report, batched, all processes (µs)", "batch",
        lambda r: r["cpu_us_per_report"]["total"])
    for rate in STEADY_RATES:
        row(f"CPU per report at a steady {rate:g}/s, all processes (µs)",
            f"latency_{rate:g}", lambda r: r["cpu_us_per_report"]["total"])
    late = [f"{side.name} {key.split('_')[1]}/s round {n + 1} (POSTs late p95 "
            f"{r['send_lateness']['p95_ms']:,.0f} ms)"
            for side in (ours, plain) for key, runs in side.runs.items()
            if key.startswith("latency_") for n, r in enumerate(runs) if not r["on_schedule"]]
    lines += ["", "Fixed-rate runs off their schedule even when repeated (the senders started "
              "late or could not keep up; their latency and steady CPU are not at a fixed rate, "
              "and are left out above and below): " + ("; ".join(late) if late else "none")
              + "."]
    for side in (ours, plain):
        lines += ["", f"CPU per report by process, {side.name} (µs, median over rounds):", ""]
        runs = [k for k in ("intake", "batch", "latency_50", "latency_100") if k in side.runs]
        keys = sorted({p for k in runs for r in side.runs[k] for p in r["cpu_us_per_report"]},
                      key=lambda p: (p == "total", p))
        titles = {"intake": "saturation", "batch": "batched", "latency_50": "steady 50/s",
                  "latency_100": "steady 100/s"}
        lines += ["| process | " + " | ".join(titles[k] for k in runs) + " |",
                  "|---|" + "---|" * len(runs)]
        for p in keys:
            cells = [[r["cpu_us_per_report"].get(p, 0) for r in side.runs[k]
                      if r.get("on_schedule", True)] for k in runs]
            lines.append(f"| {p} | " + " | ".join(
                f"{statistics.median(c):,.0f}" if c else "—" for c in cells) + " |")
    idle = [side for side in (ours, plain) if side.runs.get("idle")]
    if idle:
        lines += ["", "Idle, no load: CPU by process in ms per second (median over rounds); at "
                  "a steady R reports/s each report carries idle ÷ R of it:", "",
                  "| process | " + " | ".join(s.name for s in idle) + " |",
                  "|---|" + "---|" * len(idle)]
        procs = sorted({p for s in idle for r in s.runs["idle"] for p in r["cpu_ms_per_s"]},
                       key=lambda p: (p == "total", p))
        for p in procs:
            cells = [[r["cpu_ms_per_s"].get(p, 0.0) for r in s.runs["idle"]] for s in idle]
            lines.append(f"| {p} | " + " | ".join(
                f"{statistics.median(c):,.1f}" for c in cells) + " |")
    lines += ["", "Read check: " + "; ".join(
        f"{s.name} {', '.join(s.checks)}" for s in (ours, plain))]
    lines += ["", "CPU of each round, all processes, two ways: " + "; ".join(
        f"{s.name} {', '.join(s.ticks)}" for s in (ours, plain))]
    lines += ["", "| issue 19 target | bound | per round | median | |", "|---|---|---|---|---|"]
    for v in judge(measures_of(ours, plain)):
        bound = f"{'≥' if v.target.at_least else '≤'} {v.target.bound:g}"
        lines.append(f"| {v.target.label} | {bound} | {_span(v.values, 2)} | {v.value:.2f} | "
                     f"{'PASS' if v.passed else 'MISS'} |")
    return "\n".join(lines)


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def _rounds(ours: Side, plain: Side, args: argparse.Namespace) -> None:
    args.settle_roots = ours.roots + plain.roots  # each run waits for both to be quiet
    for n in range(args.rounds):
        order = (ours, plain) if n % 2 == 0 else (plain, ours)
        for side in order:
            _say(f"round {n + 1}/{args.rounds}: {side.name}")
            await run_side(side, args)


def run(args: argparse.Namespace) -> str:
    started = datetime.now(UTC)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="griddispatch-vs-plain-") as tmp:
        state = Path(tmp)
        _say("starting griddispatch (gridctl up) and the plain app")
        with griddispatch_system(state / "gd") as ours, plain_system(state) as (plain, _):
            nats = [p.pid for p in psutil.Process(ours.roots[0]).children(recursive=True)
                    if p.name().startswith("nats-server")]
            sync = jetstream_sync(nats[0] if nats else None)
            commits = asyncio.run(pg_setting(ours.db, "synchronous_commit"))
            asyncio.run(_rounds(ours, plain, args))
    header = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"Command: {args.command}",
        f"Load before: {load_before}",
        f"Load after:  {load_average()}",
        f"JetStream sync: {sync}.",
        f"PostgreSQL (both sides, embedded 16): synchronous_commit = {commits} (griddispatch's "
        "read models commit with it off, its event store and relay with it on; the plain "
        "app's INSERT with it on).",
        f"Rounds {args.rounds}, {args.seconds:g} s per fixed rate, {args.reports} single / "
        f"{args.reports * 2} batched reports per intake run; measures: "
        f"{', '.join(args.measures)}.",
    ]
    text = render(ours, plain, header)
    if args.json:
        args.json.write_text(json.dumps(
            {"griddispatch": ours.runs, "plain": plain.runs}, indent=2, ensure_ascii=False))
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gridctl bench --against-plain", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--seconds", type=float, default=15, help="seconds per fixed-rate run")
    p.add_argument("--reports", type=int, default=5000,
                   help="reports per single-report intake run (twice that batched)")
    p.add_argument("--batch", type=int, default=50, help="reports per batch request")
    p.add_argument("--lead", type=float, default=6.0,
                   help="seconds the senders of a fixed-rate run get to start up")
    p.add_argument("--warmup", type=int, default=400,
                   help="reports sent to each side before its first round (not measured)")
    p.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",") if x],
                   default=list(RATES), help="fixed rates for latency and steady CPU")
    p.add_argument("--measures", type=lambda v: [x for x in v.split(",") if x],
                   default=list(MEASURES), help=f"any of {','.join(MEASURES)}")
    p.add_argument("--json", type=Path, default=None, help="also write every number here")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    unknown = set(args.measures) - set(MEASURES)
    if unknown:
        raise SystemExit(f"unknown measures {sorted(unknown)}; choose from {MEASURES}")
    args.command = "gridctl bench --against-plain " + " ".join(argv)
    os.environ.setdefault("GRID_LOG_LEVEL", "WARNING")
    print(run(args), flush=True)


if __name__ == "__main__":
    main()
