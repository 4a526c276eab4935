"""Back-end capacity without HTTP: publish N report commands straight to JetStream and time
until every case is stored and visible in the case queue (worker + store + relay + projection).

    python -m benchmarks.pipeline --reports 20000              # roles as tasks of this process
    python -m benchmarks.pipeline --external --reports 20000   # roles already run elsewhere
    python -m benchmarks.pipeline --spawn --reports 20000      # starts one process per role

``--spawn`` starts ``gridctl run worker|relay|projector`` (as ``gridctl up`` does) on a fresh
schema and stream prefix, waits for their consumers, measures, stops them, and also prints the
CPU each role process — and the PostgreSQL backends serving it — spent per report: on a shared
2-core box that is a steadier number than reports/s (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.common import report_command, rss_mb
from core import codec
from core.logging import configure_logging
from core.settings import Settings
from gateways.bootstrap import ROLES, Runtime


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


SPAWNED_ROLES = ("worker", "relay", "projector")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _local_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets a process holds (to find its PostgreSQL backends)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


async def _role_cpu(database_url: str, pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each role process and of the PostgreSQL backends serving it."""
    out = {role: _cpu_s(pid) for role, pid in pids.items()}
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL"
        )
    finally:
        await conn.close()
    backends = {r["client_port"]: r["pid"] for r in rows}
    for role, pid in pids.items():
        total = 0.0
        for port in _local_ports(pid):
            if port in backends:
                with contextlib.suppress(OSError):  # the backend just exited
                    total += _cpu_s(backends[port])
        out[f"pg:{role}"] = total
    return out


async def _consumers_ready(settings: Settings, nats_url: str, partitions: int) -> None:
    """Wait until the spawned worker (one consumer per partition) and projector consume."""
    from core.messaging import Topology, connect

    topo = Topology(settings.stream_prefix)
    nc = await connect(nats_url, name="pipeline-bench-probe")
    js = nc.jetstream()
    try:
        for _ in range(600):
            try:
                commands = await js.consumers_info(topo.commands_stream)
                events = await js.consumers_info(topo.events_stream)
                if len(commands) >= partitions and events:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError("role processes did not start their consumers")
    finally:
        await nc.close()


async def spawn_and_run(nats_url: str, database_url: str, n: int) -> dict[str, Any]:
    """Start one process per role on a fresh schema / prefix, measure, stop them."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "GRID_DB_SCHEMA": f"bench_{tag}",
        "GRID_STREAM_PREFIX": f"BENCH{tag.upper()}",
        "GRID_LOG_LEVEL": "WARNING",
    }
    settings = Settings(GRID_DB_SCHEMA=env["GRID_DB_SCHEMA"],
                        GRID_STREAM_PREFIX=env["GRID_STREAM_PREFIX"])
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for role in SPAWNED_ROLES:  # one after the other: schema set-up is serialised anyway
            procs[role] = subprocess.Popen(
                [sys.executable, "-m", "gateways.cli", "run", role], env=env
            )
            await asyncio.sleep(1.0)
        from core.refdata import load_reference

        await _consumers_ready(settings, nats_url, len(load_reference(settings).partitions))
        pids = {role: p.pid for role, p in procs.items()}
        before = await _role_cpu(database_url, pids)
        result = await run(settings, nats_url, database_url, n, external=True)
        after = await _role_cpu(database_url, pids)
        result["rss_mb_roles"] = {role: rss_mb(pid) for role, pid in pids.items()}
        result["cpu_us_per_report"] = {
            key: round(1e6 * (after[key] - before.get(key, 0.0)) / n) for key in after
        }
        result["cpu_us_per_report"]["total"] = sum(result["cpu_us_per_report"].values())
        return result
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


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
    parser.add_argument(
        "--spawn",
        action="store_true",
        help="start one process per role (gridctl run …) and report CPU per role",
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    if args.spawn:
        print(asyncio.run(spawn_and_run(args.nats, args.db, args.reports)))
        return
    if args.external:
        settings = Settings()
    else:
        tag = uuid.uuid4().hex[:8]
        settings = Settings(GRID_DB_SCHEMA=f"bench_{tag}", GRID_STREAM_PREFIX=f"BENCH{tag.upper()}")
    print(asyncio.run(run(settings, args.nats, args.db, args.reports, args.external)))


if __name__ == "__main__":
    main()
