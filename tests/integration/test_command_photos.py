"""Photo references on lifecycle commands (處置反饋 result, 核查 verify) through the running
system: like a report's, they must name uploaded photos, and a refusal queues nothing. Bad
command arguments are refused with the same ``validation_error`` body as a bad report."""

from __future__ import annotations

from typing import Any

from gateways.runtime import Runtime
from tests.conftest import eventually, user_headers
from tests.intake_support import login, png

GRID = "520102001001"  # inspector-520102001001's grid (Nanming, Xinhua community)
UNKNOWN = {"digest": "sha256:" + "0" * 64, "size": 10, "content_type": "image/png"}


async def _queued(rt: Runtime, verb: str) -> int:
    """Commands of ``verb`` on the COMMANDS stream for GRID's partition: a refused command
    must never reach the broker (the worker would store whatever it is given)."""
    subject = rt.topo.command_subject(rt.ref.jurisdiction.partition_of(GRID), verb)
    info = await rt.js.stream_info(rt.topo.commands_stream, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def _act(
    client: Any, case_no: str, verb: str, headers: dict[str, str], args: dict[str, Any]
) -> Any:
    return await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args, headers=headers)


async def _upload(client: Any, headers: dict[str, str], rgb: tuple[int, int, int]) -> Any:
    response = await client.post(
        "/v1/photos", content=png(rgb=rgb), headers={**headers, "Content-Type": "image/png"}
    )
    assert response.status_code == 201, response.text
    ref = response.json()
    return {k: ref[k] for k in ("digest", "size", "content_type")}


async def _case(client: Any, case_no: str, headers: dict[str, str], **expected: Any) -> Any:
    async def probe() -> dict[str, Any] | None:
        response = await client.get(f"/v1/cases/{case_no}", headers=headers)
        if response.status_code != 200:
            return None
        case: dict[str, Any] = response.json()
        return case if all(case.get(k) == v for k, v in expected.items()) else None

    return await eventually(probe, timeout=20)


async def _reported(client: Any, headers: dict[str, str], description: str) -> str:
    """A new report's case number, once the case is in the queue."""
    response = await client.post(
        "/v1/reports",
        headers=headers,
        json={"category": "SJ0101", "grid": GRID, "description": description},
    )
    assert response.status_code == 202, response.text
    case_no: str = response.json()["case_no"]
    await _case(client, case_no, headers, status="reported")
    return case_no


async def test_result_and_verify_reference_only_uploaded_photos(system: dict[str, Any]) -> None:
    client, rt = system["client"], system["runtime"]
    call_taker = await login(client, "calltaker")
    dispatcher = await login(client, "dispatcher")
    inspector = await login(client, "inspector-520102001001")
    case_no = await _reported(client, call_taker, "垃圾堆放 garbage pile")
    assert (await _act(client, case_no, "file", dispatcher, {})).status_code == 200
    assert (await _act(client, case_no, "dispatch", dispatcher, {})).status_code == 200
    dispatched = await _case(client, case_no, dispatcher, status="dispatched")
    handler = await user_headers(system, role="handler", department=dispatched["department"])
    assert (await _act(client, case_no, "accept", handler, {})).status_code == 200
    before = await _case(client, case_no, dispatcher, status="in_progress")
    result_photo = await _upload(client, handler, (10, 160, 40))

    # 處置反饋 with a photo never uploaded, or with another size than the upload: 422,
    # nothing queued, the case as it was.
    unknown = await _act(
        client, case_no, "report_result", handler, {"note": "已清理", "photos": [UNKNOWN]}
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"] == "unknown_photo"
    assert unknown.json()["field"] == "photos"
    wrong = await _act(
        client,
        case_no,
        "report_result",
        handler,
        {"note": "已清理", "photos": [{**result_photo, "size": result_photo["size"] + 1}]},
    )
    assert wrong.status_code == 422 and wrong.json()["error"] == "photo_mismatch", wrong.text
    assert wrong.json()["stored"] == result_photo
    assert await _queued(rt, "report_result") == 0
    now = await _case(client, case_no, dispatcher)
    assert (now["status"], now["version"]) == (before["status"], before["version"])

    # The uploaded photo is accepted and is what the event records.
    done = await _act(
        client, case_no, "report_result", handler, {"note": "已清理", "photos": [result_photo]}
    )
    assert done.status_code == 200, done.text
    waiting = await _case(client, case_no, dispatcher, status="awaiting_verification")
    results = [e for e in waiting["timeline"] if e["type"] == "ResultReported"]
    assert len(results) == 1
    assert [{k: p[k] for k in result_photo} for p in results[0]["data"]["photos"]] == [
        result_photo
    ]
    assert await _queued(rt, "report_result") == 1

    # 核查 pass or fail with an unknown photo: refused the same way, before the broker.
    lat, lon = rt.ref.jurisdiction.grid(GRID).centroid  # on site: the grid's centre
    for verb, args in (
        ("verify_pass", {"note": "現場核查", "photos": [UNKNOWN], "lat": lat, "lon": lon}),
        ("verify_fail", {"note": "仍有垃圾", "photos": [UNKNOWN], "lat": lat, "lon": lon}),
    ):
        refused = await _act(client, case_no, verb, inspector, args)
        assert refused.status_code == 422, (verb, refused.text)
        assert refused.json()["error"] == "unknown_photo"
        assert await _queued(rt, verb) == 0
    now = await _case(client, case_no, dispatcher)
    assert (now["status"], now["version"]) == ("awaiting_verification", waiting["version"])

    verify_photo = await _upload(client, inspector, (10, 40, 160))
    passed = await _act(
        client,
        case_no,
        "verify_pass",
        inspector,
        {"note": "現場核查通過", "photos": [verify_photo], "lat": lat, "lon": lon},
    )
    assert passed.status_code == 200, passed.text
    verified = await _case(client, case_no, dispatcher, status="verified")
    event = next(e for e in verified["timeline"] if e["type"] == "VerificationPassed")
    assert [{k: p[k] for k in verify_photo} for p in event["data"]["photos"]] == [
        verify_photo
    ]


async def test_bad_command_args_get_the_report_refusal_shape(system: dict[str, Any]) -> None:
    """The same mistakes (a malformed photo digest, an unknown field, a missing required
    field) in a report, a batch item and a lifecycle command give one body shape."""
    client, rt = system["client"], system["runtime"]
    inspector = await login(client, "inspector-520102001001")
    bad_photo = {"digest": "not-a-digest", "size": 10, "content_type": "image/png"}
    report = await client.post(
        "/v1/reports",
        headers=inspector,
        json={"category": "SJ0101", "grid": GRID, "photos": [bad_photo], "colour": "red"},
    )
    assert report.status_code == 422, report.text
    batch = await client.post(
        "/v1/reports/batch",
        headers=inspector,
        json={
            "reports": [
                {
                    "category": "SJ0101",
                    "grid": GRID,
                    "photos": [bad_photo],
                    "colour": "red",
                    "idempotency_key": "command-photos-0001",
                }
            ]
        },
    )
    assert batch.status_code == 200, batch.text
    case_no = await _reported(client, inspector, "井蓋缺失 missing cover")
    command = await _act(
        client, case_no, "verify_fail", inspector, {"photos": [bad_photo], "colour": "red"}
    )
    assert command.status_code == 422, command.text
    assert await _queued(rt, "verify_fail") == 0

    from_report, from_command = report.json(), command.json()
    assert set(from_report) == set(from_command) == {"error", "message", "problems"}
    assert from_report["error"] == from_command["error"] == "validation_error"
    for body in (from_report, from_command):
        for problem in body["problems"]:
            assert set(problem) == {"field", "message", "type"}, problem
        # The message names each problem as "field: message", in order.
        assert body["message"] == "; ".join(
            f"{p['field']}: {p['message']}" for p in body["problems"]
        )

    def by_field(body: dict[str, Any]) -> dict[str, dict[str, str]]:
        return {p["field"]: p for p in body["problems"]}

    reported, commanded = by_field(from_report), by_field(from_command)
    # Fields are named relative to the body the client sent, identically in both.
    for field in ("photos.0.digest", "colour"):
        assert reported[field] == commanded[field]
    assert reported["colour"]["type"] == "extra_forbidden"
    assert reported["description"]["type"] == commanded["note"]["type"] == "missing"

    # A batch item refused for the same body carries the same problems and message.
    item = batch.json()["results"][0]
    assert item["status"] == "refused" and item["http_status"] == 422
    assert item["error"] == "validation_error"
    assert item["message"] == from_report["message"]
    assert item["details"] == {"problems": from_report["problems"]}
