"""Households over HTTP (issue 18): register, flags, a visit whose need becomes a case that
the centre sees and whose outcome shows on the household, who sees what of it, the read log,
the worklist, coverage and the overdue map, and the masked export.

One system for the whole story (the budget of the suite): each step asserts real behaviour.
"""

from __future__ import annotations

import io
from typing import Any

import openpyxl

from tests.conftest import auth_headers, eventually, user_headers

GRID = "520102001001"  # 新華社區第一網格 (community 520102001, district 520102)
OTHER_GRID = "520103001001"


async def test_household_story(system: dict[str, Any]) -> None:
    client = system["client"]
    clock = system["clock"]
    inspector = await auth_headers(client, "inspector")
    leader = await user_headers(system, "leader-xinhua", role="supervisor", node="520102001")
    district_leader = await user_headers(system, "leader-nanming", role="supervisor",
                                         node="520102")
    dispatcher = await auth_headers(client, "dispatcher")
    handler = await auth_headers(client, "handler")
    auditor = await auth_headers(client, "auditor")
    other_inspector = await user_headers(system, "insp-other", role="inspector",
                                         grids=[OTHER_GRID])

    body = {"grid": GRID, "address": "新华路 8 号 2 单元 301",
            "members": [{"name": "王秀英", "relation": "户主", "birth_year": 1941,
                         "phone": "13912345678"}],
            "flags": [{"flag": "elderly_alone", "reason": "独居，子女在外地"},
                      {"flag": "serious_illness", "reason": "尿毒症透析"}],
            "party_member": "党员李红"}
    r = await client.post("/v1/households", json=body,
                          headers={**inspector, "Idempotency-Key": "hh-story-0001"})
    assert r.status_code == 201, r.text
    no = r.json()["household_no"]
    again = await client.post("/v1/households", json=body,
                              headers={**inspector, "Idempotency-Key": "hh-story-0001"})
    assert again.status_code == 200 and again.json()["household_no"] == no
    # Edits: grid team and community leaders only.
    r = await client.post("/v1/households", json={**body, "address": "x"},
                          headers=district_leader)
    assert r.status_code == 403
    r = await client.post("/v1/households", json={**body, "address": "x"}, headers=dispatcher)
    assert r.status_code == 403
    r = await client.post(f"/v1/households/{no}/actions/set_flag",
                          json={"args": {"flag": "hardship", "reason": "低保"}},
                          headers=leader)
    assert r.status_code == 200, r.text

    # Who sees what.
    full = (await client.get(f"/v1/households/{no}", headers=inspector)).json()
    assert full["details"] == "full"
    assert set(full["flag_names"]) == {"elderly_alone", "serious_illness", "hardship"}
    assert full["members"][0]["phone"] == "13912345678"
    assert full["light"] == "green" and "record_visit" in full["allowed_actions"]
    assert (await client.get(f"/v1/households/{no}", headers=leader)).json()["details"] == "full"
    limited = (await client.get(f"/v1/households/{no}", headers=district_leader)).json()
    for view in (limited, (await client.get(f"/v1/households/{no}", headers=dispatcher)).json()):
        assert view["details"] == "limited" and view["restricted"] is True
        assert set(view["flag_names"]) == {"elderly_alone", "hardship"}
        assert view["members"] == [{"name": "王**", "relation": "户主"}]
        assert "尿毒症" not in str(view) and "13912345678" not in str(view)
        assert view["allowed_actions"] == []
    assert (await client.get(f"/v1/households/{no}", headers=handler)).status_code == 403
    assert (await client.get(f"/v1/households/{no}", headers=other_inspector)).status_code == 404
    assert (await client.get(f"/v1/households/{no}/history",
                             headers=dispatcher)).status_code == 403
    hist = (await client.get(f"/v1/households/{no}/history", headers=auditor)).json()
    assert hist["broken_at"] is None and len(hist["events"]) == 2

    # The worklist: due this week (weekly flag), overdue first.
    work = (await client.get("/v1/households/worklist", headers=inspector)).json()
    assert [h["household_no"] for h in work["households"]] == [no]

    # A visit two days later; the need becomes a case the centre sees.
    clock.advance(days=2)
    r = await client.post(f"/v1/households/{no}/actions/record_visit", json={"args": {
        "findings": "老人精神尚可；楼道灯坏了，夜间行走不便", "photo_consent": False,
        "needs": [{"category": "SJ0101", "description": "楼道灯损坏，需维修"}]}},
        headers={**inspector, "Idempotency-Key": "visit-story-0001"})
    assert r.status_code == 200, r.text
    visit = r.json()
    case_no = visit["cases"][0]["case_no"]
    retry = await client.post(f"/v1/households/{no}/actions/record_visit", json={"args": {
        "findings": "老人精神尚可；楼道灯坏了，夜间行走不便",
        "needs": [{"category": "SJ0101", "description": "楼道灯损坏，需维修"}]}},
        headers={**inspector, "Idempotency-Key": "visit-story-0001"})
    assert retry.json()["recorded"] is False and retry.json()["cases"][0]["case_no"] == case_no

    async def case_seen() -> Any:
        r = await client.get(f"/v1/cases/{case_no}", headers=dispatcher)
        return r.json() if r.status_code == 200 else None

    case = await eventually(case_seen)
    assert case["status"] == "reported"
    reported = case["timeline"][0]
    assert reported["type"] == "Reported"
    assert reported["data"]["reporter"]["household"] == full["household_id"]  # linked back
    shown = (await client.get(f"/v1/households/{no}", headers=inspector)).json()
    assert shown["cases"][0]["case_no"] == case_no
    assert shown["cases"][0]["outcome"]["status"] == "reported"
    assert shown["last_visit_at"] is not None and shown["visits"] == 1

    # Coverage and the overdue map: a second household left unvisited past its week.
    r = await client.post("/v1/households", json={"grid": GRID, "address": "新华路 9 号",
                                                  "flags": [{"flag": "elderly_alone",
                                                             "reason": "独居"}]},
                          headers={**leader, "Idempotency-Key": "hh-story-0002"})
    assert r.status_code == 201
    clock.advance(days=10)
    cov = (await client.get("/v1/households/coverage?by=grid", headers=leader)).json()
    unit = next(u for u in cov["units"] if u["unit"] == GRID)
    # First household: visited on time (1 of 1), then its next week passed unvisited
    # (missed); second: its week passed unvisited (missed).
    assert (unit["visits_on_time"], unit["visits_due"]) == (1, 3)
    assert unit["overdue"] == 2 and unit["per_flag"]["serious_illness"] == 1
    assert "按期" in cov["definition"]["coverage"]
    dist = (await client.get("/v1/households/coverage?by=district",
                             headers=district_leader)).json()
    assert "serious_illness" not in dist["units"][0]["per_flag"]
    layer = (await client.get("/v1/households/overdue-map", headers=dispatcher)).json()
    assert {"grid": GRID, "overdue": 2, "warning": 0, "flagged": 2} in layer["grids"]
    assert "address" not in str(layer)
    # The centre map's layer (走访逾期): roles without access to the households' details
    # (dispatcher, call-taker, shift leader, a district leader) get counts per grid and
    # nothing else — no household, address, member, flag or reason; handlers and admins,
    # with no household access at all, get nothing.
    call_taker = await auth_headers(client, "call_taker")
    shift_leader = await auth_headers(client, "shift_leader")
    for caller in (dispatcher, call_taker, shift_leader, district_leader):
        r = await client.get("/v1/households/overdue-map", headers=caller)
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"grids"}
        for item in r.json()["grids"]:
            assert set(item) == {"grid", "overdue", "warning", "flagged"}
            assert all(isinstance(item[k], int) for k in ("overdue", "warning", "flagged"))
        for secret in (no, full["household_id"], "新华路", "王", "尿毒症", "独居", "HH-"):
            assert secret not in r.text
    for caller in (handler, await auth_headers(client, "admin")):
        r = await client.get("/v1/households/overdue-map", headers=caller)
        assert r.status_code == 403
    work = (await client.get("/v1/households/worklist", headers=inspector)).json()
    assert [h["light"] for h in work["households"]] == ["red", "red"]

    # Export masks what the role may not see; the read log shows every read to auditors.
    r = await client.get("/v1/households/export?format=xlsx", headers=dispatcher)
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).worksheets[0]
    rows = [list(x) for x in sheet.iter_rows(values_only=True)]
    header = rows[0]
    first = dict(zip(header, next(x for x in rows[1:] if x[0] == no), strict=True))
    assert first["重大疾病"] in (None, "") and first["受限"] == "是" and first["困难"] == "已标记"
    assert "13912345678" not in str(rows)
    r = await client.get("/v1/households/export?format=csv", headers=inspector)
    assert "尿毒症透析" in r.content.decode("utf-8-sig")
    log = (await client.get(f"/v1/households/reads?household={no}", headers=auditor)).json()
    who = {(x["role"], x["what"], x["sensitive_shown"]) for x in log["reads"]}
    assert {("inspector", "detail", True), ("supervisor", "detail", False),
            ("dispatcher", "detail", False), ("dispatcher", "export", False),
            ("inspector", "export", True), ("auditor", "history", True),
            ("inspector", "worklist", True)} <= who
    assert (await client.get("/v1/households/reads", headers=leader)).status_code == 403

    # Import over HTTP: rows of grids the caller may not edit are refused with a reason.
    csv_body = ("外部编号,网格,地址,孤寡老人\n"
                f"B-1,{GRID},新华路 20 号,独居\nB-2,{OTHER_GRID},黔灵路 1 号,独居\n"
                f"B-3,{GRID},,独居\n").encode()
    r = await client.post("/v1/households/import?format=csv", content=csv_body,
                          headers={**inspector, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["registered"] == 1
    assert [(x["line"], "不在您可编辑的范围内" in x["reason"]) for x in result["rejected"]] == [
        (3, True), (4, False)]
    assert (await client.post("/v1/households/import?format=csv", content=csv_body,
                              headers=auditor)).status_code == 403
