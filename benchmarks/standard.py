"""``gridctl bench``: the standard benchmark set, written to docs/performance.md.

Starts its own ``gridctl up`` (embedded NATS + PostgreSQL on free ports, rate limits off,
no sample data) in a temporary state directory, then measures:
1. sustained intake over HTTP (accepted → stored → visible in the case queue);
2. report → visible latency at a fixed rate;
3. RSS of every process of the running system under that load;
4. bulk load through the domain, projection rebuild events/s, command-centre query and
   auditor history latency on the loaded store (``benchmarks.store``).
Numbers are printed and written with the machine and the command; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import loadgen, store
from core.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent


def _start_system(state: Path) -> tuple[subprocess.Popen[bytes], str, str, str]:
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
        [
            sys.executable,
            "-m",
            "gateways.cli",
            "up",
            "--state-dir",
            str(state),
            "--port",
            str(http),
            "--sample",
            "0",
        ],
        env=env,
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


def _rss_tree(pid: int) -> dict[str, float]:
    """RSS (MB) of the supervisor and each role process, by command line."""
    out: dict[str, float] = {}
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            cmd = proc.cmdline()
            name = cmd[-1] if "run" in cmd else ("gridctl up" if proc.pid == pid else cmd[0])
            name = Path(name).name if name.startswith("/") else name
            out[name] = round(proc.memory_info().rss / 2**20, 1)
        except psutil.Error:
            continue
    return out


def run(reports: int, rate: float, seconds: float, cases: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="griddispatch-bench-") as tmp:
        proc, url, nats_url, db = _start_system(Path(tmp))
        try:
            results["intake"] = loadgen.intake(
                url, db, "public", reports, 2, 32, "calltaker", "calltaker-demo"
            )
            results["rss_after_intake_mb"] = _rss_tree(proc.pid)
            results["latency"] = asyncio.run(
                loadgen.latency(url, db, "public", rate, seconds, "calltaker", "calltaker-demo")
            )
            args = argparse.Namespace(cases=cases, nats=nats_url, db=db, keep=False)
            results["store"] = asyncio.run(store.main_async(args))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return results


def write_report(results: dict[str, Any], command: str, path: Path) -> None:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Performance",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"({cpu}, {psutil.virtual_memory().total / 2**30:.0f} GiB), Python "
        f"{platform.python_version()}, with:",
        "",
        f"    {command}",
        "",
        "Everything (load generator, gateway, workers, relay, projector, NATS, PostgreSQL) "
        "shares the same two cores.",
        "",
        "```json",
        _json(results),
        "```",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gridctl bench")
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance-latest.md")
    args = parser.parse_args(argv)
    results = run(args.reports, args.rate, args.seconds, args.cases)
    print(_json(results))
    command = "gridctl bench " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(results, command.strip(), args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
