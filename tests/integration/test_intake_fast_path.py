"""``POST /v1/reports`` answers the same through its fast path (``gateways/http/intake_fast``,
taken for ``Content-Type: application/json``) as through the FastAPI route (taken for any
other JSON type, here ``application/vnd.api+json``): acceptance, duplicates and every kind of
refusal, in the same order (invalid JSON before the token, the token before the fields)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateways.http import intake_fast
from tests.conftest import auth_headers

FAST = "application/json"
ROUTE = "application/vnd.api+json"
REPORT = {"category": "SJ0101", "description": "垃圾堆积", "reporter": {"name": "张三"}}


async def _both(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    answers = []
    for kind in (FAST, ROUTE):
        answers.append(
            await client.post(
                "/v1/reports", content=content, headers={**headers, "Content-Type": kind}
            )
        )
    return answers[0], answers[1]


def _json(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body, ensure_ascii=False).encode()


async def test_the_fast_path_answers_as_the_route(
    system: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = system["client"]
    grid = sorted(system["runtime"].ref.jurisdiction.grids)[0]
    taken: list[str] = []
    accept = intake_fast._accept

    async def counted(request: Any) -> Any:
        taken.append(request.headers["content-type"])
        return await accept(request)

    monkeypatch.setattr(intake_fast, "_accept", counted)
    caller = await auth_headers(client, "call_taker")
    refusals = [
        ("invalid JSON, no token", b'{"category": ', {}),
        ("bytes that are not UTF-8", b"\xff,\r\x1d|", caller),
        ("no token", _json({**REPORT, "grid": grid}), {}),
        ("an auditor", _json({**REPORT, "grid": grid}), await auth_headers(client, "auditor")),
        ("empty body", b"", caller),
        ("short key and a missing field",
         _json({"grid": grid, "description": "x"}), {**caller, "Idempotency-Key": "short"}),
        ("unknown field", _json({**REPORT, "grid": grid, "colour": "red"}), caller),
        ("unknown category", _json({**REPORT, "grid": grid, "category": "NOPE"}), caller),
        ("keys that differ",
         _json({**REPORT, "grid": grid, "idempotency_key": "body-key-0001"}),
         {**caller, "Idempotency-Key": "header-key-0001"}),
    ]
    for label, content, headers in refusals:
        fast, route = await _both(client, content, headers)
        assert fast.status_code == route.status_code, (label, fast.text, route.text)
        assert fast.status_code >= 400, label
        assert fast.json() == route.json(), label
        assert fast.headers.get("www-authenticate") == route.headers.get("www-authenticate")

    # Accepted: the same answer for the same report (its own key each), duplicates included.
    answers = {}
    for kind in (FAST, ROUTE):
        key = f"fast-path-{kind.rsplit('/', 1)[-1]}"
        first = await client.post(
            "/v1/reports", content=_json({**REPORT, "grid": grid}),
            headers={**caller, "Content-Type": kind, "Idempotency-Key": key},
        )
        again = await client.post(
            "/v1/reports", content=_json({**REPORT, "grid": grid}),
            headers={**caller, "Content-Type": kind, "Idempotency-Key": key},
        )
        assert first.status_code == again.status_code == 202, first.text
        assert first.headers["location"] == f"/v1/cases/{first.json()['case_no']}"
        assert again.json()["duplicate"] is True
        answers[kind] = {k: v for k, v in first.json().items()
                         if k not in ("case_no", "case_id", "idempotency_key")}
    assert answers[FAST] == answers[ROUTE]
    # The fast path took every application/json request, and none of the others.
    assert taken and set(taken) == {FAST}
    assert len(taken) == len(refusals) + 2


async def test_a_bug_reaches_the_server_error_middleware_both_ways(
    system: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception is not answered by the fast path itself: like the route's, it
    goes on to the server-error middleware, which answers 500 and re-raises it so its
    traceback is logged (the ASGI test client sees it raised)."""
    from gateways.http import reports

    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug in accepting a report")

    monkeypatch.setattr(reports, "accept_report", broken)
    client = system["client"]
    grid = sorted(system["runtime"].ref.jurisdiction.grids)[0]
    caller = await auth_headers(client, "call_taker")
    for kind in (FAST, ROUTE):
        with pytest.raises(RuntimeError, match="a bug in accepting a report"):
            await client.post(
                "/v1/reports", content=_json({**REPORT, "grid": grid}),
                headers={**caller, "Content-Type": kind},
            )
