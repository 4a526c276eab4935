"""Limits against hostile or runaway clients: token-bucket rate limits and request body size.

Rate limits (in-process token buckets, one set per gateway process; with N gateways behind a
load balancer a client gets at most N times the budget, which is fine for abuse control):

* sign-in (``POST /v1/auth/token``, ``/v1/auth/refresh``): per client IP and per username;
* intake (``POST /v1/reports`` and any route declared with ``require(..., rate="intake")``):
  per client IP before authentication and per token (session / device) after it.

A refusal is 429 with ``Retry-After`` (seconds) and
``{"error": "rate_limited", "message", "limit", "retry_after"}``. Budgets are
``(burst, refill per minute)`` pairs in :class:`core.users.IdentitySettings`
(``GRID_RATE_SIGNIN_IP`` …, ``GRID_RATE_LIMITS=false`` switches them off).

NUL characters: PostgreSQL text cannot hold U+0000, so :class:`BodyLimit` also refuses a
path, query or JSON / form body carrying one (422 ``invalid_character``) before any route
sees it — otherwise a report could be accepted (202) and then fail in the worker.

Body size: :class:`BodyLimit` refuses a request whose body exceeds ``GRID_MAX_BODY`` (1 MiB,
JSON and forms) or ``GRID_MAX_UPLOAD`` (12 MiB, ``multipart/form-data`` and ``image/*``) with
413 ``{"error": "too_large", "limit": n}`` — from ``Content-Length`` before reading anything,
or while streaming when the client sent no length.

Client IP: the socket peer. Behind a reverse proxy run uvicorn with ``--proxy-headers
--forwarded-allow-ips=<proxy>`` so the peer is the real client.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.users import IdentitySettings
from gateways.http.deps import identity_settings
from gateways.http.refusals import HeaderedError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Limiter:
    """Token buckets keyed by ``(limit name, key)``; the least recently used are dropped
    beyond ``max_keys`` so a flood of spoofed keys cannot exhaust memory."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def hit(
        self, name: str, key: str, burst: int, per_minute: float, now: float | None = None
    ) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        rate = per_minute / 60.0
        bucket = self._buckets.get((name, key))
        if bucket is None:
            bucket = self._buckets[(name, key)] = _Bucket(float(burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end((name, key))
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        if rate <= 0:
            return 3600.0
        return (1.0 - bucket.tokens) / rate


def limiter(request: Request) -> Limiter:
    found: Limiter | None = getattr(request.app.state, "limiter", None)
    if found is None:
        found = request.app.state.limiter = Limiter()
    return found


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _check(request: Request, name: str, key: str, budget: tuple[int, float], what: str) -> None:
    settings = identity_settings(request)
    if not settings.rate_limits:
        return
    wait = limiter(request).hit(name, key, budget[0], budget[1])
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise HeaderedError(
            429,
            "rate_limited",
            f"too many {what}; retry in {retry} s",
            headers={"Retry-After": str(retry)},
            limit=name,
            retry_after=retry,
        )


def _budget(settings: IdentitySettings, kind: str, per: str) -> tuple[int, float]:
    budget: tuple[int, float] = getattr(settings, f"rate_{kind}_{per}")
    return budget


def hit_ip(request: Request, kind: str) -> None:
    """Spend from the per-IP bucket of ``kind`` ("signin" or "intake"), or 429."""
    settings = identity_settings(request)
    _check(
        request,
        f"{kind}_ip",
        client_ip(request),
        _budget(settings, kind, "ip"),
        f"{kind} requests from this address",
    )


def hit_token(request: Request, token: str, kind: str) -> None:
    """Spend from the per-token bucket of ``kind`` (intake), or 429; ``token`` is the
    caller's token id (a session or device), or its user id."""
    settings = identity_settings(request)
    _check(
        request,
        f"{kind}_token",
        token,
        _budget(settings, kind, "token"),
        f"{kind} requests with this token",
    )


def hit_username(request: Request, username: str) -> None:
    """Spend from the per-username sign-in bucket (guessing one account's password), or 429."""
    settings = identity_settings(request)
    _check(
        request,
        "signin_user",
        username.lower()[:100],
        settings.rate_signin_user,
        "sign-in attempts for this user",
    )


# --------------------------------------------------------------------------- body size


class BodyTooLarge(Exception):
    pass


class NulCharacter(Exception):
    pass


_NUL_JSON = b"\\u0000"
_NUL_FORM = (b"%00", b"\x00")


def has_nul_escape(chunk: bytes) -> bool:
    """True when JSON text holds an escaped NUL (``\\u0000`` not preceded by an escaping
    backslash). PostgreSQL text and jsonb cannot store U+0000."""
    start = 0
    while (at := chunk.find(_NUL_JSON, start)) >= 0:
        backslashes = 0
        while at - backslashes - 1 >= 0 and chunk[at - backslashes - 1] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return True
        start = at + 1
    return False


def _nul_in(kind: str, chunk: bytes) -> bool:
    if kind == "json":
        return has_nul_escape(chunk) or b"\x00" in chunk
    if kind == "form":
        return any(marker in chunk.lower() for marker in _NUL_FORM)
    return False


UPLOAD_TYPES = ("multipart/form-data", "image/", "application/octet-stream")


class BodyLimit:
    """Pure ASGI middleware refusing oversized request bodies with 413 (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def _limit(scope: Scope) -> tuple[int, str]:
        settings = getattr(scope["app"].state, "identity", None) or IdentitySettings()
        content_type = ""
        for key, value in scope.get("headers", []):
            if key == b"content-type":
                content_type = value.decode("latin-1").lower()
                break
        if content_type.startswith(UPLOAD_TYPES):
            return settings.max_upload_bytes, "upload"
        return settings.max_body_bytes, "body"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, kind = self._limit(scope)
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            await _send_nul(send, "the path or query")
            return
        scan = _scan_kind(scope)
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(
                        send,
                        400,
                        {"error": "bad_request", "message": "Content-Length is not a number"},
                    )
                    return
                if declared > limit:
                    await _send_too_large(send, limit, kind)
                    return
        received = 0
        refused: str | None = None  # "too_large" | "nul"
        started = False
        seen = bytearray()  # JSON / form bodies (at most ``limit`` bytes) are scanned whole

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    refused = "too_large"
                    raise BodyTooLarge
                if scan:
                    seen.extend(chunk)
                    if not message.get("more_body", False) and _nul_in(scan, bytes(seen)):
                        refused = "nul"
                        raise NulCharacter
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the app's reaction to the aborted body is replaced by our refusal
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except (BodyTooLarge, NulCharacter):
            pass
        except Exception:
            if not (refused and not started):
                raise
        if refused == "too_large" and not started:
            await _send_too_large(send, limit, kind)
        elif refused == "nul" and not started:
            await _send_nul(send, "the request body")


async def _send_too_large(send: Send, limit: int, kind: str) -> None:
    what = "an upload" if kind == "upload" else "a request body"
    await _send_json(
        send,
        413,
        {
            "error": "too_large",
            "message": f"{what} may have at most {limit} bytes",
            "limit": limit,
        },
    )


def _scan_kind(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"content-type":
            content_type = value.decode("latin-1").lower()
            if "json" in content_type:
                return "json"
            if content_type.startswith("application/x-www-form-urlencoded"):
                return "form"
            return None
    return "json"  # no declared type: FastAPI parses JSON bodies anyway


async def _send_nul(send: Send, where: str) -> None:
    await _send_json(
        send,
        422,
        {
            "error": "invalid_character",
            "message": f"{where} contains a NUL character (U+0000), which is never valid text",
        },
    )


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def install(app: FastAPI) -> None:
    """Add the body-size guard (outermost, so it runs before anything reads the body)."""
    app.add_middleware(BodyLimit)
