"""Shared helpers for the benchmarks: percentiles, RSS, synthetic reports, a runtime."""

from __future__ import annotations

import os
import random
import statistics
from pathlib import Path
from typing import Any

from aggregates.commands import Command, ReportArgs, Reporter
from core.ids import case_id_for_key, case_no_for_id
from core.refdata import Reference

#: role → the demo user (Guiyang sample city, deploy/users.demo.json) that tests and the fuzzer
#: sign in as: city-level staff (see everything in the city), one handler, one inspector.
ROLE_USERS: dict[str, str] = {
    "inspector": "inspector-520102001001",
    "call_taker": "calltaker",
    "shift_leader": "shiftleader",
    "dispatcher": "dispatcher",
    "handler": "handler-D-520102-sanitation",
    "supervisor": "supervisor",
    "auditor": "auditor",
    "admin": "admin",
}

TEXTS = [
    "路口垃圾暴露，气味很大 (exposed garbage at the crossing)",
    "井盖破损，存在安全隐患 (broken manhole cover)",
    "商户占道经营 (shop occupying the pavement)",
    "楼道堆物堵塞消防通道 (stairwell blocked)",
    "路灯不亮 (street lamp out)",
]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0–100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
    }


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def report_body(ref: Reference, rng: random.Random) -> dict[str, Any]:
    """A realistic report body: random grid (by location), category and text."""
    grid = ref.jurisdiction.grid(rng.choice(sorted(ref.jurisdiction.grids)))
    lat, lon = grid.centroid
    category = rng.choice(ref.catalogue.all())
    answers = category.example_answers()  # the category's required questions
    return {
        "category": category.code,
        "lat": lat,
        "lon": lon,
        "description": rng.choice(TEXTS),
        "reporter": {"name": "测试", "phone": "13800000000", "type": "citizen"},
        "source": "api",
        # Only when asked: versions before the questions refuse the field (benchmarks.versions).
        **({"answers": answers} if answers else {}),
    }


def report_command(
    ref: Reference, key: str, at: Any, rng: random.Random, grids: Any = None
) -> Command:
    """The command the gateway would publish for one synthetic report (in one of ``grids``,
    default: any grid of the city)."""
    grid = ref.jurisdiction.grid(rng.choice(grids or sorted(ref.jurisdiction.grids)))
    category = rng.choice(ref.catalogue.all())
    district = ref.jurisdiction.partition_of(grid.code)
    case_id = case_id_for_key(key)
    args = ReportArgs(
        category=category.code,
        grid=grid.code,
        community=grid.parent,
        district=district,
        description=rng.choice(TEXTS),
        reporter=Reporter(name="测试", type="citizen"),
    )
    return Command(
        command_id=key,
        verb="report",
        case_id=str(case_id),
        case_no=case_no_for_id(case_id),
        partition=district,
        actor="bench",
        role="system",
        channel="bench",
        at=at,
        args=args.model_dump(mode="json"),
    )


#: A photo reference for synthetic 核查 (the generators write events, not photos).
SYNTHETIC_PHOTO = {"digest": "sha256:" + "5e" * 32, "size": 2048, "content_type": "image/jpeg"}
#: The actions that need on-site evidence (aggregates/actions/closing.py ``Evidence``).
ON_SITE = ("verify_pass", "verify_fail")


def on_site_args(state: Any, jurisdiction: Any) -> dict[str, Any]:
    """Valid on-site evidence for a synthetic 核查 of a case (its ``CaseState``): one photo
    and a fix at the case's own point, or its grid's centroid when it has none."""
    lat, lon = state.lat, state.lon
    if lat is None or lon is None:
        lat, lon = jurisdiction.grid(state.grid).centroid
    return {"photos": [SYNTHETIC_PHOTO], "lat": lat, "lon": lon}
