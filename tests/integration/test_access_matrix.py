"""Role × endpoint matrix over the WHOLE API, generated from ``app.routes``.

Every route must carry an access rule (``require(...)``, ``current_principal``, ``public``,
or an entry of ``access.STATIC_RULES``): a new route without one fails here. Then, for every
route and method, the test calls it without a token, with a garbage token, and with a fresh
token of every role, and checks the answer against the rule:

* public → never 401 / 403;
* no or a bad token on a guarded route → 401 ``unauthorized`` with ``WWW-Authenticate``;
* a role the rule admits → neither 401 nor a role refusal (it may get 404 — the case does
  not exist — or 422 for the empty body; business refusals like ``not_permitted`` are fine);
* a role the rule does not admit → 403 ``forbidden`` (``read_only`` for auditors writing);
* never a 5xx.

Requests go straight to the ASGI app and stop once the status is known, so endless streams
(SSE) are covered too.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Mount, Route

from core.users import HUMAN_ROLES, IdentitySettings
from gateways.http.access import (
    effective_rule,
    iter_routes,
    original_route,
    routes_without_rule,
)
from gateways.http.app import create_app
from gateways.http.identity import Rule
from tests.conftest import ROLE_USERS, asgi_call, user_headers

ROLE_REFUSALS = {"forbidden", "read_only", "insufficient_scope"}
PATH_VALUES = {
    "case_no": "GD-0000-0000-0000",
    "verb": "file",
    "device_id": "dev_0000000000000000",
    "username": "no-such-user",
    "fmt": "json",
}


def fill(path: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return PATH_VALUES.get(name, "x0")

    return re.sub(r"\{([^}]+)\}", value, path)


def _error(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data.get("error") if isinstance(data, dict) else None


def _targets(app: FastAPI) -> list[tuple[str, str, Rule]]:
    targets = []
    for route in iter_routes(app):
        rule = effective_rule(route)
        assert rule is not None, f"no access rule for {route}"
        original = original_route(route)
        if isinstance(original, APIWebSocketRoute):
            continue
        if isinstance(original, Mount):
            targets.append(("GET", route.path + "/", rule))
            continue
        if isinstance(original, APIRoute | Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                targets.append((method, fill(route.path), rule))
    return targets


async def test_every_route_has_an_access_rule(system: dict[str, Any]) -> None:
    app = create_app(system["runtime"], system["clock"])
    assert routes_without_rule(app) == []


async def test_role_endpoint_matrix(system: dict[str, Any]) -> None:
    app = create_app(system["runtime"], system["clock"], IdentitySettings(rate_limits=False))
    targets = _targets(app)
    assert len(targets) >= 15
    problems: list[str] = []
    checked = 0
    for method, path, rule in targets:
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        calls: list[tuple[str, dict[str, str]]] = [
            ("anonymous", {}),
            ("garbage", {"Authorization": "Bearer not-a-token"}),
        ]
        for role in HUMAN_ROLES:
            # A fresh token per call: the matrix signs out (POST /v1/auth/logout) on the way.
            calls.append((role, await user_headers(system, ROLE_USERS[role])))
        for who, headers in calls:
            status, response_headers, content = await asgi_call(app, method, path, headers, body)
            checked += 1
            error = _error(content)
            where = f"{method} {path} as {who}: {status} {content[:200]!r}"
            if status >= 500:
                problems.append(f"server error: {where}")
            elif rule.public:
                if status in (401, 403) and error in ({"unauthorized"} | ROLE_REFUSALS):
                    problems.append(f"public route refused: {where}")
            elif who in ("anonymous", "garbage"):
                if status != 401 or error != "unauthorized":
                    problems.append(f"expected 401 unauthorized: {where}")
                elif not response_headers.get("www-authenticate", "").startswith("Bearer"):
                    problems.append(f"401 without WWW-Authenticate: Bearer: {where}")
            elif rule.allows(who, method):
                if status == 401 or (status == 403 and error in ROLE_REFUSALS):
                    problems.append(f"rule admits {who} but it was refused: {where}")
            elif status != 403 or error not in ("forbidden", "read_only"):
                problems.append(f"rule refuses {who} but got: {where}")
    assert not problems, f"{len(problems)} of {checked} calls wrong:\n" + "\n".join(problems)


async def test_openapi_documents_security_per_rule(system: dict[str, Any]) -> None:
    app = create_app(system["runtime"], system["clock"])
    schema = app.openapi()
    assert "OAuth2" in schema["components"]["securitySchemes"]
    cases = schema["paths"]["/v1/cases"]["get"]
    assert cases["security"][0] == {"OAuth2": ["cases:read"]}
    assert {"401", "403", "422"} <= set(cases["responses"])
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert "429" in schema["paths"]["/v1/reports"]["post"]["responses"]
