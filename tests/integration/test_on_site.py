"""On-site evidence through HTTP (issue 17 item 5): a GPS fix outside the reporter's grids is
an explicit choice, never a silent drop of the coordinates; 核查 needs a photo and a fix near
the case, and the event shows the distance and the photo's time to dispatcher and auditor."""

from __future__ import annotations

from typing import Any

from tests.conftest import auth_headers, user_headers
from tests.intake_support import on_site
from tests.integration.test_lifecycle import _sign_in, act, case_where

OWN = "520102001001"  # inspector-520102001001's grid
NEIGHBOUR = "520102001002"
METRE = 1 / 111_195


async def test_fix_outside_the_grids_and_verification_on_site(system: dict[str, Any]) -> None:
    client, runtime = system["client"], system["runtime"]
    j = runtime.ref.jurisdiction
    await _sign_in(client)  # the lifecycle helpers' headers
    inspector = await auth_headers(client, "inspector")
    dispatcher = await auth_headers(client)
    lat, lon = j.grid(NEIGHBOUR).centroid
    body = {"category": "SJ0101", "description": "垃圾", "lat": lat, "lon": lon}

    # A fix in a grid that is not the inspector's: the choices, not a silent drop.
    outside = await client.post("/v1/reports", json=body, headers=inspector)
    assert outside.status_code == 403, outside.text
    refused = outside.json()
    assert refused["located_grid"] == NEIGHBOUR and refused["error"] == "outside_jurisdiction"
    assert refused["choices"][0]["grids"] == [OWN]
    # Naming the own grid with that fix: refused with both choices ...
    mismatch = await client.post("/v1/reports", json={**body, "grid": OWN}, headers=inspector)
    assert mismatch.status_code == 422 and mismatch.json()["located_grid"] == NEIGHBOUR
    assert {c["choice"] for c in mismatch.json()["choices"]} == {"report_there", "keep_grid"}
    # ... and accepted in the own grid keeping the fix when the inspector chooses so.
    kept = await client.post(
        "/v1/reports", json={**body, "grid": OWN, "fix_outside_grid": True}, headers=inspector
    )
    assert kept.status_code == 202, kept.text
    case_no = kept.json()["case_no"]
    assert kept.json()["grid"] == OWN
    case = await case_where(client, case_no, status="reported")
    assert (case["lat"], case["lon"]) == (lat, lon)
    assert case["timeline"][0]["data"]["located_grid"] == NEIGHBOUR

    # 核查 on that case: evidence is required and must be near the case.
    await act(client, case_no, "file", dispatcher)
    await act(client, case_no, "dispatch", dispatcher)
    case = await case_where(client, case_no, status="dispatched")
    handler = await user_headers(system, role="handler", department=case["department"])
    await act(client, case_no, "accept", handler)
    await act(client, case_no, "report_result", handler, note="已清运")
    await case_where(client, case_no, status="awaiting_verification")
    no_evidence = await client.post(f"/v1/cases/{case_no}/actions/verify_pass",
                                    json={"note": "好了"}, headers=inspector)
    assert no_evidence.status_code == 422, no_evidence.text
    assert {p["field"] for p in no_evidence.json()["problems"]} >= {"photos", "lat", "lon"}
    evidence = await on_site(client, case_no, inspector)
    far = await client.post(
        f"/v1/cases/{case_no}/actions/verify_pass",
        json={**evidence, "lat": lat + 400 * METRE}, headers=inspector,
    )
    assert far.status_code == 422 and "200 m" in far.json()["message"], far.text
    taken = system["clock"].now().isoformat()
    near = {**evidence, "lat": lat + 30 * METRE, "photo_taken_at": taken}
    await act(client, case_no, "verify_pass", inspector, note="现场已清理", **near)
    verified = await case_where(client, case_no, status="verified")
    event = next(e for e in verified["timeline"] if e["type"] == "VerificationPassed")
    assert 29 < event["data"]["distance_m"] < 31 and event["data"]["radius_m"] == 200
    assert event["data"]["photo_taken_at"][:16] == system["clock"].now().isoformat()[:16]
    auditor = await auth_headers(client, "auditor")
    history = await client.get(f"/v1/audit/cases/{case_no}/history", headers=auditor)
    assert history.status_code == 200, history.text
    assert '"distance_m"' in history.text and "photo_taken_at" in history.text
