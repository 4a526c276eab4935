"""Hostile input gets a 4xx with a machine-readable body, outages a 503 with Retry-After —
by class (issue 15): integers beyond what PostgreSQL holds, explicit nulls for fields that
have no "nothing", database errors caused by input, a database or broker that is gone. And
``duplicate`` is true whenever the key already made a case, also after the dedupe window."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from core.clock import FixedClock
from gateways.http import errors
from gateways.http.inputs import INT8_MAX
from tests.conftest import (
    auth_headers,
    database_url,
    drop_everything,
    eventually,
    make_settings,
    nats_url,
)

HUGE = "575791557587124682752"  # the value that reached asyncpg and answered 500


def _is_refusal(response: httpx.Response, status: int, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if error is not None:
        assert body["error"] == error, body
    return body


async def test_integer_beyond_bigint_is_422_not_500(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "dispatcher")
    response = await client.get(
        "/v1/notifications", params={"after": HUGE, "limit": "271"}, headers=headers
    )
    body = _is_refusal(response, 422, "validation_error")
    assert body["problems"][0]["field"] == "query.after", body
    # The edge itself is accepted: the bound is bigint's, not something narrower.
    ok = await client.get("/v1/notifications", params={"after": str(INT8_MAX)}, headers=headers)
    assert ok.status_code == 200, ok.text


async def test_every_integer_parameter_is_bounded_in_the_schema(system: dict[str, Any]) -> None:
    """The mechanism, not the one case: every integer parameter of every operation names
    bounds a bigint can hold (routes added later included)."""
    schema = (await system["client"].get("/openapi.json")).json()
    unbounded = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                for option in param["schema"].get("anyOf", [param["schema"]]):
                    if option.get("type") != "integer":
                        continue
                    low, high = option.get("minimum"), option.get("maximum")
                    if low is None or high is None or low < -(2**63) or high > INT8_MAX:
                        unbounded.append(f"{method.upper()} {path} {param['name']}")
    assert not unbounded, unbounded


async def test_explicit_null_for_a_non_nullable_field_is_422(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "admin")
    response = await client.patch(
        "/v1/admin/users/shiftleader", json={"scopes": [], "disabled": None}, headers=headers
    )
    body = _is_refusal(response, 422, "validation_error")
    assert [p["field"] for p in body["problems"]] == ["disabled"], body
    assert body["problems"][0]["type"] == "null_not_allowed"
    # null where it means something (back to the role's default scopes) still works
    cleared = await client.patch(
        "/v1/admin/users/shiftleader", json={"scopes": None}, headers=headers
    )
    assert cleared.status_code == 200, cleared.text
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["UserPatch"]
    assert schema["properties"]["disabled"] == {"title": "Disabled", "type": "boolean"}
    assert {"type": "null"} in schema["properties"]["node"]["anyOf"]


async def test_database_errors_are_classified_by_cause() -> None:
    """Real errors from the real server: input → 422, outage → 503, anything else a bug."""
    conn = await asyncpg.connect(database_url())
    caught: dict[str, BaseException] = {}
    try:
        await conn.execute("CREATE TEMP TABLE t_nn (n integer NOT NULL)")
        probes: dict[str, tuple[str, list[Any]]] = {
            "beyond int8": ("SELECT $1::bigint", [int(HUGE)]),
            "beyond int4": ("SELECT $1::text::integer", [str(2**40)]),
            "not null": ("INSERT INTO t_nn VALUES ($1)", [None]),
            "bad text": ("SELECT $1::text::integer", ["x"]),
            "syntax (a bug)": ("SELEC 1", []),
        }
        for name, (sql, args) in probes.items():
            try:
                await conn.execute(sql, *args)
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                caught[name] = exc
    finally:
        await conn.close()
    try:
        await asyncpg.connect(database_url(), port=1, timeout=2)
    except OSError as exc:
        caught["connection refused"] = exc
    kinds = {
        name: errors.classify_database_error(exc)
        for name, exc in caught.items()
        if isinstance(exc, asyncpg.PostgresError)
    }
    assert kinds == {
        "beyond int8": "input",
        "beyond int4": "input",
        "not null": "input",
        "bad text": "input",
        "syntax (a bug)": "bug",
    }, kinds
    assert isinstance(caught["connection refused"], OSError)


async def test_database_gone_is_503_with_retry_after(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "dispatcher")
    await system["runtime"].pool.close()  # every later query finds no connection
    response = await client.get("/v1/cases", headers=headers)
    body = _is_refusal(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == str(errors.RETRY_AFTER_S), body


async def test_a_connection_lost_mid_operation_is_503() -> None:
    """asyncpg leaves a connection lost mid-query in a protocol state it refuses to leave
    ("cannot switch to state 12", seen once in drill 7's postmaster kill): an outage."""
    from fastapi import FastAPI

    app = FastAPI()
    errors.install(app)

    @app.get("/lost")
    async def lost() -> None:
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/lost")
    _is_refusal(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == str(errors.RETRY_AFTER_S)


async def test_broker_gone_is_503_with_retry_after(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "call_taker")
    grid = sorted(system["runtime"].ref.jurisdiction.grids)[0]
    await system["runtime"].nc.close()
    response = await client.post(
        "/v1/reports",
        json={"category": "SJ0101", "grid": grid, "description": "no broker"},
        headers={**headers, "Idempotency-Key": f"nobroker-{uuid.uuid4().hex}"},
    )
    _is_refusal(response, 503, "broker_unavailable")
    assert response.headers["Retry-After"] == str(errors.RETRY_AFTER_S)


async def test_every_response_has_a_content_security_policy(system: dict[str, Any]) -> None:
    client = system["client"]
    for path in ("/", "/audit", "/inspector/", "/hotline/", "/department/", "/docs"):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        policy = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in policy, (path, policy)
        assert "frame-ancestors 'none'" in policy, (path, policy)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    api = await client.get("/v1/reference/categories")
    assert api.headers["Content-Security-Policy"].startswith("default-src 'none'")


# --------------------------------------------------------------------------- duplicate


@pytest.fixture
async def short_window(clock: FixedClock) -> AsyncIterator[dict[str, Any]]:
    """The system with a 1 s dedupe window, so "after the window" is a second away."""
    from gateways.bootstrap import ROLES, Runtime
    from gateways.http.app import create_app

    settings = make_settings(GRID_DEDUPE_WINDOW=1.0)
    runtime = await Runtime.open(settings, nats_url(), database_url())
    runtime.start(ROLES)
    app = create_app(runtime, clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        try:
            yield {"runtime": runtime, "client": client, "settings": settings}
        finally:
            await runtime.close()
            await drop_everything(settings)


async def test_duplicate_is_true_after_the_dedupe_window(short_window: dict[str, Any]) -> None:
    client = short_window["client"]
    runtime = short_window["runtime"]
    headers = await auth_headers(client, "call_taker")
    grids = sorted(runtime.ref.jurisdiction.grids)
    district = runtime.ref.jurisdiction.partition_of(grids[0])
    subject = runtime.topo.command_subject(district, "report")
    key = f"late-{uuid.uuid4().hex}"
    body = {"category": "SJ0101", "grid": grids[0], "description": "first"}
    first = await client.post("/v1/reports", json=body, headers={**headers, "Idempotency-Key": key})
    assert first.status_code == 202 and first.json()["duplicate"] is False, first.text
    case_no = first.json()["case_no"]
    dispatcher = await auth_headers(client, "dispatcher")

    async def stored() -> bool:
        return (await client.get(f"/v1/cases/{case_no}", headers=dispatcher)).status_code == 200

    await eventually(stored)

    async def queued() -> int:
        info = await runtime.js.stream_info(runtime.topo.commands_stream, subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))

    before = await queued()

    async def resubmitted_after_window() -> dict[str, Any] | None:
        late = await client.post(
            "/v1/reports", json={**body, "description": "again, later"},
            headers={**headers, "Idempotency-Key": key},
        )
        assert late.status_code == 202, late.text
        assert late.json()["duplicate"] is True, late.text  # inside the window and after it
        # JetStream queued it again: it no longer remembered the key, the store did.
        return late.json() if await queued() > before else None

    late = await eventually(resubmitted_after_window, timeout=20, interval=0.2)
    assert late["case_no"] == case_no
    # In a batch too: the late resubmission is a duplicate, a fresh key is not.
    batch = await client.post(
        "/v1/reports/batch",
        json={"reports": [
            {**body, "idempotency_key": key},
            {**body, "grid": grids[1], "idempotency_key": f"new-{uuid.uuid4().hex}"},
        ]},
        headers=headers,
    )
    assert batch.status_code == 200, batch.text
    assert [r["duplicate"] for r in batch.json()["results"]] == [True, False], batch.text
