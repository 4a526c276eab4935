"""``POST /v1/reports`` without FastAPI's per-request dependency solving: the intake's hot path.

Why: at saturation FastAPI 0.165 spent about an eighth of the gateway's CPU per report on
classifying the route's dependencies again for every request (cache keys, scopes, callable
kinds) and walking the router — before any of our code ran (py-spy, docs/performance.md).
This ASGI layer sits inside the request-id, security-header and body-limit middleware and
answers a JSON report itself, in the order FastAPI would:

1. the body is read and parsed as JSON (invalid JSON: 422, bytes that are not UTF-8: 400,
   before anything else, as FastAPI);
2. the caller is authorised by the route's own rule (``reports.reporter``: roles, scopes, the
   intake rate limits) — the same function the route's dependency calls;
3. the ``Idempotency-Key`` header and the body are validated, their errors raised together as
   FastAPI's ``RequestValidationError``;
4. ``reports.accept_report`` — the route's own code — accepts it.

Every exception goes to the app's own exception handlers (``errors.handled``, as
Starlette's ``ExceptionMiddleware`` finds them; anything else is re-raised to the
server-error middleware, which answers 500 and logs it), so a refusal reads exactly as the
route's would (``tests/integration/test_intake_fast_path.py`` compares the two answer for
answer). The route stays the API's definition (OpenAPI, ``/docs``) and takes what this layer
does not: any other content type than ``application/json``, other methods, other paths.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import StringConstraints, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from core.ids import KEY_MAX_LENGTH, KEY_MIN_LENGTH
from gateways.http import reports
from gateways.http.errors import handled

PATH = "/v1/reports"
_KEY = TypeAdapter(
    Annotated[str, StringConstraints(min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH)]
)


def _is_json(scope: Scope) -> bool:
    """``Content-Type: application/json`` (with parameters or not); other JSON types
    (``application/*+json``) go the route's way."""
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


class IntakeFastPath:
    """Answers ``POST /v1/reports`` with a JSON body; passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == PATH
            and _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await _accept(request)
        except Exception as exc:
            answer = await handled(request, exc)
            if answer is None:
                raise  # the server-error middleware answers 500 and logs it, as for the route
            response = answer
        await response(scope, receive, send)


async def _accept(request: Request) -> Response:
    data: Any = None
    try:
        raw = await request.body()
        if raw:
            data = json.loads(raw)
    except json.JSONDecodeError as e:  # FastAPI's answers, word for word
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", e.pos), "msg": "JSON decode error",
              "input": {}, "ctx": {"error": e.msg}}],
            body=e.doc,
        ) from None
    except Exception as e:  # bytes that are not UTF-8, a client gone mid-body
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e
    intake = await reports.intake_from(request)
    clock = request.app.state.clock
    principal = await reports.reporter(request)
    errors: list[dict[str, Any]] = []
    key = request.headers.get("idempotency-key")
    if key is not None:
        try:
            _KEY.validate_python(key)
        except ValidationError as exc:
            errors += [{**e, "loc": ("header", "idempotency-key")} for e in exc.errors()]
    body = None
    if data is None:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required",
                       "input": None})
    else:
        try:
            body = reports.ReportIn.model_validate(data)
        except ValidationError as exc:
            errors += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
    if errors or body is None:
        raise RequestValidationError(errors, body=data)
    return await reports.accept_report(intake, clock, principal, body, key)


def install(app: FastAPI) -> None:
    """Install before the request-id and body-limit middleware: added first, it runs inside
    them (each added middleware wraps the ones before)."""
    app.add_middleware(IntakeFastPath)
