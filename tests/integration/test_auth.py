"""Sign-in, tokens, devices, the admin API, limits and personal-data masking — on the real
services (PostgreSQL for users and sessions, NATS behind the intake)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from typer.testing import CliRunner

from core.users import (
    IdentitySettings,
    TokenError,
    UserRecord,
    UserStore,
    decode_access_token,
    issue_access_token,
)
from gateways.http.app import create_app
from tests.conftest import (
    ROLE_USERS,
    auth_headers,
    database_url,
    demo_password,
    eventually,
    sign_in,
    unique_name,
    user_headers,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def tuned(system: dict[str, Any]) -> AsyncIterator[Any]:
    """A second app over the same runtime with identity settings chosen by the test."""
    clients: list[httpx.AsyncClient] = []

    def make(**settings: Any) -> httpx.AsyncClient:
        app = create_app(system["runtime"], system["clock"], IdentitySettings(**settings))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def report(client: httpx.AsyncClient, grid: str, key: str, who: str = "call_taker") -> str:
    response = await client.post(
        "/v1/reports",
        json={
            "category": "SJ0101",
            "grid": grid,
            "description": "垃圾堆積 (garbage piled up)",
            "reporter": {"name": "張三", "phone": "13812345678"},
        },
        headers={**await auth_headers(client, who), "Idempotency-Key": key},
    )
    assert response.status_code == 202, response.text
    case_no: str = response.json()["case_no"]
    return case_no


async def visible(client: httpx.AsyncClient, case_no: str, who: str = "dispatcher") -> Any:
    response = await client.get(f"/v1/cases/{case_no}", headers=await auth_headers(client, who))
    return response.json() if response.status_code == 200 else None


# --------------------------------------------------------------------------- sign-in


async def test_sign_in_me_and_refusals(system: dict[str, Any]) -> None:
    client = system["client"]
    token = await sign_in(client, "dispatcher-520102")
    assert token["token_type"] == "bearer" and token["expires_in"] == 900
    assert token["refresh_token"].startswith("gdr_")
    assert token["user"]["role"] == "dispatcher" and token["user"]["node"] == "520102"
    assert set(token["scope"].split()) == {"cases:read", "cases:act"}
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "dispatcher-520102" and claims["exp"] - claims["iat"] == 900

    me = await client.get("/v1/auth/me", headers=bearer(token["access_token"]))
    assert me.status_code == 200
    assert me.json()["user_id"] == "dispatcher-520102" and me.json()["token_kind"] == "access"

    # Inspectors carry their grids, handlers their department; the user id is the grid
    # team's id so verification tasks reach them.
    inspector = (await sign_in(client, "inspector-520102001001"))["user"]
    assert inspector["grids"] == ["520102001001"] and inspector["user_id"] == "insp-520102001001"
    handler = (await sign_in(client, "handler-D-520102-sanitation"))["user"]
    assert handler["department"] == "D-520102-sanitation" and handler["node"] is None

    for headers, reason in (
        ({}, "missing_token"),
        (bearer("nonsense"), "invalid_token"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "invalid_request"),
        (bearer(token["access_token"] + "x"), "invalid_token"),
    ):
        response = await client.get("/v1/cases", headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
        assert response.json()["reason"] == reason and response.json()["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    wrong = await client.post("/v1/auth/token", data={"username": "dispatcher", "password": "x"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
    nobody = await client.post("/v1/auth/token", data={"username": "ghost", "password": "x" * 9})
    assert nobody.status_code == 401 and nobody.json() == wrong.json()
    as_json = await client.post("/v1/auth/token", json={"username": "admin"})
    assert as_json.status_code == 422 and as_json.json()["error"] == "validation_error"
    grant = await client.post("/v1/auth/token", data={"grant_type": "client_credentials"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


async def test_expired_and_forged_tokens(system: dict[str, Any]) -> None:
    client, runtime = system["client"], system["runtime"]
    store = UserStore(runtime.pool)
    user = await store.get("dispatcher")
    assert isinstance(user, UserRecord)
    sid, _, _ = await store.create_session(user, user.effective_scopes, "api", IdentitySettings())
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = issue_access_token(runtime.settings.jwt_secret, user, sid, ["cases:read"], 60, past)
    response = await client.get("/v1/cases", headers=bearer(expired))
    assert response.status_code == 401 and response.json()["reason"] == "token_expired"
    forged = issue_access_token("another-secret", user, sid, ["cases:read"], 600)
    response = await client.get("/v1/cases", headers=bearer(forged))
    assert response.status_code == 401 and response.json()["reason"] == "invalid_token"
    # Claims naming a session of somebody else do not work either.
    other = await store.get("admin")
    assert other is not None
    mixed = issue_access_token(runtime.settings.jwt_secret, other, sid, ["admin:users"], 600)
    response = await client.get("/v1/admin/users", headers=bearer(mixed))
    assert response.status_code == 401


async def test_refresh_rotates_and_reuse_revokes_the_session(system: dict[str, Any]) -> None:
    client = system["client"]
    first = await sign_in(client, "supervisor")
    second = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert pair["user"]["token_id"] == first["user"]["token_id"]  # same session
    ok = await client.get("/v1/cases", headers=bearer(pair["access_token"]))
    assert ok.status_code == 200
    # OAuth2 form variant of the same grant.
    third = await client.post(
        "/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
    )
    assert third.status_code == 200
    # The spent token comes back (a stolen copy): the whole session ends.
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and replay.json()["error"] == "refresh_token_reused"
    dead = await client.get("/v1/cases", headers=bearer(third.json()["access_token"]))
    assert dead.status_code == 401 and dead.json()["reason"] == "session_revoked"
    again = await client.post(
        "/v1/auth/refresh", json={"refresh_token": third.json()["refresh_token"]}
    )
    assert again.status_code == 401
    unknown = await client.post("/v1/auth/refresh", json={"refresh_token": "gdr_nope"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_grant"


async def test_logout_ends_the_session_at_once(system: dict[str, Any]) -> None:
    client = system["client"]
    token = await sign_in(client, "calltaker")
    headers = bearer(token["access_token"])
    assert (await client.get("/v1/auth/me", headers=headers)).status_code == 200
    out = await client.post("/v1/auth/logout", headers=headers)
    assert out.status_code == 200 and out.json()["status"] == "signed_out"
    after = await client.get("/v1/auth/me", headers=headers)
    assert after.status_code == 401 and after.json()["reason"] == "session_revoked"
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": token["refresh_token"]})
    assert refresh.status_code == 401


async def test_scopes_narrow_a_token(system: dict[str, Any]) -> None:
    client = system["client"]
    narrow = await sign_in(client, "dispatcher", scope="cases:read")
    assert narrow["scope"] == "cases:read"
    headers = bearer(narrow["access_token"])
    assert (await client.get("/v1/cases", headers=headers)).status_code == 200
    act = await client.post("/v1/cases/GD-0000-0000-0000/actions/file", json={}, headers=headers)
    assert act.status_code == 403 and act.json()["error"] == "insufficient_scope"
    assert "insufficient_scope" in act.headers["WWW-Authenticate"]
    too_much = await client.post(
        "/v1/auth/token",
        data={
            "username": "dispatcher",
            "password": demo_password("dispatcher"),
            "scope": "admin:users",
        },
    )
    assert too_much.status_code == 400 and too_much.json()["error"] == "invalid_scope"


# --------------------------------------------------------------------------- devices


async def test_device_tokens_work_until_revoked(system: dict[str, Any]) -> None:
    client = system["client"]
    inspector = await auth_headers(client, "inspector")
    created = await client.post(
        "/v1/auth/devices", json={"name": "網格員手機 1"}, headers=inspector
    )
    assert created.status_code == 201, created.text
    device = created.json()
    assert device["token"].startswith("gdd_") and device["active"]
    phone = bearer(device["token"])
    me = (await client.get("/v1/auth/me", headers=phone)).json()
    assert me["token_kind"] == "device" and me["user_id"] == "insp-520102001001"
    assert me["channel"] == "mobile" and me["grids"] == ["520102001001"]
    # The phone reports in its grid with the device token.
    response = await client.post(
        "/v1/reports",
        json={"category": "SJ0101", "grid": "520102001001", "description": "井蓋破損"},
        headers=phone,
    )
    assert response.status_code == 202, response.text
    # A device token cannot mint more device tokens.
    nested = await client.post("/v1/auth/devices", json={"name": "x"}, headers=phone)
    assert nested.status_code == 403 and nested.json()["error"] == "password_session_required"
    # Only field roles hold devices.
    desk = await client.post(
        "/v1/auth/devices", json={"name": "x"}, headers=await auth_headers(client, "dispatcher")
    )
    assert desk.status_code == 403
    listed = (await client.get("/v1/auth/devices", headers=inspector)).json()
    assert [d["id"] for d in listed["items"]] == [device["id"]]
    assert "token" not in listed["items"][0]
    # Somebody else cannot see or revoke it (404, as if it did not exist).
    other = await auth_headers(client, "handler")
    gone = await client.delete(f"/v1/auth/devices/{device['id']}", headers=other)
    assert gone.status_code == 404
    peek = await client.get(
        "/v1/auth/devices", params={"user_id": "insp-520102001001"}, headers=other
    )
    assert peek.status_code == 403
    # The owner revokes it: it stops working on the next request.
    revoked = await client.delete(f"/v1/auth/devices/{device['id']}", headers=inspector)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert not revoked.json()["active"]
    dead = await client.get("/v1/auth/me", headers=phone)
    assert dead.status_code == 401 and dead.json()["reason"] == "token_revoked"

    # An admin revokes a lost phone of somebody else.
    second = (
        await client.post("/v1/auth/devices", json={"name": "手機 2"}, headers=inspector)
    ).json()
    admin = await auth_headers(client, "admin")
    everyone = (await client.get("/v1/auth/devices", headers=admin)).json()
    assert second["id"] in [d["id"] for d in everyone["items"]]
    assert (await client.get("/v1/auth/me", headers=bearer(second["token"]))).status_code == 200
    by_admin = await client.delete(f"/v1/auth/devices/{second['id']}", headers=admin)
    assert by_admin.status_code == 200 and by_admin.json()["revoked_by"] == "admin"
    assert (await client.get("/v1/auth/me", headers=bearer(second["token"]))).status_code == 401


async def test_device_limit(tuned: Any) -> None:
    client = tuned(max_devices=2)
    headers = await auth_headers(client, "inspector")
    for i in range(2):
        ok = await client.post("/v1/auth/devices", json={"name": f"d{i}"}, headers=headers)
        assert ok.status_code == 201
    full = await client.post("/v1/auth/devices", json={"name": "d3"}, headers=headers)
    assert full.status_code == 409 and full.json()["error"] == "too_many_devices"


# --------------------------------------------------------------------------- admin API


async def test_admin_manages_users_and_grants_take_effect_at_once(system: dict[str, Any]) -> None:
    client = system["client"]
    admin = await auth_headers(client, "admin")
    listing = (await client.get("/v1/admin/users", headers=admin)).json()
    assert {u["username"] for u in listing["items"]} >= set(ROLE_USERS.values())
    assert all("argon2" not in str(u) and "password_hash" not in u for u in listing["items"])
    body = {
        "username": "dispatcher-520111",
        "name": "花溪區派遣員",
        "role": "dispatcher",
        "node": "520111",
        "password": "a-long-password-1",
    }
    created = await client.post("/v1/admin/users", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["node"] == "520111"
    again = await client.post("/v1/admin/users", json=body, headers=admin)
    assert again.status_code == 409 and again.json()["error"] == "user_exists"

    for bad, field in (
        ({**body, "username": "x1", "node": "999999"}, "node"),
        ({**body, "username": "x2", "node": "520111001001"}, "node"),  # a grid, not a node
        ({**body, "username": "x3", "role": "handler", "node": None}, "department"),
        ({**body, "username": "x4", "role": "inspector", "node": None, "grids": ["1"]}, "grids"),
        ({**body, "username": "x5", "role": "system"}, "role"),
        ({**body, "username": "x6", "password": "short"}, "password"),
        ({**body, "username": "x7", "scopes": ["admin:users"]}, "scopes"),
        ({**body, "username": "bad name"}, "username"),
    ):
        refused = await client.post("/v1/admin/users", json=bad, headers=admin)
        assert refused.status_code == 422, (bad, refused.text)
        payload = refused.json()
        assert payload["error"] == "validation_error"
        assert field in str(payload.get("field")) + str(payload.get("problems")), payload

    new = await sign_in(client, "dispatcher-520111", "a-long-password-1")
    headers = bearer(new["access_token"])
    assert (await client.get("/v1/cases", headers=headers)).status_code == 200
    # Moving the user to another district ends their sessions: sign in again.
    moved = await client.patch(
        "/v1/admin/users/dispatcher-520111", json={"node": "520115"}, headers=admin
    )
    assert moved.status_code == 200 and moved.json()["node"] == "520115"
    assert (await client.get("/v1/cases", headers=headers)).status_code == 401
    again_token = await sign_in(client, "dispatcher-520111", "a-long-password-1")
    assert again_token["user"]["node"] == "520115"
    # Disabled: the live token dies and sign-in says so.
    disabled = await client.patch(
        "/v1/admin/users/dispatcher-520111", json={"disabled": True}, headers=admin
    )
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    dead = await client.get("/v1/cases", headers=bearer(again_token["access_token"]))
    assert dead.status_code == 401
    locked = await client.post(
        "/v1/auth/token", data={"username": "dispatcher-520111", "password": "a-long-password-1"}
    )
    assert locked.status_code == 403 and locked.json()["error"] == "account_disabled"
    await client.patch("/v1/admin/users/dispatcher-520111", json={"disabled": False}, headers=admin)
    # A new password; the old one stops working.
    changed = await client.post(
        "/v1/admin/users/dispatcher-520111/password",
        json={"password": "another-password-2"},
        headers=admin,
    )
    assert changed.status_code == 200
    old = await client.post(
        "/v1/auth/token", data={"username": "dispatcher-520111", "password": "a-long-password-1"}
    )
    assert old.status_code == 401
    await sign_in(client, "dispatcher-520111", "another-password-2")
    self_lock = await client.patch("/v1/admin/users/admin", json={"disabled": True}, headers=admin)
    assert self_lock.status_code == 409
    missing = await client.get("/v1/admin/users/nobody-here", headers=admin)
    assert missing.status_code == 404


async def test_demo_users_load_once(system: dict[str, Any]) -> None:
    from core.users import load_demo_users

    runtime = system["runtime"]
    store = UserStore(runtime.pool)
    count = await store.count()
    assert count >= 19
    again = await load_demo_users(
        store, IdentitySettings().demo_users_file, runtime.ref.jurisdiction
    )
    assert again == [] and await store.count() == count


# --------------------------------------------------------------------------- limits


async def test_sign_in_rate_limits(tuned: Any) -> None:
    client = tuned(rate_signin_ip=(3, 1.0), rate_signin_user=(100, 60.0))
    for _ in range(3):
        r = await client.post("/v1/auth/token", data={"username": "x1", "password": "wrongwrong"})
        assert r.status_code == 401
    limited = await client.post("/v1/auth/token", data={"username": "x", "password": "y" * 9})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"] == "rate_limited" and limited.json()["limit"] == "signin_ip"
    assert limited.json()["retry_after"] >= 1

    per_user = tuned(rate_signin_ip=(100, 60.0), rate_signin_user=(2, 1.0))
    for _ in range(2):
        await per_user.post("/v1/auth/token", data={"username": "admin", "password": "guess-1234"})
    blocked = await per_user.post(
        "/v1/auth/token", data={"username": "ADMIN", "password": demo_password("admin")}
    )
    assert blocked.status_code == 429 and blocked.json()["limit"] == "signin_user"
    other = await per_user.post(
        "/v1/auth/token", data={"username": "auditor", "password": demo_password("auditor")}
    )
    assert other.status_code == 200


async def test_intake_rate_limits_per_token_and_ip(tuned: Any) -> None:
    client = tuned(rate_intake_token=(2, 1.0), rate_intake_ip=(100, 60.0))
    headers = await auth_headers(client, "call_taker")
    body = {"category": "SJ0101", "grid": "520102001001", "description": "d"}
    for _ in range(2):
        assert (await client.post("/v1/reports", json=body, headers=headers)).status_code == 202
    limited = await client.post("/v1/reports", json=body, headers=headers)
    assert limited.status_code == 429 and limited.json()["limit"] == "intake_token"
    # Another token of the same user is a separate bucket (one per session / device).
    fresh = bearer((await sign_in(client, "call_taker"))["access_token"])
    assert (await client.post("/v1/reports", json=body, headers=fresh)).status_code == 202

    by_ip = tuned(rate_intake_token=(100, 60.0), rate_intake_ip=(1, 1.0))
    headers = await auth_headers(by_ip, "call_taker")
    assert (await by_ip.post("/v1/reports", json=body, headers=headers)).status_code == 202
    limited = await by_ip.post("/v1/reports", json=body, headers=headers)
    assert limited.status_code == 429 and limited.json()["limit"] == "intake_ip"
    # The per-IP bucket is spent before authentication: anonymous floods are cut too.
    anonymous = await by_ip.post("/v1/reports", json=body)
    assert anonymous.status_code == 429


async def test_oversized_bodies_are_refused(system: dict[str, Any]) -> None:
    client = system["client"]
    headers = await auth_headers(client, "call_taker")
    huge = b'{"category": "SJ0101", "description": "' + b"x" * (1024 * 1024) + b'"}'
    declared = await client.post(
        "/v1/reports", content=huge, headers={**headers, "Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.json()["error"] == "too_large" and declared.json()["limit"] == 1024 * 1024

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for i in range(0, len(huge), 64 * 1024):
            yield huge[i : i + 64 * 1024]

    streamed = await client.post(
        "/v1/reports", content=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413 and streamed.json()["error"] == "too_large"
    # Just under the limit is parsed and refused for what it says, not for its size.
    fits = await client.post(
        "/v1/reports",
        json={"category": "SJ0101", "grid": "520102001001", "description": "x" * 900_000},
        headers=headers,
    )
    assert fits.status_code == 422 and fits.json()["error"] == "validation_error"


# --------------------------------------------------------------------------- PII, auditors


async def test_personal_data_masked_except_for_those_who_need_it(system: dict[str, Any]) -> None:
    client = system["client"]
    case_no = await report(client, "520102001001", "pii-case-0001")
    await eventually(lambda: visible(client, case_no))
    seen: dict[str, Any] = {}
    for who in (
        "call_taker",
        "dispatcher",
        "dispatcher-520102",
        "auditor",
        "supervisor",
        "shift_leader",
        "inspector",
    ):
        case = await visible(client, case_no, who)
        assert case is not None, who
        seen[who] = case
    for who in ("call_taker", "dispatcher", "dispatcher-520102", "auditor"):
        assert seen[who]["reporter_name"] == "張三", who
        assert seen[who]["reporter_phone"] == "13812345678", who
        assert seen[who]["timeline"][0]["data"]["reporter"]["phone"] == "13812345678"
    for who in ("supervisor", "shift_leader", "inspector"):
        case = seen[who]
        assert case["reporter_name"] == "張*", who
        assert case["reporter_phone"] == "138****5678", who
        assert case["timeline"][0]["data"]["reporter"] == {
            **seen["auditor"]["timeline"][0]["data"]["reporter"],
            "name": "張*",
            "phone": "138****5678",
        }
        assert "13812345678" not in str(case) and "張三" not in str(case)
    # Lists are masked the same way.
    listing = await client.get("/v1/cases", headers=await auth_headers(client, "supervisor"))
    row = next(r for r in listing.json()["items"] if r["case_no"] == case_no)
    assert row["reporter_phone"] == "138****5678"


async def test_auditor_reads_are_logged_and_writes_refused(system: dict[str, Any]) -> None:
    client, runtime = system["client"], system["runtime"]
    case_no = await report(client, "520103001001", "audit-case-0001")
    await eventually(lambda: visible(client, case_no))
    auditor = await auth_headers(client, "auditor")
    assert (await client.get(f"/v1/cases/{case_no}", headers=auditor)).status_code == 200
    listing = await client.get("/v1/cases", params={"district": "520103"}, headers=auditor)
    assert listing.status_code == 200
    write = await client.post(f"/v1/cases/{case_no}/actions/file", json={}, headers=auditor)
    assert write.status_code == 403 and write.json()["error"] in ("forbidden", "read_only")
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM audit_reads ORDER BY id")
    logged = [(r["method"], r["path"], r["query"], r["case_no"], r["user_id"]) for r in rows]
    assert ("GET", f"/v1/cases/{case_no}", None, case_no, "auditor") in logged
    assert ("GET", "/v1/cases", "district=520103", None, "auditor") in logged
    assert all(r["role"] == "auditor" for r in rows)
    # Other roles' reads are not in the auditor log.
    await visible(client, case_no, "dispatcher")
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_reads") == len(rows)


# --------------------------------------------------------------------------- gridctl users


async def test_gridctl_users(system: dict[str, Any]) -> None:
    from gateways.cli import app as gridctl

    settings = system["settings"]
    env = {
        "DATABASE_URL": database_url(),
        "GRID_DB_SCHEMA": settings.db_schema,
        "GRID_CITY": str(settings.city_dir),
        "COLUMNS": "200",
    }
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Any:
        result = runner.invoke(gridctl, list(args), env=env, input=stdin)
        return result

    async def invoke(*args: str, stdin: str | None = None) -> Any:
        return await asyncio.to_thread(run, *args, stdin=stdin)

    added = await invoke(
        "users", "add", "inspector-x", "--role", "inspector", "--grid", "520111001001",
        "--name", "溪北網格員", "--password-stdin", stdin="cli-password-1\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = await invoke("users", "list", "--role", "inspector")
    assert listed.exit_code == 0 and "inspector-x" in listed.output
    assert "520111001001" in listed.output
    bad = await invoke("users", "add", "y-user", "--role", "dispatcher", "--node", "nope",
                       "--password-stdin", stdin="cli-password-1\n")  # fmt: skip
    assert bad.exit_code != 0 and "未知节点" in bad.output

    token = await sign_in(system["client"], "inspector-x", "cli-password-1")
    assert token["user"]["grids"] == ["520111001001"]
    granted = await invoke("users", "grant", "inspector-x", "--grid", "520111001001",
                           "--grid", "520111001002")  # fmt: skip
    assert granted.exit_code == 0, granted.output
    me = await system["client"].get("/v1/auth/me", headers=bearer(token["access_token"]))
    assert me.status_code == 401  # the grant changed: sign in again
    again = await sign_in(system["client"], "inspector-x", "cli-password-1")
    assert again["user"]["grids"] == ["520111001001", "520111001002"]

    changed = await invoke("users", "passwd", "inspector-x", "--password-stdin",
                           stdin="cli-password-2\n")  # fmt: skip
    assert changed.exit_code == 0, changed.output
    await sign_in(system["client"], "inspector-x", "cli-password-2")
    disabled = await invoke("users", "disable", "inspector-x")
    assert disabled.exit_code == 0
    refused = await system["client"].post(
        "/v1/auth/token", data={"username": "inspector-x", "password": "cli-password-2"}
    )
    assert refused.status_code == 403
    enabled = await invoke("users", "disable", "inspector-x", "--enable")
    assert enabled.exit_code == 0
    await sign_in(system["client"], "inspector-x", "cli-password-2")

    conn = await asyncpg.connect(database_url())
    try:
        stored = await conn.fetchval(
            f"SELECT password_hash FROM {settings.db_schema}.users WHERE username = 'inspector-x'"
        )
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$") and "cli-password" not in stored
    assert os.environ.get("GRID_DB_SCHEMA") != settings.db_schema  # the runner restored env


async def test_user_headers_helper_mints_real_sessions(system: dict[str, Any]) -> None:
    headers = await user_headers(system, role="handler", department="D-520111-sanitation")
    me = await system["client"].get("/v1/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["department"] == "D-520111-sanitation"


async def test_nul_characters_are_refused_before_any_route(system: dict[str, Any]) -> None:
    client, rt = system["client"], system["runtime"]
    headers = await auth_headers(client, "call_taker")
    before = int((await rt.js.stream_info(rt.topo.commands_stream)).state.messages)
    body = {"category": "SJ0101", "grid": "520102001001", "description": "bad\u0000text"}
    refused = await client.post("/v1/reports", json=body, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"] == "invalid_character"
    assert int((await rt.js.stream_info(rt.topo.commands_stream)).state.messages) == before
    escaped = {**body, "description": "a literal \\u0000 is fine"}
    ok = await client.post("/v1/reports", json=escaped, headers=headers)
    assert ok.status_code == 202, ok.text
    query = await client.get("/v1/cases", params={"grid": "x\x00"}, headers=headers)
    assert query.status_code == 422 and query.json()["error"] == "invalid_character"
    path = await client.get("/v1/cases/GD%00X", headers=headers)
    assert path.status_code == 422
    form = await client.post("/v1/auth/token", data={"username": "a\x00b", "password": "x" * 9})
    assert form.status_code == 422 and form.json()["error"] == "invalid_character"


async def test_session_checks_are_cached_briefly_and_forgotten_on_change(
    system: dict[str, Any],
) -> None:
    """A gateway reuses a checked session for GRID_SESSION_CACHE_S (2 s): a revocation made
    elsewhere (another gateway, SQL, the CLI) takes effect within it; one made through this
    gateway (sign-out, admin change) at once — see test_logout_ends_the_session_at_once."""
    client, runtime = system["client"], system["runtime"]
    assert runtime.settings.session_cache_s == 2.0
    token = await sign_in(client, "supervisor")
    headers = bearer(token["access_token"])
    assert (await client.get("/v1/auth/me", headers=headers)).status_code == 200
    async with runtime.pool.acquire() as conn:
        await conn.execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'elsewhere' "
            "WHERE sid = $1::uuid", token["user"]["token_id"]
        )
    start = asyncio.get_running_loop().time()

    async def refused() -> bool:
        return (await client.get("/v1/auth/me", headers=headers)).status_code == 401

    await eventually(refused, timeout=10, interval=0.1)
    assert asyncio.get_running_loop().time() - start <= 2.5


async def test_a_cached_session_gives_each_token_its_own_scopes(system: dict[str, Any]) -> None:
    """The session cache keeps the credential made from a session row by the token's scope
    string: two tokens of one session with different scopes stay different, however often
    they are used, and a disabled account is still refused once the row is read again."""
    runtime = system["runtime"]
    store = UserStore(runtime.pool, session_cache_s=60.0)
    user = await store.create(unique_name("cached-"), "dispatcher", None, node="520102")
    sid, _, _ = await store.create_session(user, user.effective_scopes, "api", IdentitySettings())
    secret = runtime.settings.jwt_secret
    full = issue_access_token(secret, user, sid, user.effective_scopes, 600)
    narrow = issue_access_token(secret, user, sid, ["cases:read"], 600)
    for _ in range(3):  # the first use of each reads and caches, the others reuse
        for token, scopes in ((full, user.effective_scopes), (narrow, ["cases:read"])):
            credential = await store.resolve_access(decode_access_token(secret, token))
            assert credential.scopes == sorted(scopes) and credential.token_id == sid
    assert "cases:read" in user.effective_scopes and len(user.effective_scopes) > 1
    reused = [await store.resolve_access(decode_access_token(secret, full)) for _ in range(2)]
    assert reused[0] is reused[1]  # made once per row and scope string, not per request
    async with runtime.pool.acquire() as conn:
        await conn.execute("UPDATE users SET disabled = true WHERE user_id = $1", user.user_id)
    # Changed elsewhere: this store sees it when it reads the row again.
    assert (await store.resolve_access(decode_access_token(secret, narrow))).scopes
    store.forget_sessions()
    with pytest.raises(TokenError) as refused:
        await store.resolve_access(decode_access_token(secret, narrow))
    assert refused.value.code == "account_disabled"
