"""Who is calling. Until sign-in lands (issue 8: OAuth2 password flow, JWT, scopes), the caller
names itself with ``X-Grid-User`` / ``X-Grid-Role`` headers — good enough for a trusted
intranet pilot and for tests, NOT for production; this module is the one place that changes.
"""

from __future__ import annotations

from fastapi import Header
from pydantic import BaseModel

from gateways.http.errors import ApiError

KNOWN_ROLES = frozenset(
    {
        "inspector",
        "call_taker",
        "shift_leader",
        "dispatcher",
        "handler",
        "supervisor",
        "auditor",
        "admin",
        "system",
    }
)


class Principal(BaseModel):
    user_id: str
    role: str
    channel: str = "api"


async def current_principal(
    x_grid_user: str | None = Header(default=None, max_length=100),
    x_grid_role: str | None = Header(default=None, max_length=40),
    x_grid_channel: str | None = Header(default=None, max_length=40),
) -> Principal:
    role = x_grid_role or "system"
    if role not in KNOWN_ROLES:
        raise ApiError(400, "unknown_role", f"unknown role {role!r}", roles=sorted(KNOWN_ROLES))
    return Principal(user_id=x_grid_user or "api", role=role, channel=x_grid_channel or "api")
