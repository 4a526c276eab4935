"""NATS messages per report, by process, at a fixed rate: what a report costs the broker in
messages (each one a wake-up of nats-server at a trickle).

    python -m benchmarks.messages --rate 50 --seconds 8

Starts ``gridctl up`` of this checkout (``--code DIR``: another checkout's) on its own
servers, warms it up, then reads nats-server's monitoring ``/connz`` before and after a
fixed-rate run and prints, per client connection (named by the role process that holds it),
the messages it sent to the server and received from it per report, and the server's
totals. Found with it: every stage's waiting pull request was dropped after its first
delivery (16–20 messages into the server per report at 50/s; 4.25 after the fix).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from benchmarks import loadgen
from benchmarks.against_plain import WHO
from benchmarks.standard import ROOT
from benchmarks.versions import system_of


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def _owner(roots: list[int], port: int) -> str:
    """The role process (``gridctl run <role>``) holding the local end ``port``."""
    for root in roots:
        for proc in psutil.Process(root).children(recursive=True):
            try:
                if any(c.laddr.port == port for c in proc.net_connections()):
                    cmd = proc.cmdline()
                    return cmd[cmd.index("run") + 1] if "run" in cmd else proc.name()
            except (psutil.Error, ValueError):
                continue
    return "?"


async def measure(code: Path, rate: float, seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp, system_of("x", code, Path(tmp) / "s") as side:
        natsd = next(p for p in psutil.Process(side.roots[0]).children(recursive=True)
                     if p.name().startswith("nats-server"))
        cmd = natsd.cmdline()
        monitor = f"http://127.0.0.1:{cmd[cmd.index('--http_port') + 1]}"
        conn = await loadgen.poller(side.db, side.schema)
        try:
            await loadgen.intake_async(side.url, side.db, side.schema, 200, 2, 8, *WHO,
                                       table=side.table, conn=conn)
            await asyncio.sleep(2)
            before = {c["cid"]: c for c in _get(f"{monitor}/connz?limit=1000")["connections"]}
            totals_before = _get(f"{monitor}/varz")
            result = await loadgen.latency(side.url, side.db, side.schema, rate, seconds, *WHO,
                                           table=side.table, conn=conn)
            await asyncio.sleep(1)
            after = {c["cid"]: c for c in _get(f"{monitor}/connz?limit=1000")["connections"]}
            totals_after = _get(f"{monitor}/varz")
        finally:
            await conn.close()
        n = result["reports"]
        lines = [
            f"{n} reports at {rate:g}/s; report → visible {result['report_to_visible']}",
            "",
            "| connection of | messages sent to the server per report | received |",
            "|---|---|---|",
        ]
        for cid, c in sorted(after.items()):
            b = before.get(cid, {"in_msgs": 0, "out_msgs": 0})
            sent, received = c["in_msgs"] - b["in_msgs"], c["out_msgs"] - b["out_msgs"]
            if sent or received:
                lines.append(f"| {_owner(side.roots, c['port'])} | {sent / n:.2f} | "
                             f"{received / n:.2f} |")
        lines.append(
            f"| nats-server, all | {(totals_after['in_msgs'] - totals_before['in_msgs']) / n:.2f}"
            f" | {(totals_after['out_msgs'] - totals_before['out_msgs']) / n:.2f} |")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.messages",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout to run")
    args = parser.parse_args(argv)
    print(asyncio.run(measure(args.code, args.rate, args.seconds)))


if __name__ == "__main__":
    main()
