"""Auditors over the running system: history from the event store, the state at any moment
equal to what the API reported at that moment, diffs, activity of a grid / department /
person, exports verified by the standalone verifier, and every auditor read recorded."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from core.clock import FixedClock
from gateways.runtime import Runtime
from projections.audit import history as hist
from projections.audit.pool import MAX_SIZE, audit_pool, close_pool
from projections.audit.verify import expected_heads_missing
from tests.conftest import auth_headers, database_url, eventually, user_headers
from tests.intake_support import on_site
from tests.integration.test_lifecycle import act

ROOT = Path(__file__).resolve().parents[2]
VERIFIER = ROOT / "tools" / "verify_export.py"

#: Fields the case API (read model ``case_queue``) and the replayed aggregate
#: (``Case.snapshot_dict``) both show: API name → state name.
COMPARED = {
    "status": "status",
    "category": "category",
    "grid": "grid",
    "community": "community",
    "district": "district",
    "level": "level",
    "node": "node",
    "department": "department",
    "priority": "priority",
    "due_at": "due",
    "due_step": "due_step",
    "warning": "warned",
    "overdue": "overdue",
    "supervised": "supervised",
    "escalations": "escalations",
    "rework_count": "rework_count",
    "return_count": "return_count",
    "extension_count": "extension_count",
    "satisfaction": "satisfaction",
    "duplicate_of": "duplicate_of",
    "reported_at": "reported_at",
    "updated_at": "updated_at",
    "closed_at": "closed_at",
    "version": "version",
}


def _norm(value: Any) -> Any:
    """Times from either side as aware datetimes (the API says …Z or +00:00)."""
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and "T" in value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


async def _run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT
    )
    output, _ = await proc.communicate()
    return int(proc.returncode or 0), output.decode()


async def _scripted_case(system: dict[str, Any]) -> tuple[str, list[tuple[datetime, dict]]]:
    """Drive one case through the loop over HTTP with the fixed clock; after each step, wait
    until the API shows it and keep (moment, what GET /v1/cases/{no} answered)."""
    client, clock = system["client"], system["clock"]
    rt: Runtime = system["runtime"]
    assert isinstance(clock, FixedClock)
    caller = await auth_headers(client, "call_taker")
    dispatcher = await auth_headers(client, "dispatcher")
    inspector = await auth_headers(client, "inspector")
    grid = "520102001001"  # the demo inspector's grid
    assert grid in rt.ref.jurisdiction.grids
    response = await client.post(
        "/v1/reports",
        headers=caller,
        json={
            "category": "SJ0101",
            "grid": grid,
            "source": "hotline",
            "description": "垃圾暴露 (exposed garbage) — audit script",
            "reporter": {"name": "李四", "phone": "13800000001", "type": "citizen"},
        },
    )
    assert response.status_code == 202, response.text
    case_no = response.json()["case_no"]
    seen: list[tuple[datetime, dict]] = []

    async def snapshot(version: int) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            r = await client.get(f"/v1/cases/{case_no}", headers=dispatcher)
            body: dict[str, Any] = r.json() if r.status_code == 200 else {}
            return body if body.get("version") == version else None

        case: dict[str, Any] = await eventually(probe, timeout=20)
        seen.append((clock.now(), case))
        return case

    await snapshot(1)
    clock.advance(minutes=4)
    await act(client, case_no, "file", dispatcher, note="符合立案條件")
    await snapshot(2)
    clock.advance(minutes=3)
    await act(client, case_no, "dispatch", dispatcher)
    case = await snapshot(3)
    handler = await user_headers(system, role="handler", department=case["department"])
    clock.advance(minutes=5)
    await act(client, case_no, "accept", handler)
    await snapshot(4)
    clock.advance(minutes=20)
    await act(client, case_no, "report_result", handler, note="已清運")
    await snapshot(5)
    clock.advance(minutes=9)
    await act(client, case_no, "verify_fail", inspector, note="仍有殘留",
              **await on_site(client, case_no, inspector))
    await snapshot(6)
    clock.advance(minutes=6)
    await act(client, case_no, "accept", handler)
    clock.advance(minutes=15)
    await act(client, case_no, "report_result", handler, note="已徹底清運")
    await snapshot(8)
    clock.advance(minutes=5)
    await act(client, case_no, "verify_pass", inspector, note="核查通過",
              **await on_site(client, case_no, inspector))
    clock.advance(minutes=2)
    await act(client, case_no, "close", dispatcher, note="結案")
    await snapshot(10)
    return case_no, seen


async def _sealed(system: dict[str, Any], auditor: dict[str, str], case_no: str) -> dict:
    client = system["client"]

    async def probe() -> dict[str, Any] | None:
        r = await client.get(f"/v1/audit/cases/{case_no}/history", headers=auditor)
        body: dict[str, Any] = r.json()
        integrity = body["integrity"]
        return body if integrity["sealed"] == integrity["events"] else None

    result: dict[str, Any] = await eventually(probe, timeout=20)
    return result


async def _same_as_full_replay(
    system: dict[str, Any], auditor: dict[str, str], case_no: str, body: dict[str, Any]
) -> None:
    """The history's ``changes`` and ``state`` are those of a full replay (a snapshot per
    event, ``history.replay``), also when the fast view has to fall back; its integrity is
    what ``/verify`` says; parallel readers (more than the pool holds) get the same answer."""
    rt: Runtime = system["runtime"]
    client = system["client"]

    def full() -> tuple[list[dict[str, Any]], dict[str, Any], list[Any]]:
        with audit_pool(rt).connection() as conn:
            h = hist.case_history(conn, rt.settings.db_schema, case_no, rt.ref.partitions)
        states = hist.replay(h.records)
        befores = [None, *states[:-1]]
        changes = [hist.changed_fields(b, a) for b, a in zip(befores, states, strict=True)]
        return changes, states[-1], h.records

    changes, state, records = await asyncio.to_thread(full)
    assert [e["changes"] for e in body["events"]] == changes
    assert body["state"] == state
    assert hist.replay_changes(records) == (changes, state)
    saved = hist._DERIVED
    hist._DERIVED = {**saved, "warned": lambda case: "not the snapshot's"}
    try:
        assert hist.replay_changes(records) == (changes, state)  # the fallback
    finally:
        hist._DERIVED = saved

    verify = (await client.get(f"/v1/audit/cases/{case_no}/verify", headers=auditor)).json()
    assert verify.pop("case_no") == case_no and verify.pop("partition") == body["partition"]
    assert verify == body["integrity"]
    answers = await asyncio.gather(*[
        client.get(f"/v1/audit/cases/{case_no}/history", headers=auditor)
        for _ in range(3 * MAX_SIZE)
    ])
    assert all(r.status_code == 200 and r.json() == body for r in answers)


async def test_audit_pool_is_read_only_and_closes() -> None:
    owner = SimpleNamespace(database_url=database_url())
    pool = await asyncio.to_thread(audit_pool, owner)
    assert await asyncio.to_thread(audit_pool, owner) is pool  # one per owner

    def write() -> None:
        with pool.connection() as conn:
            conn.execute("CREATE TEMP TABLE audit_pool_probe (x int)")

    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        await asyncio.to_thread(write)
    await asyncio.to_thread(close_pool, owner)
    assert pool.closed
    await asyncio.to_thread(close_pool, owner)  # twice is harmless


async def test_history_state_at_time_diff_and_reads(system: dict[str, Any]) -> None:
    client, clock = system["client"], system["clock"]
    case_no, seen = await _scripted_case(system)
    auditor = await auth_headers(client, "auditor")

    # The state at each moment T equals what the case API reported at T.
    for moment, api_case in seen:
        r = await client.get(
            f"/v1/audit/cases/{case_no}/state", params={"at": moment.isoformat()}, headers=auditor
        )
        assert r.status_code == 200, r.text
        state = r.json()["state"]
        for api_field, state_field in COMPARED.items():
            assert _norm(api_case[api_field]) == _norm(state[state_field]), (
                moment, api_field, api_case[api_field], state[state_field])
        # ... and between two snapshots the state is the earlier one.
        r = await client.get(
            f"/v1/audit/cases/{case_no}/state",
            params={"at": (moment + timedelta(seconds=30)).isoformat()},
            headers=auditor,
        )
        assert r.json()["version"] == api_case["version"]

    first_moment = seen[0][0]
    r = await client.get(
        f"/v1/audit/cases/{case_no}/state",
        params={"at": (first_moment - timedelta(minutes=1)).isoformat()},
        headers=auditor,
    )
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    naive = await client.get(
        f"/v1/audit/cases/{case_no}/state", params={"at": "2026-11-23T10:00:00"}, headers=auditor
    )
    assert naive.status_code == 422

    # Full history from the store: who, role, channel, when, why, fields changed, integrity.
    body = await _sealed(system, auditor, case_no)
    assert body["source"] == "event_store"
    events = body["events"]
    assert [e["version"] for e in events] == list(range(1, 11))
    assert [e["type"] for e in events][:3] == ["Reported", "Filed", "Dispatched"]
    for e in events:
        assert e["actor"] and e["role"] and e["channel"] and e["at"] and e["hash"]
        assert e["changes"]["status"]["to"] == e["to_status"] or e["from_status"] == e["to_status"]
    failed = next(e for e in events if e["type"] == "VerificationFailed")
    assert failed["reason"] == "仍有殘留" and failed["role"] == "inspector"
    assert failed["changes"]["rework_count"] == {"from": 0, "to": 1}
    assert body["integrity"]["ok"] is True and body["integrity"]["first_problem"] is None
    assert body["state"]["status"] == "closed"
    await _same_as_full_replay(system, auditor, case_no, body)

    r = await client.get(f"/v1/audit/cases/{case_no}/state", params={"version": 3},
                         headers=auditor)
    assert r.json()["state"]["status"] == "dispatched"
    assert r.json()["state"]["department"] == seen[2][1]["department"]
    r = await client.get(f"/v1/audit/cases/{case_no}/diff",
                         params={"from_version": 4, "to_version": 6}, headers=auditor)
    diff = r.json()
    assert diff["changes"]["status"] == {"from": "in_progress", "to": "dispatched"}
    assert [e["type"] for e in diff["events"]] == ["ResultReported", "VerificationFailed"]

    # History of the grid, the department and the inspector over the period.
    since = (first_moment - timedelta(hours=1)).isoformat()
    until = (clock.now() + timedelta(hours=1)).isoformat()
    grid = await client.get("/v1/audit/activity", headers=auditor,
                            params={"grid": "520102001001", "since": since, "until": until})
    assert grid.status_code == 200, grid.text
    assert [e["version"] for e in grid.json()["events"] if e["case_no"] == case_no] == list(
        range(1, 11))
    department = seen[2][1]["department"]
    dept = (await client.get("/v1/audit/activity", headers=auditor,
                             params={"department": department})).json()
    assert dept["events"][0]["type"] == "Dispatched"
    assert {e["case_no"] for e in dept["events"]} == {case_no}
    inspector_id = next(e["actor"] for e in events if e["role"] == "inspector")
    mine = (await client.get("/v1/audit/activity", headers=auditor,
                             params={"actor": inspector_id})).json()
    assert [e["type"] for e in mine["events"]] == ["VerificationFailed", "VerificationPassed"]
    empty = (await client.get("/v1/audit/activity", headers=auditor,
                              params={"actor": inspector_id, "until": since})).json()
    assert empty["count"] == 0

    # Finding the case by number, reporter, grid and date.
    for params in ({"q": case_no[:9]}, {"reporter": "李四"}, {"reporter": "13800000001"},
                   {"grid": "520102001001", "date": seen[0][0].date().isoformat()}):
        found = (await client.get("/v1/audit/cases", params=params, headers=auditor)).json()
        assert case_no in [c["case_no"] for c in found["items"]], params

    # Every auditor read is recorded: who looked at what, when.
    reads = (await client.get("/v1/audit/reads", params={"case_no": case_no},
                              headers=auditor)).json()["items"]
    paths = {r["path"] for r in reads}
    assert f"/v1/audit/cases/{case_no}/history" in paths
    assert f"/v1/audit/cases/{case_no}/state" in paths
    assert all(r["user_id"] and r["role"] == "auditor" and r["at"] for r in reads)
    assert any("version=3" in (r["query"] or "") for r in reads)

    # Only auditors: a dispatcher is refused, an auditor cannot write.
    dispatcher = await auth_headers(client, "dispatcher")
    refused = await client.get(f"/v1/audit/cases/{case_no}/history", headers=dispatcher)
    assert refused.status_code == 403
    unauth = await client.get(f"/v1/audit/cases/{case_no}/history")
    assert unauth.status_code == 401
    missing = await client.get("/v1/audit/cases/GD-0000-0000-0000/history", headers=auditor)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_exports_are_verified_offline_and_tampered_exports_fail(
    system: dict[str, Any], tmp_path: Path
) -> None:
    client = system["client"]
    case_no, _ = await _scripted_case(system)
    auditor = await auth_headers(client, "auditor")
    await _sealed(system, auditor, case_no)

    # One case, as JSONL, streamed; checked by the standalone verifier.
    r = await client.get("/v1/audit/export.jsonl", params={"case_no": case_no}, headers=auditor)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in r.headers["content-disposition"]
    lines = r.content.decode().splitlines()
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    assert header["scope"] == "case" and header["exported_by"]
    assert trailer["events"] == 10 == len(lines) - 2
    good = tmp_path / "case.jsonl"
    good.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, output = await _run(sys.executable, str(VERIFIER), str(good))
    assert code == 0, output
    assert "OK" in output

    # A changed field, a removed event, or a swapped pair fails it, naming the line.
    records = [json.loads(x) for x in lines]
    altered = [dict(x) for x in records]
    altered[3] = {**altered[3], "payload": {**altered[3]["payload"], "actor": "someone-else"}}
    bad = tmp_path / "altered.jsonl"
    bad.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in altered) + "\n",
                   encoding="utf-8")
    code, output = await _run(sys.executable, str(VERIFIER), str(bad))
    assert code == 1 and "line 4" in output and "ALTERED" in output, output
    removed = tmp_path / "removed.jsonl"
    removed.write_text("\n".join(lines[:4] + lines[5:]) + "\n", encoding="utf-8")
    code, output = await _run(sys.executable, str(VERIFIER), str(removed))
    assert code == 1 and "REMOVED" in output, output
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("\n".join([*lines[:4], lines[5], lines[4], *lines[6:]]) + "\n",
                       encoding="utf-8")
    code, output = await _run(sys.executable, str(VERIFIER), str(swapped))
    assert code == 1, output

    # Everything: the running chain links from the genesis to the head.
    r = await client.get("/v1/audit/export.jsonl", headers=auditor)
    everything = tmp_path / "all.jsonl"
    everything.write_bytes(r.content)
    heads = (await client.get("/v1/audit/heads", headers=auditor)).json()["partitions"]
    sealed = [h for h in heads if h["sealed"]]
    assert sealed
    expect = [f"{h['partition']}:{h['sealed']['position']}:{h['sealed']['chain']}"
              for h in sealed]
    args = [a for spec in expect for a in ("--expect-head", spec)]
    code, output = await _run(sys.executable, str(VERIFIER), str(everything), *args)
    assert code == 0, output
    # The same heads checked against the sealed log (gridctl audit verify --expect-head).
    schema = system["runtime"].settings.db_schema
    with psycopg.connect(database_url()) as conn:
        assert expected_heads_missing(conn, schema, expect) == []
        forged = f"{sealed[0]['partition']}:{sealed[0]['sealed']['position']}:{'0' * 64}"
        [missing] = expected_heads_missing(conn, schema, [forged])
        assert forged in missing
        with pytest.raises(ValueError):
            expected_heads_missing(conn, schema, ["no-position"])
    # Dropping one event from the full export breaks the running chain.
    all_lines = r.content.decode().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(all_lines[:2] + all_lines[3:]) + "\n", encoding="utf-8")
    code, output = await _run(sys.executable, str(VERIFIER), str(cut))
    assert code == 1, output

    # A filter (the grid over a period) and CSV.
    r = await client.get("/v1/audit/export.jsonl", headers=auditor,
                         params={"grid": "520102001001", "since": "2026-01-01T00:00:00+08:00"})
    grid_file = tmp_path / "grid.jsonl"
    grid_file.write_bytes(r.content)
    assert json.loads(r.content.splitlines()[0])["scope"] == "filter"
    code, output = await _run(sys.executable, str(VERIFIER), str(grid_file))
    assert code == 0, output
    r = await client.get("/v1/audit/export.csv", params={"case_no": case_no}, headers=auditor)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = r.content.decode().splitlines()
    assert rows[0].startswith("partition,position,case_no") and len(rows) == 11
    # A link with ?access_token= works for downloads (the page uses it) ...
    token = auditor["Authorization"].split(" ", 1)[1]
    r = await client.get("/v1/audit/export.csv",
                         params={"case_no": case_no, "access_token": token})
    assert r.status_code == 200
    # ... and the token never lands in the read log.
    reads = (await client.get("/v1/audit/reads", headers=auditor)).json()["items"]
    assert reads and not any(token in (x["query"] or "") for x in reads)
    assert any(x["path"] == "/v1/audit/export.jsonl" for x in reads)
    bad_scope = await client.get("/v1/audit/export.jsonl", headers=auditor,
                                 params={"grid": "520102001001", "actor": "x"})
    assert bad_scope.status_code == 422
