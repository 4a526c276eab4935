"""Request ids: every request gets one (or keeps the caller's ``X-Request-Id``); it is bound
into structlog's context so every log line of that request carries it, and echoed back.

Pure ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs the
rest of the app in a separate task with memory streams, which cost about a tenth of the
gateway's CPU per request under intake load (py-spy, docs/performance.md).
"""

from __future__ import annotations

import re
import uuid

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateways.http import security

_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class RequestId:
    """Binds ``request_id`` and ``path`` for the request's log lines; echoes the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = given if _SAFE.match(given) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid, path=scope.get("path", ""))
        header = (b"x-request-id", rid.encode("latin-1"))
        path = scope.get("path", "")
        # The city's tile server, if any (set by create_app from city.json's basemap).
        images: bytes = getattr(getattr(scope.get("app"), "state", None), "csp_images", b"")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The security headers ride on this wrapper rather than a middleware of their
                # own: one ASGI layer less per request (gateways/http/security.py).
                message["headers"] = security.with_security_headers(
                    [
                        *(h for h in message.get("headers", ())
                          if h[0].lower() != b"x-request-id"),
                        header,
                    ],
                    path,
                    images,
                )
            await send(message)

        await self.app(scope, receive, send_with_id)


def install(app: FastAPI) -> None:
    app.add_middleware(RequestId)
