"""A few sample reports so a fresh ``gridctl up`` shows a living command centre.

They go through the same path as any report (a ``report`` command on NATS), with fixed
idempotency keys, so restarting never adds them twice.
"""

from __future__ import annotations

import random

from aggregates.commands import Command, ReportArgs, Reporter
from core import codec
from core.clock import SystemClock
from core.ids import case_id_for_key, case_no_for_id
from core.logging import get_logger
from gateways.runtime import Runtime

log = get_logger("sample")

DESCRIPTIONS = {
    "component": "巡查發現設施損壞，需要維修 (facility damaged, needs repair)",
    "event": "現場發現問題，影響市容和通行 (problem affects the street and passers-by)",
    "governance": "網格走訪發現情況，需要跟進 (found on a grid visit, needs follow-up)",
}


async def load_sample_reports(runtime: Runtime, count: int) -> None:
    """Publish ``count`` deterministic sample reports (idempotent across restarts)."""
    rng = random.Random(12319)
    grids = sorted(runtime.ref.jurisdiction.grids)
    categories = runtime.ref.catalogue.all()
    clock = SystemClock()
    for i in range(count):
        grid = runtime.ref.jurisdiction.grid(rng.choice(grids))
        category = rng.choice(categories)
        lat, lon = grid.centroid
        key = f"sample-report-{i:04d}"
        case_id = case_id_for_key(key)
        district = runtime.ref.jurisdiction.partition_of(grid.code)
        args = ReportArgs(
            category=category.code,
            grid=grid.code,
            community=grid.parent,
            district=district,
            lat=lat,
            lon=lon,
            description=f"{category.name_zh}：{DESCRIPTIONS[category.kind]}",
            reporter=Reporter(id=grid.team.inspector, type="inspector"),
            source="inspector_app",
        )
        cmd = Command(
            command_id=key,
            verb="report",
            case_id=str(case_id),
            case_no=case_no_for_id(case_id),
            partition=district,
            actor=grid.team.inspector,
            role="inspector",
            channel="inspector_app",
            at=clock.now(),
            args=args.model_dump(mode="json"),
        )
        try:
            await runtime.js.publish(
                runtime.topo.command_subject(district, "report"),
                codec.dumps(cmd.model_dump(mode="json")),
                headers={"Nats-Msg-Id": f"report:{key}"},
            )
        except Exception as exc:
            log.warning("sample.failed", error=repr(exc))
            return
    log.info("sample.loaded", count=count)
