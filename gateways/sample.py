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
    "component": "巡查发现设施损坏，需要维修",
    "event": "现场发现问题，影响市容和通行",
    "governance": "网格走访发现情况，需要跟进",
}


async def load_sample_reports(runtime: Runtime, count: int) -> None:
    """Publish ``count`` deterministic sample reports (idempotent across restarts), then
    the sample register of households (:func:`load_sample_households`)."""
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
    try:
        await load_sample_households(runtime)
    except Exception as exc:  # the sample is a courtesy: a failure stops nothing else
        log.warning("sample.households_failed", error=repr(exc))


SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["秀英", "桂兰", "建国", "志强", "淑珍", "海燕", "德明", "玉梅", "国华", "丽娟"]
STREETS = ["中华路", "解放路", "宝山路", "遵义路", "市府路", "花溪大道", "长江路", "黔灵路"]
#: The sample flags and the reasons an inspector would write (weights: how common).
SAMPLE_FLAGS = [
    ("elderly_alone", "独居老人，子女在外地务工", 5),
    ("hardship", "低保户，收入来源少", 4),
    ("unemployed", "户主下岗，正在找工作", 3),
    ("dispute", "与邻居因漏水有纠纷", 2),
    ("serious_illness", "家属患重大疾病，长期治疗", 2),
    ("released_or_corrected", "家属正在社区矫正", 1),
]


async def load_sample_households(
    runtime: Runtime, per_grid: int = 4, weeks: int = 6, staffed_grid: int = 12
) -> int:
    """A generated register (``per_grid`` households in every grid, a few hundred in the
    sample city; ``staffed_grid`` in a grid an inspector account serves, so a demo inspector
    has a week of visits to work through) with must-visit flags and ``weeks`` of past
    visits, some late or missed, so the worklist, coverage and the overdue map have something
    to show. Deterministic keys and command ids: loading again changes nothing. Returns the
    households registered now."""
    from datetime import timedelta

    from aggregates.errors import DomainError
    from gateways.households import HouseholdApp, schedules_for

    rng = random.Random(18)
    app = HouseholdApp(runtime.pool, runtime.ref, schedules_for(runtime.settings.city_dir))
    now = SystemClock().now()
    start = now - timedelta(weeks=weeks)
    made = 0
    async with runtime.pool.acquire() as conn:
        staffed = {g for row in await conn.fetch(
            "SELECT grids FROM users WHERE role = 'inspector' AND NOT disabled"
        ) for g in row["grids"]}
    for grid_code in sorted(runtime.ref.jurisdiction.grids):
        grid = runtime.ref.jurisdiction.grid(grid_code)
        for i in range(staffed_grid if grid_code in staffed else per_grid):
            flags = [(f, reason) for f, reason, w in SAMPLE_FLAGS if rng.random() < w / 12]
            name = rng.choice(SURNAMES) + rng.choice(GIVEN)
            args = {
                "grid": grid_code,
                "address": f"{rng.choice(STREETS)}{rng.randint(1, 300)}号"
                           f"{rng.randint(1, 6)}单元{rng.randint(1, 7)}0{rng.randint(1, 4)}",
                "members": [{"name": name, "relation": "户主",
                             "birth_year": rng.randint(1935, 1985),
                             "phone": f"139{rng.randint(10_000_000, 99_999_999)}"}],
                "flags": [{"flag": f, "reason": r} for f, r in flags],
                "party_member": "党员" + rng.choice(SURNAMES) + rng.choice(GIVEN),
            }
            key = f"sample-household-{grid_code}-{i}"
            try:
                result = await app.register(key, args, actor="sample", role="system",
                                            channel="import", at=start)
                made += int(result.recorded)
                at = start
                for k in range(weeks):
                    at = at + timedelta(days=rng.choice([3, 5, 6, 7, 9, 12]))
                    if at >= now or not flags:
                        break
                    await app.run(result.household.id, "record_visit",
                                  {"findings": rng.choice(["情况稳定", "身体尚可，已叮嘱按时服药",
                                                           "家中整洁，生活正常"])},
                                  actor=grid.team.inspector, role="inspector",
                                  channel="inspector_app", at=at,
                                  command_id=f"sample-visit-{grid_code}-{i}-{k}")
            except DomainError as exc:
                log.warning("sample.household_failed", key=key, error=str(exc))
    log.info("sample.households", registered=made)
    return made
