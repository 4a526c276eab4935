"""schemathesis against the running API (uvicorn on a free port, real NATS and PostgreSQL):
for every operation of ``/openapi.json``, generated requests with a valid token of a role the
operation admits never get a 5xx, and every answer is one the schema documents (status,
content type, body schema). Bounded: a few examples per operation."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import pytest
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, Phase, given, settings

from core.embedded import free_port
from core.users import IdentitySettings
from gateways.http.access import effective_rule, iter_routes, original_route
from gateways.http.app import create_app
from gateways.http.server import make_server
from tests.conftest import ROLE_USERS, user_headers

#: Examples per operation; raise it locally for a deeper run (GRID_SCHEMATHESIS_EXAMPLES=200).
MAX_EXAMPLES = int(os.environ.get("GRID_SCHEMATHESIS_EXAMPLES", "6"))
#: Semantic validation beyond the schema (an unknown category code, a grid outside the city)
#: is a documented 422, so "schema-valid data must be accepted" does not hold by design.
EXCLUDED_CHECKS = [schemathesis.checks.positive_data_acceptance]
#: Which role's token to call an operation with: the first one its rule admits.
ROLE_PREFERENCE = (
    "dispatcher",
    "call_taker",
    "inspector",
    "handler",
    "supervisor",
    "shift_leader",
    "admin",
    "auditor",
)


def _streams(app: Any) -> set[tuple[str, str]]:
    """(METHOD, path) of endless responses (SSE): nothing to validate in a bounded time."""
    found = set()
    schema = app.openapi()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            content = op.get("responses", {}).get("200", {}).get("content", {})
            if "text/event-stream" in content or path.endswith("/stream"):
                found.add((method.upper(), path))
    return found


def _checker(operation: Any, base_url: str, headers: dict[str, str]) -> Any:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=15)
        case.validate_response(response, headers=headers, excluded_checks=EXCLUDED_CHECKS)

    return check


@pytest.fixture
async def served(system: dict[str, Any]) -> Any:
    app = create_app(system["runtime"], system["clock"], IdentitySettings())
    port = free_port()
    server = make_server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)


async def test_api_honours_its_schema(system: dict[str, Any], served: Any) -> None:
    app, base_url = served
    rules = {}
    for route in iter_routes(app):
        rule = effective_rule(route)
        for method in getattr(route, "methods", None) or ():
            rules[(method, getattr(route, "path_format", None) or route.path)] = (
                rule,
                original_route(route),
            )
    schema = schemathesis.openapi.from_dict(app.openapi())
    skip = _streams(app)
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        method, path = operation.method.upper(), operation.path
        if (method, path) in skip:
            continue
        rule, _ = rules[(method, path)]
        assert rule is not None, f"{method} {path} has no access rule"
        role = next((r for r in ROLE_PREFERENCE if rule.allows(r, method)), "dispatcher")
        headers = await user_headers(system, ROLE_USERS[role]) if not rule.public else {}
        if path == "/v1/auth/logout":  # would end the session under test; checked elsewhere
            continue

        check = _checker(operation, base_url, headers)
        try:
            await asyncio.to_thread(check)
        except BaseException as exc:  # collect every operation's first failure
            if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
                raise
            failures.append(f"{method} {path} as {role}:\n{str(exc)[:1500]}")
        tested += 1
    assert tested >= 15
    assert not failures, f"{len(failures)} of {tested} operations fail:\n\n" + "\n\n".join(failures)
