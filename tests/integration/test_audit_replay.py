"""``gridctl replay --check``: every read model rebuilt from the event store in a scratch
schema equals the live one; a hand-edited or lost read-model row is reported (exit code 1)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg

from projections.read_models import all_projections
from tests.conftest import auth_headers, database_url, eventually
from tests.integration.test_lifecycle import act

ROOT = Path(__file__).resolve().parents[2]


async def _replay_check(schema: str) -> tuple[int, list[dict[str, Any]], str]:
    env = {**os.environ, "DATABASE_URL": database_url(), "GRID_DB_SCHEMA": schema,
           "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateways.cli", "replay", "--check", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
    )
    out, err = await proc.communicate()
    return int(proc.returncode or 0), json.loads(out) if out.strip() else [], err.decode()


async def test_replay_check_finds_read_model_differences(system: dict[str, Any]) -> None:
    client, rt = system["client"], system["runtime"]
    schema = system["settings"].db_schema
    caller = await auth_headers(client, "call_taker")
    dispatcher = await auth_headers(client, "dispatcher")
    numbers = []
    for i in range(3):
        r = await client.post("/v1/reports", headers=caller, json={
            "category": "SJ0101", "grid": "520102001001", "description": f"垃圾 {i}",
            "reporter": {"name": "張三", "phone": "13900000000", "type": "citizen"},
        })
        numbers.append(r.json()["case_no"])
    for no in numbers:
        async def visible(no: str = no) -> bool:
            return (await client.get(f"/v1/cases/{no}", headers=dispatcher)).status_code == 200
        await eventually(visible)
    await act(client, numbers[0], "file", dispatcher, note="立案")
    await act(client, numbers[0], "dispatch", dispatcher)
    conn = await asyncpg.connect(database_url(), server_settings={"search_path": schema})
    try:
        def head(partition: str) -> int:
            return int(rt.stores.get(partition).recorder.max_notification_id() or 0)

        heads = {p: await asyncio.to_thread(head, p) for p in rt.ref.partitions}

        async def caught_up() -> bool:
            rows = await conn.fetch("SELECT projection, partition, position "
                                    "FROM projection_positions")
            applied = {(r["projection"], r["partition"]): r["position"] for r in rows}
            return all(applied.get((p.name, part), 0) == head
                       for p in all_projections() for part, head in heads.items() if head)

        await eventually(caught_up, timeout=20)
        code, results, err = await _replay_check(schema)
        assert code == 0, (results, err)
        assert {r["projection"] for r in results} == {p.name for p in all_projections()}
        assert all(r["ok"] and r["events"] > 0 for r in results), results

        # A hand edit of the live queue and a lost timeline row are both reported.
        await conn.execute("UPDATE case_queue SET status = 'closed' WHERE case_no = $1",
                           numbers[0])
        await conn.execute("DELETE FROM case_timeline WHERE version = 1 AND case_id = "
                           "(SELECT case_id FROM case_queue WHERE case_no = $1)", numbers[1])
        code, results, err = await _replay_check(schema)
        assert code == 1, (results, err)
        by_name = {r["projection"]: r for r in results}
        queue = by_name["queue"]["differences"]
        assert {d["side"] for d in queue} == {"live_only", "rebuild_only"}
        assert queue[0]["columns"]["status"] == {"live": "closed", "rebuilt": "dispatched"}
        timeline = by_name["timeline"]["differences"]
        assert [d["side"] for d in timeline] == ["rebuild_only"]
        # Scratch schemas are removed afterwards.
        left = await conn.fetchval(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE $1",
            f"{schema}_chk_%")
        assert left == 0
    finally:
        await conn.close()
