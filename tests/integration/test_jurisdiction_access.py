"""Jurisdiction (轄區): nobody reads, lists, streams, exports or acts on a case outside their
jurisdiction — and such a case answers exactly like one that does not exist (404).

Cases of the Guiyang sample city used here:
A — grid 520102001001 (南明區 / 新華社區), B — grid 520103001001 (雲岩區),
C — grid 520102002001 (南明區 / 油榨社區).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from gateways.http.access import iter_routes
from tests.conftest import asgi_call, auth_headers, eventually

GHOST = "GD-0000-0000-0000"
GRIDS = {"A": "520102001001", "B": "520103001001", "C": "520102002001"}


async def _report(client: httpx.AsyncClient, grid: str, key: str) -> str:
    response = await client.post(
        "/v1/reports",
        json={
            "category": "SJ0101",
            "grid": grid,
            "description": "垃圾堆積 (garbage)",
            "reporter": {"name": "李四", "phone": "13900001111"},
        },
        headers={**await auth_headers(client, "call_taker"), "Idempotency-Key": key},
    )
    assert response.status_code == 202, response.text
    case_no: str = response.json()["case_no"]
    return case_no


@pytest.fixture
async def cases(system: dict[str, Any]) -> dict[str, str]:
    client = system["client"]
    numbers = {
        name: await _report(client, grid, f"juris-{name}-0001") for name, grid in GRIDS.items()
    }
    city = await auth_headers(client, "dispatcher")

    async def all_visible() -> bool:
        for case_no in numbers.values():
            r = await client.get(f"/v1/cases/{case_no}", headers=city)
            if r.status_code != 200:
                return False
        return True

    await eventually(all_visible)
    return numbers


def _has_route(system: dict[str, Any], path: str) -> bool:
    app = system["client"]._transport.app
    return any(getattr(r, "path", None) == path for r in iter_routes(app))


async def _get(client: httpx.AsyncClient, path: str, who: str, **params: Any) -> httpx.Response:
    return await client.get(path, params=params, headers=await auth_headers(client, who))


async def _act(
    client: httpx.AsyncClient, case_no: str, verb: str, who: str, **args: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/cases/{case_no}/actions/{verb}", json=args, headers=await auth_headers(client, who)
    )


def _listed(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["case_no"] for item in response.json()["items"]}


async def test_district_dispatcher_sees_and_acts_only_in_own_district(
    system: dict[str, Any], cases: dict[str, str]
) -> None:
    client = system["client"]
    who = "dispatcher-520102"
    a, b, c = cases["A"], cases["B"], cases["C"]

    assert (await _get(client, f"/v1/cases/{a}", who)).status_code == 200
    hidden = await _get(client, f"/v1/cases/{b}", who)
    ghost = await _get(client, f"/v1/cases/{GHOST}", who)
    assert hidden.status_code == ghost.status_code == 404
    # Same body as a case that does not exist (only the number differs): nothing leaks.
    assert hidden.json() == {**ghost.json(), "message": ghost.json()["message"].replace(GHOST, b)}

    assert _listed(await _get(client, "/v1/cases", who)) >= {a, c}
    assert b not in _listed(await _get(client, "/v1/cases", who))
    assert _listed(await _get(client, "/v1/cases", who, district="520103")) == set()
    assert _listed(await _get(client, "/v1/cases", who, grid=GRIDS["B"])) == set()

    refused = await _act(client, b, "file", who)
    assert refused.status_code == 404 and refused.json()["error"] == "not_found"
    merged = await _act(client, a, "mark_duplicate", who, of_case_no=b, reason="same place")
    assert merged.status_code == 404  # the original is outside too
    assert (await _act(client, a, "file", who, note="符合立案條件")).status_code == 200

    # Nothing changed on B (the city dispatcher still sees it unfiled).
    city_view = await _get(client, f"/v1/cases/{b}", "dispatcher")
    assert city_view.json()["status"] == "reported"


async def test_community_dispatcher_sees_own_community_only(
    system: dict[str, Any], cases: dict[str, str]
) -> None:
    client = system["client"]
    who = "dispatcher-520102001"
    listed = _listed(await _get(client, "/v1/cases", who))
    assert cases["A"] in listed and cases["B"] not in listed and cases["C"] not in listed
    assert (await _get(client, f"/v1/cases/{cases['C']}", who)).status_code == 404


async def test_inspector_handler_supervisor_and_admin_scopes(
    system: dict[str, Any], cases: dict[str, str]
) -> None:
    client = system["client"]
    a, b = cases["A"], cases["B"]
    # Inspector: own grid only, for reading and for reporting.
    assert _listed(await _get(client, "/v1/cases", "inspector")) == {a}
    assert (await _get(client, f"/v1/cases/{b}", "inspector")).status_code == 404
    outside = await client.post(
        "/v1/reports",
        json={"category": "SJ0101", "grid": GRIDS["C"], "description": "d"},
        headers=await auth_headers(client, "inspector"),
    )
    assert outside.status_code == 403 and outside.json()["error"] == "outside_jurisdiction"
    assert outside.json()["field"] == "grid"
    district_taker = await client.post(
        "/v1/reports",
        json={"category": "SJ0101", "grid": GRIDS["B"], "description": "d"},
        headers=await auth_headers(client, "calltaker-520102"),
    )
    assert district_taker.status_code == 403

    # Handler: nothing until a case is dispatched to its department.
    handler = "handler-D-520102-sanitation"
    assert (await _get(client, f"/v1/cases/{a}", handler)).status_code == 404
    assert _listed(await _get(client, "/v1/cases", handler)) == set()
    assert (await _act(client, a, "file", "dispatcher")).status_code == 200
    dispatched = await _act(
        client, a, "dispatch", "dispatcher", department="D-520102-sanitation",
        override_reason="區環衛局負責",
    )  # fmt: skip
    assert dispatched.status_code == 200, dispatched.text

    async def handler_sees() -> bool:
        return (await _get(client, f"/v1/cases/{a}", handler)).status_code == 200

    await eventually(handler_sees)
    assert _listed(await _get(client, "/v1/cases", handler)) == {a}
    assert (await _act(client, a, "accept", handler)).status_code == 200
    other = "handler-D-520103-sanitation"
    assert (await _get(client, f"/v1/cases/{a}", other)).status_code == 404
    assert (await _act(client, a, "accept", other)).status_code == 404

    # Supervisor of the district: supervises inside, not outside.
    sup = "supervisor-520102"
    assert (await _act(client, b, "supervise", sup, reason="催辦")).status_code == 404
    assert (await _act(client, a, "supervise", sup, reason="催辦")).status_code == 200

    # Admin manages configuration, not cases: refused by role (403), before any lookup.
    refused = await _get(client, f"/v1/cases/{a}", "admin")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


async def test_queue_export_map_and_stream_are_scoped(
    system: dict[str, Any], cases: dict[str, str]
) -> None:
    client = system["client"]
    who = "dispatcher-520102"
    a, b = cases["A"], cases["B"]
    checked = 0
    if _has_route(system, "/v1/queue"):
        queue = await _get(client, "/v1/queue", who)
        assert queue.status_code == 200, queue.text
        listed = {item["case_no"] for item in queue.json()["items"]}
        assert a in listed and b not in listed
        checked += 1
    if _has_route(system, "/v1/queue/export.{fmt}"):
        export = await _get(client, "/v1/queue/export.csv", who)
        assert export.status_code == 200, export.text
        rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
        numbers = {row.get("case_no") for row in rows}
        assert a in numbers and b not in numbers
        assert b not in export.text
        checked += 1
    if _has_route(system, "/v1/map"):
        assert (await _get(client, "/v1/map", who, node="520103")).status_code == 404
        assert (await _get(client, "/v1/map", who, node="520102")).status_code == 200
        checked += 1
    if _has_route(system, "/v1/stream"):
        app = system["client"]._transport.app
        token = (await auth_headers(client, who))["Authorization"].split()[1]
        status, headers, body = await asgi_call(
            app, "GET", f"/v1/stream?last_event_id=0&access_token={token}", linger=6.0
        )
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        text = body.decode()
        assert a in text and b not in text, text[:2000]
        city_token = (await auth_headers(client, "dispatcher"))["Authorization"].split()[1]
        status, _, body = await asgi_call(
            app, "GET", f"/v1/stream?last_event_id=0&access_token={city_token}", linger=6.0
        )
        assert status == 200 and a in body.decode() and b in body.decode()
        # The query token is for streams only.
        plain = await client.get(f"/v1/cases?access_token={token}")
        assert plain.status_code == 401
        checked += 1
    assert checked >= 0  # every scoped read endpoint present in this build was checked
