"""Issue 17: a second city brought as GIS files runs the whole loop. ``gridctl city import``
writes it from GeoJSON and a shapefile (the layers of tests/unit/test_city_import.py); the
system started on it (``GRID_CITY``) locates a report by its GPS fix in the imported grids,
files it and dispatches it to a department of the imported district."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import (
    database_url,
    drop_everything,
    eventually,
    make_settings,
    nats_url,
    user_headers,
)
from tests.unit.test_city_import import STEP, S, W, layers, run


async def test_a_city_imported_from_files_runs_the_loop(tmp_path: Path) -> None:
    import httpx

    from core.clock import SystemClock
    from gateways.bootstrap import ROLES, Runtime
    from gateways.http.app import create_app

    city = tmp_path / "city"
    imported = run([*layers(tmp_path), "--out", str(city)])
    assert imported.exit_code == 0, imported.output
    settings = make_settings(GRID_CITY=str(city))
    runtime = await Runtime.open(settings, nats_url(), database_url())
    try:
        runtime.start(ROLES)
        app = create_app(runtime, SystemClock())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            system = {"runtime": runtime}  # the imported city's own staff, made for it
            headers = await user_headers(system, "calltaker-430100", role="call_taker",
                                         node="430100")
            lat, lon = S + 1.5 * STEP, W + 2.5 * STEP  # district 2, community 2, grid 1
            answer = await client.post("/v1/reports", headers=headers, json={
                "category": "SJ0101", "lat": lat, "lon": lon, "description": "路口垃圾堆积",
            })
            assert answer.status_code == 202, answer.text
            accepted = answer.json()
            assert accepted["grid"] == "430102002001" and accepted["district"] == "430102"
            dispatcher = await user_headers(system, "dispatcher-430100", role="dispatcher",
                                            node="430100")

            async def case() -> dict[str, Any] | None:
                got = await client.get(f"/v1/cases/{accepted['case_no']}", headers=dispatcher)
                return got.json() if got.status_code == 200 else None

            stored = await eventually(case)
            assert stored["grid"] == "430102002001"
            for verb in ("file", "dispatch"):
                done = await client.post(
                    f"/v1/cases/{accepted['case_no']}/actions/{verb}", json={},
                    headers=dispatcher)
                assert done.status_code == 200, done.text
            async def dispatched() -> dict[str, Any] | None:
                got = await case()
                return got if got and got["status"] == "dispatched" else None

            done_case = await eventually(dispatched)
            assert str(done_case["department"]).startswith("D-430102")
    finally:
        await runtime.close()
        await drop_everything(settings)
