"""Issue 19's comparison benchmark: the plain app answers through its ASGI app against real
PostgreSQL, and the targets are judged right on given numbers."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from benchmarks.against_plain import TARGETS, Rounds, judge, per_report_us
from benchmarks.common import report_body
from benchmarks.loadgen import sign_in
from benchmarks.plain_app import create_app
from core.ids import case_no_for_key
from core.refdata import load_reference
from core.settings import Settings
from tests.conftest import database_url


async def test_plain_app_report_get_and_batch() -> None:
    import random

    schema = f"plain_{uuid.uuid4().hex[:8]}"
    app = create_app(database_url(), schema, "plain-app-test-secret-of-at-least-32-bytes")
    ref = load_reference(Settings())
    rng = random.Random(3)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://plain") as c:
                assert (await c.post("/v1/reports", json=report_body(ref, rng))).status_code == 401
                headers = await sign_in(c, "calltaker", "calltaker-demo")
                key = f"unit-{uuid.uuid4().hex}"
                body = report_body(ref, rng)
                first = await c.post("/v1/reports", json=body,
                                     headers={**headers, "Idempotency-Key": key})
                again = await c.post("/v1/reports", json=body,
                                     headers={**headers, "Idempotency-Key": key})
                assert first.status_code == again.status_code == 202
                no = first.json()["case_no"]
                assert no == case_no_for_key(key)
                assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
                located = ref.jurisdiction.locate(body["lat"], body["lon"])
                assert located is not None and first.json()["grid"] == located.code
                got = await c.get(f"/v1/reports/{no}", headers=headers)
                assert got.status_code == 200
                assert got.json()["description"] == body["description"]
                assert got.json()["category"] == body["category"]
                assert (await c.get("/v1/reports/none", headers=headers)).status_code == 404
                bad = {**report_body(ref, rng), "category": "nope"}
                assert (await c.post("/v1/reports", json=bad, headers=headers)).status_code == 422
                items = [{**report_body(ref, rng), "idempotency_key": f"b-{uuid.uuid4().hex}"}
                         for _ in range(5)]
                again_item = {**items[0], "idempotency_key": items[0]["idempotency_key"]}
                first_batch = await c.post("/v1/reports/batch", json={"reports": [again_item]},
                                           headers=headers)
                assert first_batch.json()["results"][0]["duplicate"] is False
                items.append({**items[1]})  # the same key twice in one batch: refused
                items.append({"category": "x"})  # invalid body
                batch = await c.post("/v1/reports/batch", json={"reports": items},
                                     headers=headers)
                out = batch.json()
                assert (out["accepted"], out["refused"]) == (5, 2)
                assert [r.get("duplicate") for r in out["results"]] == [
                    True, False, False, False, False, None, None]
                assert [r.get("error") for r in out["results"]][5:] == [
                    "duplicate_in_batch", "invalid"]
    finally:
        conn = await asyncpg.connect(database_url())
        try:
            rows = await conn.fetchval(f'SELECT count(*) FROM "{schema}".reports')
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()
    assert rows == 6


def test_judge_ratios_bounds_and_medians() -> None:
    measures: dict[str, Rounds] = {
        # griddispatch, plain per round
        "intake_single": ([700.0, 800.0, 600.0], [1000.0, 1000.0, 1000.0]),  # 0.7,0.8,0.6
        "latency_100_p99": ([49.0, 51.0], [9.0, 9.0]),  # own value, median 50 -> PASS (≤)
        "latency_20_p99": ([31.0], [8.0]),
        "cpu_saturation": ([1300.0], [650.0]),  # exactly 2 ×
        "cpu_steady_50": ([4000.0, 100.0], [1000.0, None]),  # round 2 does not count
        "cpu_steady_100": ([None], [1000.0]),  # no round counts: no verdict
        "intake_batch": ([400.0, 600.0], [1000.0, 1000.0]),  # 0.4, 0.6 -> median 0.5
    }
    verdicts = {v.target.measure: v for v in judge(measures)}
    assert "cpu_steady_100" not in verdicts
    assert verdicts["cpu_steady_50"].values == [4.0]
    assert verdicts["intake_single"].values == pytest.approx([0.7, 0.8, 0.6])
    assert verdicts["intake_single"].value == pytest.approx(0.7)
    assert verdicts["intake_single"].passed
    assert verdicts["latency_100_p99"].value == 50.0 and verdicts["latency_100_p99"].passed
    assert not verdicts["latency_20_p99"].passed
    assert verdicts["cpu_saturation"].value == 2.0 and verdicts["cpu_saturation"].passed
    assert not verdicts["cpu_steady_50"].passed
    assert verdicts["intake_batch"].value == pytest.approx(0.5)
    assert verdicts["intake_batch"].passed
    assert len(TARGETS) == 7


def test_per_report_us_groups_by_process_name() -> None:
    cpu = {1: 0.5, 2: 0.25, 3: 0.25, 4: 0.1}
    names = {1: "gateway", 2: "pg:gateway", 3: "pg:gateway"}
    out = per_report_us(cpu, names, 1000)
    assert out == {"gateway": 500, "pg:gateway": 500, "pg:other": 100, "total": 1100}


def test_versions_table_lines_up_every_version_and_process() -> None:
    """``benchmarks.versions``: one column per version, medians over rounds, a process that one
    version lacks (``notifier`` before it joined the projector) shown as 0 there."""
    import argparse

    from benchmarks.against_plain import Side
    from benchmarks.versions import render

    def side(name: str, runs: list[dict[str, float]]) -> Side:
        s = Side(name, "", "", "public", "case_queue", "", [])
        s.runs["intake"] = [{"visible_per_s": r.pop("v"), "cpu_us_per_report": r} for r in runs]
        return s

    old = side("old", [{"v": 600, "gateway": 1000, "notifier": 150, "total": 1150},
                       {"v": 640, "gateway": 1100, "notifier": 170, "total": 1270}])
    new = side("new", [{"v": 700, "gateway": 900, "total": 900},
                       {"v": 720, "gateway": 950, "total": 950}])
    args = argparse.Namespace(rounds=2, measures=["intake"], rates=[])
    table = render([old, new], args).splitlines()
    assert table[0] == "| measure (median over 2 rounds) | old | new |"
    assert "| single reports visible per s | 620 | 710 |" in table
    assert "| CPU µs per report, notifier | 160 | 0 |" in table
    assert "| **CPU µs per report, total** | 1,210 | 925 |" in table


def test_settle_waits_for_quiet_processes() -> None:
    """A run starts once the systems are idle; a busy one is waited for, then measured anyway
    (with the share it used)."""
    import asyncio
    import subprocess
    import sys
    import time

    from benchmarks.against_plain import SETTLE_BELOW, settle

    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        started = time.monotonic()
        assert asyncio.run(settle([idle.pid], max_s=10)) < SETTLE_BELOW
        assert time.monotonic() - started < 5
        assert asyncio.run(settle([busy.pid], max_s=2)) > 0.3
    finally:
        idle.kill()
        busy.kill()
        idle.wait()
        busy.wait()


def test_idle_counts_each_process_in_ms_per_second() -> None:
    """The idle measure: with no load, what each process spends per second — a spinning
    process about a core (≈ 1,000 ms/s), a sleeping one about nothing — and their total."""
    import asyncio
    import subprocess
    import sys

    from benchmarks.against_plain import CpuSampler, _idle

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        sampler = CpuSampler([sleeper.pid, spinner.pid], exclude=set(), interval=0.1)
        names = {sleeper.pid: "sleeper", spinner.pid: "spinner"}
        with sampler.running():
            result = asyncio.run(_idle(sampler, names, 2.0))
    finally:
        sleeper.kill()
        spinner.kill()
        sleeper.wait()
        spinner.wait()
    ms = result["cpu_ms_per_s"]
    assert 1.0 <= result["seconds"] <= 3.0
    assert ms["sleeper"] < 50
    assert ms["spinner"] > 200  # a busy machine may give it well under a core
    assert ms["total"] == pytest.approx(ms["sleeper"] + ms["spinner"], abs=0.2)
