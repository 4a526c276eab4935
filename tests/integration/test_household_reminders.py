"""Issue 18, the parts around the register: reminders of household visits due (one per visit
deadline and kind, whoever runs the watcher's pass and however often), the household figures'
definitions beside the case metrics, and the auditors' household read log with its filters
and names. One system (the suite's budget), real PostgreSQL and NATS.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aggregates.households.coverage import HOUSEHOLD_METRICS
from tests.conftest import auth_headers, user_headers

GRID = "520102001001"


async def _notices(client: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get("/v1/notifications?limit=200", headers=headers)
    assert r.status_code == 200, r.text
    return [n for n in r.json()["items"] if n["kind"].startswith("visit_")]


async def test_visit_reminders_definitions_and_read_log(system: dict[str, Any]) -> None:
    client, clock, runtime = system["client"], system["clock"], system["runtime"]
    inspector = await auth_headers(client, "inspector")
    auditor = await auth_headers(client, "auditor")
    other = await user_headers(system, "insp-elsewhere", role="inspector",
                               grids=["520103001001"])
    body = {"grid": GRID, "address": "新华路 18 号 1 单元 502",
            "members": [{"name": "张桂兰", "relation": "户主", "birth_year": 1938}],
            "flags": [{"flag": "elderly_alone", "reason": "独居"},
                      {"flag": "serious_illness", "reason": "肺癌化疗"}]}
    r = await client.post("/v1/households", json=body,
                          headers={**inspector, "Idempotency-Key": "hh-remind-01"})
    assert r.status_code == 201, r.text
    no = r.json()["household_no"]
    async with runtime.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT household_id, inspector, due_at, warning_at FROM household_register "
            "WHERE household_no = $1", no)
    watcher = runtime.watcher

    # Green: nothing. Yellow (80 % of the week): one visit_due, however many passes (the
    # watcher role runs its own passes meanwhile: the list is what counts, not who sent it).
    await watcher.remind(clock.now())
    assert await _notices(client, inspector) == []
    clock.set(row["warning_at"] + timedelta(minutes=1))
    await watcher.remind(clock.now())
    assert await watcher.remind(clock.now()) == [] and (await watcher.tick()) is not None
    mine = await _notices(client, inspector)
    assert [(n["kind"], n["case_no"]) for n in mine] == [("visit_due", no)]
    note = mine[0]
    assert note["audience"] == [f"user.{row['inspector']}"] and note["title"] == "走访临期"
    assert "新华路 18 号" in note["body"] and "肺癌" not in str(note) and "张桂兰" not in str(note)
    assert note["data"]["household_no"] == no
    assert await _notices(client, other) == []  # another grid's inspector hears nothing

    # Red: one visit_overdue, once.
    clock.set(row["due_at"] + timedelta(hours=1))
    await watcher.remind(clock.now())
    assert await watcher.remind(clock.now()) == []
    assert [n["kind"] for n in await _notices(client, inspector)] == ["visit_due", "visit_overdue"]

    # A visit starts a new deadline: its own reminders later, none now.
    r = await client.post(f"/v1/households/{no}/actions/record_visit",
                          json={"args": {"findings": "老人身体尚可"}},
                          headers={**inspector, "Idempotency-Key": "hh-remind-visit-01"})
    assert r.status_code == 200, r.text
    assert await watcher.remind(clock.now()) == []
    async with runtime.pool.acquire() as conn:
        new_due = await conn.fetchval(
            "SELECT due_at FROM household_register WHERE household_no = $1", no)
    clock.set(new_due + timedelta(minutes=5))
    await watcher.remind(clock.now())
    async with runtime.pool.acquire() as conn:
        ledger = await conn.fetch("SELECT kind, due_at FROM visit_reminders ORDER BY id")
    assert [r["kind"] for r in ledger] == ["visit_due", "visit_overdue", "visit_overdue"]

    # The household figures' definitions beside the case metrics, the same as the coverage's.
    defs = (await client.get("/v1/metrics/definitions", headers=auditor)).json()
    served = {m["key"]: m for m in defs["household_metrics"]}
    assert {"coverage", "overdue", "per_flag", "visits_due"} <= set(served)
    assert served["coverage"] == {"key": "coverage", **HOUSEHOLD_METRICS["coverage"]}
    assert {m["key"] for m in defs["metrics"]} & set(served) == set()
    leader = await auth_headers(client, "shift_leader")
    cov = (await client.get("/v1/households/coverage", headers=leader)).json()
    assert {m["key"]: m for m in cov["metrics"]}["coverage"]["note_zh"] == \
        served["coverage"]["note_zh"]

    # The read log: who read which household (by number and address), filtered.
    assert (await client.get(f"/v1/households/{no}", headers=inspector)).status_code == 200
    assert (await client.get(f"/v1/households/{no}", headers=leader)).status_code == 200
    log = (await client.get(f"/v1/households/reads?household={no}", headers=auditor)).json()
    readers = [r["user_id"] for r in log["reads"]]
    assert len(set(readers)) >= 2
    first = log["reads"][0]
    assert first["households"][0]["household_no"] == no
    assert first["households"][0]["address"] == body["address"]
    by_leader = (await client.get("/v1/households/reads", headers=auditor,
                                  params={"reader": first["user_id"]})).json()["reads"]
    assert by_leader and {r["user_id"] for r in by_leader} == {first["user_id"]}
    since = first["at"]
    later = (await client.get("/v1/households/reads", headers=auditor,
                              params={"since": since})).json()["reads"]
    assert later and all(r["at"] >= since for r in later)
    none = (await client.get("/v1/households/reads", headers=auditor,
                             params={"until": "2000-01-01T00:00:00Z"})).json()["reads"]
    assert none == []
    assert (await client.get("/v1/households/reads", headers=leader)).status_code == 403
