"""Tamper evidence, for real: events are written by the running system and sealed by the
relay; then rows are changed directly in PostgreSQL (a field in ``state``, a deleted row, two
rows swapped, an event inserted into a gap, the sealed log itself edited) and
``gridctl audit verify`` must detect and locate the FIRST altered / removed / reordered /
inserted event — partition, position, case, version. After each tamper the row is restored
and the store verifies clean again."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from core.eventlog import table_name
from projections.audit.chain import CHAIN_HEADER
from projections.audit.verify import VerifyReport, verify_store
from tests.conftest import auth_headers, database_url, eventually
from tests.integration.test_lifecycle import act

ROOT = Path(__file__).resolve().parents[2]
GRID = "520102001001"


async def _verify(schema: str) -> VerifyReport:
    return await asyncio.to_thread(verify_store, database_url(), schema)


async def _report(client: Any, headers: dict[str, str], text: str) -> str:
    r = await client.post("/v1/reports", headers=headers, json={
        "category": "SJ0101", "grid": GRID, "description": text,
        "reporter": {"name": "王五", "phone": "13700000009", "type": "citizen"},
    })
    assert r.status_code == 202, r.text
    return str(r.json()["case_no"])


async def _setup(system: dict[str, Any]) -> dict[str, Any]:
    """Three cases with several events each in one partition, all sealed by the relay."""
    client, rt = system["client"], system["runtime"]
    caller = await auth_headers(client, "call_taker")
    dispatcher = await auth_headers(client, "dispatcher")
    numbers = [await _report(client, caller, f"垃圾暴露 #{i}") for i in range(3)]
    for no in numbers:
        async def visible(no: str = no) -> bool:
            r = await client.get(f"/v1/cases/{no}", headers=dispatcher)
            return r.status_code == 200
        await eventually(visible)
    await act(client, numbers[0], "file", dispatcher, note="立案")
    await act(client, numbers[0], "dispatch", dispatcher)
    for no in numbers[1:]:
        await act(client, no, "file", dispatcher, note="立案")
    partition = rt.ref.jurisdiction.partition_of(GRID)
    schema = system["settings"].db_schema
    table = f"{schema}.{table_name(partition)}"
    conn = await asyncpg.connect(database_url())

    async def all_sealed() -> bool:
        head = await conn.fetchval(f"SELECT max(notification_id) FROM {table}")
        sealed = await conn.fetchval(
            f"SELECT max(position) FROM {schema}.log_chain WHERE partition = $1", partition
        )
        return bool(head) and head == sealed and head >= 7

    await eventually(all_sealed, timeout=20)
    return {"conn": conn, "schema": schema, "table": table, "partition": partition,
            "numbers": numbers}


async def _row(conn: asyncpg.Connection, table: str, position: int) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT * FROM {table} WHERE notification_id = $1", position)
    assert row is not None
    return row


async def _restore(conn: asyncpg.Connection, table: str, rows: list[asyncpg.Record]) -> None:
    async with conn.transaction():
        for row in rows:
            await conn.execute(f"DELETE FROM {table} WHERE notification_id = $1",
                               row["notification_id"])
            await conn.execute(f"DELETE FROM {table} WHERE originator_id = $1 AND "
                               "originator_version = $2", row["originator_id"],
                               row["originator_version"])
        for row in rows:
            await conn.execute(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state, "
                "notification_id) VALUES ($1, $2, $3, $4, $5)",
                row["originator_id"], row["originator_version"], row["topic"], row["state"],
                row["notification_id"],
            )


async def _expect(
    s: dict[str, Any], tamper: Callable[[], Awaitable[None]], kind: str, position: int,
    case_id: Any, version: int | None,
) -> VerifyReport:
    await tamper()
    report = await _verify(s["schema"])
    first = report.first
    assert not report.ok and first is not None, report.as_dict()
    assert (first.kind, first.partition, first.position) == (kind, s["partition"], position), \
        first.describe()
    assert first.case_id == str(case_id) and first.version == version, first.describe()
    return report


async def test_tampering_is_detected_and_located(system: dict[str, Any]) -> None:
    s = await _setup(system)
    conn, table, schema = s["conn"], s["table"], s["schema"]
    try:
        clean = await _verify(schema)
        assert clean.ok, clean.as_dict()
        part = next(p for p in clean.partitions if p.partition == s["partition"])
        assert part.events == part.sealed >= 7 and part.unsealed == 0
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY notification_id")
        by_case: dict[Any, list[asyncpg.Record]] = {}
        for r in rows:
            by_case.setdefault(r["originator_id"], []).append(r)
        first_case = rows[0]["originator_id"]
        case_rows = by_case[first_case]  # Reported, Filed, Dispatched

        # 1. A field changed inside `state` (the reason / note of the filing).
        target = case_rows[1]
        before = bytes(target["state"])
        assert "立案".encode() in before

        async def change_field() -> None:
            changed = before.replace("立案".encode(), "不立案".encode())
            await conn.execute(f"UPDATE {table} SET state = $1 WHERE notification_id = $2",
                               changed, target["notification_id"])

        report = await _expect(s, change_field, "altered", target["notification_id"],
                               first_case, 2)
        assert report.first and report.first.case_no == s["numbers"][0]
        # The case's own check (API) says so too.
        auditor = await auth_headers(system["client"], "auditor")
        r = await system["client"].get(f"/v1/audit/cases/{s['numbers'][0]}/verify",
                                       headers=auditor)
        assert r.json()["ok"] is False
        assert r.json()["first_problem"]["position"] == target["notification_id"]
        await _restore(conn, table, [target])
        assert (await _verify(schema)).ok

        # 2. The LAST event of a case deleted: its case chain cannot see that, the log can.
        last = case_rows[-1]
        assert last["notification_id"] < rows[-1]["notification_id"]

        async def delete_row() -> None:
            await conn.execute(f"DELETE FROM {table} WHERE notification_id = $1",
                               last["notification_id"])

        await _expect(s, delete_row, "removed", last["notification_id"], first_case,
                      last["originator_version"])
        await _restore(conn, table, [last])
        assert (await _verify(schema)).ok

        # 3. A middle event deleted.
        middle = case_rows[1]

        async def delete_middle() -> None:
            await conn.execute(f"DELETE FROM {table} WHERE notification_id = $1",
                               middle["notification_id"])

        await _expect(s, delete_middle, "removed", middle["notification_id"], first_case, 2)
        await _restore(conn, table, [middle])
        assert (await _verify(schema)).ok

        # 4. Two rows' states swapped (versions 2 and 3 of the case exchange contents).
        a, b = case_rows[1], case_rows[2]

        async def swap_states() -> None:
            async with conn.transaction():
                await conn.execute(f"UPDATE {table} SET state = $1 WHERE notification_id = $2",
                                   b["state"], a["notification_id"])
                await conn.execute(f"UPDATE {table} SET state = $1 WHERE notification_id = $2",
                                   a["state"], b["notification_id"])

        report = await _expect(s, swap_states, "reordered", a["notification_id"], first_case, 2)
        assert str(b["notification_id"]) in report.first.detail if report.first else False
        await _restore(conn, table, [a, b])
        assert (await _verify(schema)).ok

        # 5. Two rows' versions swapped (the order of the case's events exchanged).
        async def swap_versions() -> None:
            async with conn.transaction():
                await conn.execute(f"UPDATE {table} SET originator_version = -1 "
                                   "WHERE notification_id = $1", a["notification_id"])
                await conn.execute(f"UPDATE {table} SET originator_version = 2 "
                                   "WHERE notification_id = $1", b["notification_id"])
                await conn.execute(f"UPDATE {table} SET originator_version = 3 "
                                   "WHERE notification_id = $1", a["notification_id"])

        await _expect(s, swap_versions, "reordered", a["notification_id"], first_case, 3)
        await _restore(conn, table, [a, b])
        assert (await _verify(schema)).ok

        # 6. An event inserted into a gap of the sealed log (a consumed sequence number),
        #    even with correctly computed hashes, is found: the log sealed nothing there.
        forged = await _forge_into_gap(system, s, rows)
        report = await _verify(schema)
        assert report.first is not None
        assert (report.first.kind, report.first.position) == ("inserted", forged), \
            report.first.describe()
        await conn.execute(f"DELETE FROM {table} WHERE notification_id = $1", forged)
        assert (await _verify(schema)).ok

        # 7. The sealed log itself edited.
        seal_pos = rows[3]["notification_id"]

        async def edit_log() -> None:
            await conn.execute(f"UPDATE {schema}.log_chain SET chain = repeat('0', 64) "
                               "WHERE partition = $1 AND position = $2", s["partition"],
                               seal_pos)

        original = await conn.fetchval(f"SELECT chain FROM {schema}.log_chain WHERE "
                                       "partition = $1 AND position = $2", s["partition"],
                                       seal_pos)
        await _expect(s, edit_log, "chain", seal_pos, rows[3]["originator_id"],
                      rows[3]["originator_version"])
        await conn.execute(f"UPDATE {schema}.log_chain SET chain = $3 WHERE partition = $1 "
                           "AND position = $2", s["partition"], seal_pos, original)
        assert (await _verify(schema)).ok

        # The CLI: progress on stderr, the first problem named, exit code 1.
        await change_field()
        env = {**os.environ, "DATABASE_URL": database_url(), "GRID_DB_SCHEMA": schema,
               "COLUMNS": "200"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateways.cli", "audit", "verify", "--jobs", "1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
        )
        out, err = await proc.communicate()
        text = out.decode()
        assert proc.returncode == 1, (text, err.decode())
        assert "第一个问题" in text and "ALTERED" in text
        assert f"位置 {target['notification_id']}" in text and s["numbers"][0] in text
        assert "分区" in err.decode()  # the progress bar
        await _restore(conn, table, [target])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateways.cli", "audit", "verify", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, (out.decode(), err.decode())
        assert json.loads(out)["ok"] is True
    finally:
        await conn.close()


async def _forge_into_gap(
    system: dict[str, Any], s: dict[str, Any], rows: list[asyncpg.Record]
) -> int:
    """Consume a sequence number (as a rolled-back insert does), let the system write and seal
    one more event after the gap, then insert a well-formed copy of a case's last event,
    re-hashed as version n+1, into the gap."""
    conn, table = s["conn"], s["table"]
    seq = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'notification_id')", table)
    gap = int(await conn.fetchval("SELECT nextval($1)", seq))
    dispatcher = await auth_headers(system["client"], "dispatcher")
    await act(system["client"], s["numbers"][1], "dispatch", dispatcher)

    async def sealed_after_gap() -> bool:
        pos = await conn.fetchval(f"SELECT max(position) FROM {s['schema']}.log_chain "
                                  "WHERE partition = $1", s["partition"])
        return bool(pos) and pos > gap

    await eventually(sealed_after_gap, timeout=20)
    from aggregates.integrity import event_hash
    from projections.audit.rows import decode_state, payload_of

    victim = rows[-1]  # the last event of the third case (Filed), version 2
    state = json.loads(bytes(victim["state"]))
    decoded = decode_state(bytes(victim["state"]))
    version = victim["originator_version"] + 1
    state["prev_hash"] = decoded["hash"]
    state["command_id"] = "forged"
    decoded["command_id"] = "forged"
    from datetime import datetime

    state["hash"] = event_hash(decoded["hash"], str(victim["originator_id"]), version,
                               "Filed", datetime.fromisoformat(decoded["timestamp"].replace(
                                   "Z", "+00:00")), payload_of(decoded))
    await conn.execute(
        f"INSERT INTO {table} (originator_id, originator_version, topic, state, notification_id)"
        " VALUES ($1, $2, $3, $4, $5)",
        victim["originator_id"], version, victim["topic"],
        json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode(), gap,
    )
    return gap


async def test_relay_seals_and_publishes_chain_values(system: dict[str, Any]) -> None:
    """Every published event carries its running-chain value (a witness outside PostgreSQL)
    equal to the sealed row; the chain recomputes from the genesis."""
    s = await _setup(system)
    conn = s["conn"]
    rt = system["runtime"]
    try:
        seals = await conn.fetch(
            f"SELECT position, case_id, version, hash, chain FROM {s['schema']}.log_chain "
            "WHERE partition = $1 ORDER BY position", s["partition"])
        from projections.audit.chain import GENESIS, link

        prev = GENESIS
        for row in seals:
            prev = link(prev, s["partition"], row["position"], str(row["case_id"]),
                        row["version"], row["hash"])
            assert prev == row["chain"]
        stream = rt.topo.events_stream
        info = await rt.js.stream_info(stream)
        found = 0
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await rt.js.get_msg(stream, seq)
            headers = msg.headers or {}
            partition, _, position = str(headers.get("Nats-Msg-Id", "")).partition(":")
            if partition != s["partition"]:
                continue
            expected = next(r["chain"] for r in seals if r["position"] == int(position))
            assert headers.get(CHAIN_HEADER) == expected
            found += 1
        assert found == len(seals)
    finally:
        await conn.close()
