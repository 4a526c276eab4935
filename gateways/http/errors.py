"""Every refusal is a 4xx with one machine-readable body shape:

    {"error": "<code>", "message": "<human text>", ...details}

so clients (the inspector app, Open311 bridges, scripts) can branch on ``error`` without
parsing prose.

Invalid input that pydantic refuses — a request body FastAPI could not parse, one item of
``POST /v1/reports/batch``, the arguments of a lifecycle command — always becomes the same
``validation_error`` body via :func:`validation_error`::

    {"error": "validation_error", "message": "description: Field required",
     "problems": [{"field": "description", "message": "Field required", "type": "missing"}]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.logging import get_logger

log = get_logger("gateway")


class ApiError(Exception):
    """Raise from a route to refuse with a given status and code."""

    def __init__(self, status: int, error: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, **details}


#: How many problems the one-line ``message`` names; ``problems`` always lists them all.
MESSAGE_PROBLEMS = 5


def validation_error(errors: Iterable[Mapping[str, Any]]) -> ApiError:
    """The 422 ``validation_error`` refusal for pydantic's ``errors()`` (of a
    ``ValidationError`` or FastAPI's ``RequestValidationError``).

    One builder for every place that validates client input, so a client parses one shape
    whichever endpoint refused it. Each problem names its ``field`` as a dotted path relative
    to the body the client sent (FastAPI's leading ``"body"`` location is dropped; ``query`` /
    ``path`` / ``header`` stay, they say where to look); pydantic's ``input`` and ``ctx`` are
    left out, as they may echo large or non-JSON values back."""
    problems: list[dict[str, str]] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if loc[:1] == ("body",):
            loc = loc[1:]
        problems.append(
            {
                "field": ".".join(str(p) for p in loc),
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    message = "; ".join(
        f"{p['field'] or 'body'}: {p['message']}" for p in problems[:MESSAGE_PROBLEMS]
    )
    return ApiError(422, "validation_error", message, problems=problems)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        refusal = validation_error(exc.errors())
        return JSONResponse(refusal.body, status_code=refusal.status)

    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(asyncpg.TooManyConnectionsError)
    @app.exception_handler(asyncpg.CannotConnectNowError)
    @app.exception_handler(ConnectionError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # A dependency outage is not the caller's fault and not a bug: 503 + Retry-After, one
        # structured log line, and the client retries with the same Idempotency-Key.
        log.warning("http.dependency_unavailable", path=request.url.path, error=repr(exc)[:300])
        return JSONResponse(
            {"error": "database_unavailable", "message": "the database is unavailable; retry"},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
            413: "too_large",
            429: "rate_limited",
        }
        return JSONResponse(
            {"error": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
