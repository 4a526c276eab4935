"""Fault drills: the whole system as real OS processes on embedded servers, broken on purpose.

One system per test session of this package (starting the servers and six role processes
costs ~15 s on the 2-core box, so the drills share it; each drill reconciles everything
accepted so far). Servers: ``core.embedded`` nats-server + PostgreSQL on free ports under
``tmp_path`` (ours to stop, kill and restart on the same port and data directory). Roles:
``python -m gateways.cli run <role>`` under ``gateways.supervisor.Supervisor``.

The counts of every reconciliation are printed at the end of the run (terminal summary).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.refdata import load_reference
from core.settings import Settings
from tests.faults.harness import COUNTS, Drill, FaultSystem, log_event
from tests.faults.load import Ledger


@pytest.fixture(scope="package")
async def drill(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Drill]:
    root = tmp_path_factory.mktemp("faults")
    system = FaultSystem(root)
    await asyncio.to_thread(system.start_servers)
    system.start_roles()
    try:
        took = await system.wait_readyz(200, timeout=120)
        log_event("fault.system_up", seconds=round(took, 1), logs=str(system.log_dir))
        ref = load_reference(Settings())
        j = ref.jurisdiction
        by_partition: dict[str, list[str]] = {}
        for grid in sorted(j.grids):
            by_partition.setdefault(j.partition_of(grid), []).append(grid)
        grids = [g for p in sorted(by_partition) for g in by_partition[p][:3]]
        yield Drill(system, Ledger(), grids, by_partition, ref.catalogue.all()[0].code)
    finally:
        COUNTS.extend(system.counts)
        await system.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not COUNTS:
        return
    terminalreporter.section("fault drills: reconciliation counts")
    for counts in COUNTS:
        terminalreporter.write_line(json.dumps(counts, ensure_ascii=False, default=str))
