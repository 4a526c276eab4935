"""schemathesis against the running API (uvicorn on a free port, real NATS and PostgreSQL):
every operation of ``/openapi.json`` is called as every role its access rule admits and once
without a token, with generated data that fits the schema and data that breaks it; no answer
is a 5xx, and every answer to schema-valid data is one the schema documents (status, content
type, body schema). Bounded: a few examples per operation, role and mode; the longer run is
``python -m benchmarks.fuzz`` (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import pytest

from benchmarks.fuzz import FuzzResult, fuzz
from core.embedded import free_port
from core.users import IdentitySettings
from gateways.http.access import effective_rule, iter_routes
from gateways.http.app import create_app
from gateways.http.server import make_server
from tests.conftest import ROLE_USERS, user_headers

#: Examples per operation, role and mode; raise it locally for a deeper run
#: (GRID_SCHEMATHESIS_EXAMPLES=50) or use ``python -m benchmarks.fuzz``.
MAX_EXAMPLES = int(os.environ.get("GRID_SCHEMATHESIS_EXAMPLES", "3"))


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
        for method in getattr(route, "methods", None) or ():
            rules[(method, getattr(route, "path_format", None) or route.path)] = effective_rule(
                route
            )
    headers = {role: await user_headers(system, user) for role, user in ROLE_USERS.items()}

    def callers(method: str, path: str) -> list[tuple[str, dict[str, str]]]:
        rule = rules[(method, path)]
        assert rule is not None, f"{method} {path} has no access rule"
        if rule.public:
            return [("anonymous", {})]
        admitted = [(r, h) for r, h in headers.items() if rule.allows(r, method)]
        assert admitted, f"{method} {path}: no role may call it"
        return [*admitted, ("anonymous", {})]

    result: FuzzResult = await asyncio.to_thread(
        fuzz, app.openapi(), base_url, callers, MAX_EXAMPLES
    )
    print("schemathesis:", result.summary())
    assert result.operations >= 60, result.summary()
    assert not result.server_errors, (
        f"{len(result.server_errors)} answers were 5xx:\n" + "\n".join(result.server_errors[:20])
    )
    assert not result.nonconforming, (
        f"{len(result.nonconforming)} off-schema answers:\n\n" + "\n\n".join(
            result.nonconforming[:10]
        )
    )
