"""What the sign-in pages rely on (issue 16): the demo accounts shown only while demo users are
enabled and as published, sign-in refusals in zh-Hans, failed and locked sign-ins logged as
security events, staff display names by id, and /docs and /redoc without a CDN."""

from __future__ import annotations

from typing import Any

import httpx
from structlog.testing import capture_logs

from core.users import IdentitySettings, UserStore
from gateways.http.app import create_app
from tests.conftest import auth_headers, demo_password


def _client(system: dict[str, Any], **settings: Any) -> httpx.AsyncClient:
    app = create_app(system["runtime"], system["clock"], IdentitySettings(**settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_demo_accounts_security_log_people_and_local_docs(system: dict[str, Any]) -> None:
    client = system["client"]
    # Demo users enabled (the default) and untouched: the page may show them, by role.
    demo = (await client.get("/v1/auth/demo", params={"role": "dispatcher"})).json()
    assert demo["enabled"] is True
    names = {a["username"] for a in demo["accounts"]}
    assert "dispatcher" in names and all(a["role"] == "dispatcher" for a in demo["accounts"])
    shown = next(a for a in demo["accounts"] if a["username"] == "dispatcher")
    assert shown["password"] == demo_password("dispatcher")
    # A demo user whose password was changed (or who was disabled) is not shown any more.
    store = UserStore(system["runtime"].pool)
    assert "dispatcher-520103" in names
    await store.set_password("dispatcher-520103", "$argon2id$v=19$m=65536,t=3,p=4$changed$changed")
    after = (await client.get("/v1/auth/demo", params={"role": "dispatcher"})).json()
    assert {a["username"] for a in after["accounts"]} == names - {"dispatcher-520103"}
    # Demo users switched off: nothing, whatever is in the table.
    async with _client(system, GRID_DEMO_USERS=False) as off:
        assert (await off.get("/v1/auth/demo")).json() == {"enabled": False, "accounts": []}

    # Failed and locked sign-ins: zh-Hans messages, one security log line each.
    async with _client(system, rate_signin_ip=(100, 60.0), rate_signin_user=(2, 0.1)) as tight:
        with capture_logs() as logs:
            wrong = await tight.post(
                "/v1/auth/token", data={"username": "auditor", "password": "wrong-guess"}
            )
            await tight.post("/v1/auth/token", data={"username": "auditor", "password": "x" * 9})
            locked = await tight.post(
                "/v1/auth/token",
                data={"username": "auditor", "password": demo_password("auditor")},
            )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
    assert wrong.json()["message"] == "用户名或密码错误"
    assert locked.status_code == 429 and locked.json()["error"] == "rate_limited"
    failed = [e for e in logs if e["event"] == "auth.signin_failed"]
    assert len(failed) == 2 and {e["username"] for e in failed} == {"auditor"}
    assert all(e["ip"] and e["log_level"] == "warning" for e in failed)
    lock = [e for e in logs if e["event"] == "auth.signin_locked"]
    assert len(lock) == 1 and lock[0]["username"] == "auditor" and lock[0]["ip"]
    assert lock[0]["limit"] == "signin_user"
    # No password ever reaches the log.
    assert not any("wrong-guess" in str(e) or demo_password("auditor") in str(e) for e in logs)

    # People by name: users by id; ids that are not users are left out.
    people = await client.get(
        "/v1/people",
        params={"ids": "auditor,calltaker,sla-watcher"},
        headers=await auth_headers(client, "call_taker"),
    )
    assert people.status_code == 200
    by_id = {p["user_id"]: p for p in people.json()["items"]}
    assert set(by_id) == {"auditor", "calltaker"}
    assert by_id["auditor"]["role"] == "auditor" and by_id["auditor"]["name"]

    # A refusal for people leads with its zh-Hans meaning; the code stays.
    missing = await client.get(
        "/v1/cases/GD-NONE-NONE-NONE", headers=await auth_headers(client, "dispatcher")
    )
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert missing.json()["message"].startswith("未找到")

    # /docs and /redoc load only this origin's files.
    for path, asset in (("/docs", "/static/vendor/swagger-ui/swagger-ui-bundle.js"),
                        ("/redoc", "/static/vendor/redoc/redoc.standalone.js")):
        page = await client.get(path)
        assert page.status_code == 200 and asset in page.text
        assert "cdn." not in page.text and "https://" not in page.text
        assert "https://" not in page.headers["Content-Security-Policy"]
        assert (await client.get(asset)).status_code == 200
