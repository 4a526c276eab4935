"""Refusals that carry response headers: 401 / 403 with ``WWW-Authenticate`` (sign-in,
``gateways/http/identity.py``), 429 with ``Retry-After`` (``gateways/http/ratelimit.py``).

A module of its own so that the rate limiter, which the access rules call, need not import
the access rules back."""

from __future__ import annotations

from typing import Any

from gateways.http.errors import ApiError


class HeaderedError(ApiError):
    """An :class:`ApiError` that also sets response headers (WWW-Authenticate, Retry-After)."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str], **details: Any
    ) -> None:
        super().__init__(status, error, message, **details)
        self.headers = headers
