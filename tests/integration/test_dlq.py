"""Poison messages on the command stream: dead-lettered with the reason, the consumer keeps
going, ``gridctl dlq`` lists them, and a fixed dead letter replayed creates its case once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from typer.testing import CliRunner

from aggregates.commands import Command, ReportArgs, Reporter
from core import codec
from core.eventlog import table_name
from core.ids import case_id_for_key, case_no_for_id
from gateways.cli_dlq import list_dead_letters, replay
from gateways.runtime import Runtime
from tests.conftest import auth_headers, database_url, eventually, nats_url


def report_command(rt: Runtime, key: str, description: str | None) -> dict[str, Any]:
    grid = rt.ref.jurisdiction.grid("520102001001")
    case_id = case_id_for_key(key)
    args = ReportArgs(
        category="SJ0101",
        grid=grid.code,
        community=grid.parent,
        district="520102",
        description=description or "x",
        reporter=Reporter(name="王五", phone="13700000000"),
    ).model_dump(mode="json")
    if description is None:
        del args["description"]  # the poison: a report without its description
    command = Command(
        command_id=key,
        verb="report",
        case_id=str(case_id),
        case_no=case_no_for_id(case_id),
        partition="520102",
        actor="bridge-1",
        role="system",
        channel="api",
        at=datetime.now(UTC),
        args={},
    )
    body = command.model_dump(mode="json")
    body["args"] = args
    return body


async def commands_settled(rt: Runtime) -> bool:
    """Every command on the stream delivered to the workers and acknowledged by them."""
    infos = await rt.js.consumers_info(rt.topo.commands_stream)
    workers = [i for i in infos if i.name.startswith("worker_")]
    return bool(workers) and all(not i.num_pending and not i.num_ack_pending for i in workers)


async def case_count(rt: Runtime, case_no: str) -> int:
    async with rt.pool.acquire() as conn:
        return int(
            await conn.fetchval("SELECT count(*) FROM case_queue WHERE case_no = $1", case_no)
        )


async def stored_reports(system: dict[str, Any], case_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(database_url())
    try:
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM {system['settings'].db_schema}.{table_name('520102')} "
                "WHERE originator_id = $1 AND originator_version = 1",
                case_id,
            )
        )
    finally:
        await conn.close()


async def test_poison_messages_are_dead_lettered_listed_and_replayed(
    system: dict[str, Any], tmp_path: Path
) -> None:
    rt: Runtime = system["runtime"]
    client = system["client"]
    subject = rt.topo.command_subject("520102", "report")

    # 1. Garbage and an invalid command go in; the worker parks both and keeps working.
    await rt.js.publish(subject, b"\x00not json at all{")
    poison = report_command(rt, "dlq-fixable-0001", None)
    await rt.js.publish(subject, codec.dumps(poison))
    ok = await client.post(
        "/v1/reports",
        json={"category": "SJ0101", "grid": "520102001002", "description": "after the poison"},
        headers={**await auth_headers(client, "call_taker"), "Idempotency-Key": "dlq-after-0001"},
    )
    assert ok.status_code == 202
    await eventually(lambda: case_count(rt, ok.json()["case_no"]))

    async def two_letters() -> list[Any]:
        letters = await list_dead_letters(rt.js, rt.topo)
        return letters if len(letters) == 2 else []

    garbage, invalid = await eventually(two_letters)
    assert garbage.subject == invalid.subject == subject
    assert garbage.reason.startswith("invalid command") and garbage.data.startswith(b"\x00")
    assert "description" in invalid.reason
    assert rt.consumers_ready()

    # 2. gridctl dlq list shows seq, subject and reason.
    env = {
        "NATS_URL": nats_url(),
        "GRID_STREAM_PREFIX": system["settings"].stream_prefix,
        "COLUMNS": "250",
    }
    from gateways.cli import app as gridctl

    def cli(*args: str) -> Any:
        return CliRunner().invoke(gridctl, ["dlq", *args], env=env)

    listed = await asyncio.to_thread(cli, "list")
    assert listed.exit_code == 0, listed.output
    assert "2 条死信" in listed.output
    assert str(garbage.seq) in listed.output and str(invalid.seq) in listed.output
    assert subject in listed.output and "invalid command" in listed.output

    # 3. The fixed payload replayed (twice: once kept, once for real) makes ONE case.
    fixed = report_command(rt, "dlq-fixable-0001", "井蓋缺失，已補充描述 (description added)")
    path = tmp_path / "fixed.json"
    path.write_bytes(orjson.dumps(fixed))
    kept = await asyncio.to_thread(
        cli, "replay", str(invalid.seq), "--payload", str(path), "--keep"
    )
    assert kept.exit_code == 0, kept.output
    again = await asyncio.to_thread(cli, "replay", str(invalid.seq), "--payload", str(path))
    assert again.exit_code == 0, again.output
    case_no = fixed["case_no"]
    await eventually(lambda: case_count(rt, case_no))
    await eventually(lambda: commands_settled(rt))  # a second copy, if any, processed too
    assert await case_count(rt, case_no) == 1
    assert await stored_reports(system, uuid.UUID(fixed["case_id"])) == 1
    remaining = await list_dead_letters(rt.js, rt.topo)
    assert [d.seq for d in remaining] == [garbage.seq]

    # 4. Replaying the unfixed garbage parks it again (new seq) and nothing stops.
    await replay(rt.js, rt.topo, garbage.seq)

    async def parked_again() -> list[Any]:
        letters = await list_dead_letters(rt.js, rt.topo)
        return letters if letters and letters[0].seq > garbage.seq else []

    (again_parked,) = await eventually(parked_again)
    assert again_parked.data == garbage.data and again_parked.headers.get("Grid-Replayed-From")
    dropped = await asyncio.to_thread(cli, "drop", str(again_parked.seq))
    assert dropped.exit_code == 0 and "已删除 1 / 1 条" in dropped.output
    assert await list_dead_letters(rt.js, rt.topo) == []
    missing = await asyncio.to_thread(cli, "replay", "999999")
    assert missing.exit_code == 1 and "没有序号为" in missing.output

    # The worker is alive: another report still goes through.
    late = await client.post(
        "/v1/reports",
        json={"category": "SJ0101", "grid": "520102001002", "description": "still alive"},
        headers={**await auth_headers(client, "call_taker"), "Idempotency-Key": "dlq-late-0001"},
    )
    await eventually(lambda: case_count(rt, late.json()["case_no"]))
