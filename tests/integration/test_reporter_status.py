"""工单查询: a reporter checks a case's progress with its number and the last four digits of
their phone — on the public API, the public page's endpoint and Open311 — and learns nothing
else; wrong digits answer like an unknown case; guessing is rate-limited like sign-ins."""

from __future__ import annotations

from typing import Any

import orjson

from tests.integration.test_lifecycle import CALL_TAKER, DISPATCHER, _sign_in, act, case_where

SECRETS = ("王五", "13700001234", "楼道里堆满了杂物", "中华北路 88 号", "520102001001",
           "D-520102", "dispatcher", "calltaker", "26.58", "106.65", "SJ0101", "立案说明")


async def test_reporter_sees_progress_and_nothing_else(system: dict[str, Any]) -> None:
    client = system["client"]
    await _sign_in(client)
    response = await client.post("/v1/reports", headers=CALL_TAKER, json={
        "category": "SJ0101", "grid": "520102001001", "source": "hotline",
        "description": "楼道里堆满了杂物", "address": "中华北路 88 号", "lat": 26.58,
        "lon": 106.65, "reporter": {"name": "王五", "phone": "13700001234", "type": "citizen"},
    })
    assert response.status_code == 202, response.text
    case_no = response.json()["case_no"]
    await case_where(client, case_no, status="reported")
    await act(client, case_no, "file", DISPATCHER, note="立案说明")
    await act(client, case_no, "dispatch", DISPATCHER)
    await case_where(client, case_no, status="dispatched")

    async def ask(number: str, last4: str) -> Any:
        return await client.post("/v1/public/case-status",
                                 json={"case_no": number, "phone_last4": last4})

    found = await ask(case_no.lower(), "1234")  # no token; the number in any case
    assert found.status_code == 200, found.text
    body = found.json()
    assert set(body) == {"case_no", "status", "status_text", "category_name",
                         "category_name_en", "reported_at", "updated_at", "closed_at",
                         "finished", "progress"}
    assert (body["case_no"], body["status"], body["status_text"]) == (
        case_no, "dispatched", "已派遣至处置部门")
    assert body["category_name"] and body["finished"] is False
    assert [p["text"] for p in body["progress"]] == ["已受理", "已立案", "已派遣至处置部门"]
    assert all(set(p) == {"at", "text"} for p in body["progress"])
    raw = found.text
    for secret in SECRETS:
        assert secret not in raw, secret

    # A wrong phone answers exactly like a case that does not exist.
    wrong = await ask(case_no, "4321")
    unknown = await ask("GD-0000-0000-0000", "1234")
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == unknown.json()
    assert (await ask(case_no, "12a4")).status_code == 422

    # Open311: the same progress with phone_last4, none without, 404 with wrong digits.
    plain = (await client.get(f"/open311/v2/requests/{case_no}.json")).json()[0]
    assert "status_history" not in plain
    with_history = (await client.get(f"/open311/v2/requests/{case_no}.json",
                                     params={"phone_last4": "1234"})).json()[0]
    assert [p["text"] for p in with_history["status_history"]] == [
        p["text"] for p in body["progress"]]
    assert "13700001234" not in orjson.dumps(with_history).decode()
    refused = await client.get(f"/open311/v2/requests/{case_no}.json",
                               params={"phone_last4": "9999"})
    assert refused.status_code == 404
    xml = await client.get(f"/open311/v2/requests/{case_no}.xml", params={"phone_last4": "1234"})
    assert xml.status_code == 200 and "已派遣至处置部门" in xml.text

    # Guessing one case's four digits runs into the sign-in budget (per case number).
    codes = [(await ask(case_no, f"{n:04d}")).status_code for n in range(5000, 5015)]
    assert 429 in codes and set(codes) <= {404, 429}
    limited = await ask(case_no, "1234")  # even the right digits wait now
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


    # The public page (no sign-in, nothing from outside the box).
    page = await client.get("/status/")
    assert page.status_code == 200 and "工单查询" in page.text and "手机号后四位" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = await client.get("/status/status.js")
    assert script.status_code == 200 and "/v1/public/case-status" in script.text
    for text in (page.text, script.text):
        assert "http://" not in text and "https://" not in text
