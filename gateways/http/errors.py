"""Every refusal is a 4xx with one machine-readable body shape:

    {"error": "<code>", "message": "<human text>", ...details}

so clients (the inspector app, Open311 bridges, scripts) can branch on ``error`` without
parsing prose.
"""

from __future__ import annotations

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


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        message = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems[:5])
        return JSONResponse(
            {"error": "validation_error", "message": message, "problems": problems},
            status_code=422,
        )

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
