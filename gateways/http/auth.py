"""Sign-in (OAuth2 password flow), token refresh, sign-out, device tokens, and the admin API
for users. Design and token lifetimes: docs/identity.md; storage: :mod:`core.users`.

* ``POST /v1/auth/token`` — form ``username``, ``password``, optional ``scope`` (space
  separated subset of the role's scopes) and ``client_id`` (the channel, e.g. ``web``,
  ``hotline``) → access JWT (15 min) + rotating refresh token + the principal.
  ``grant_type=refresh_token`` with ``refresh_token`` is accepted here too (OAuth2 clients).
* ``POST /v1/auth/refresh`` — JSON ``{"refresh_token"}`` → a new pair; the old refresh
  token is spent (using it again revokes the session).
* ``POST /v1/auth/logout`` — ends the session of the access token (or revokes the device
  token it was called with).
* ``GET /v1/auth/me`` — the principal.
* ``POST/GET /v1/auth/devices``, ``DELETE /v1/auth/devices/{id}`` — device tokens.
* ``/v1/admin/users`` … — users, roles and jurisdictions (admin, scope ``admin:users``).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from pydantic import BaseModel, Field

from aggregates.commands import Strict
from core import passwords
from core.logging import get_logger
from core.users import (
    HUMAN_ROLES,
    ROLE_SCOPES,
    SCOPES,
    GrantError,
    TokenError,
    UserRecord,
    issue_access_token,
    read_demo_file,
)
from gateways.http import ratelimit
from gateways.http.access import ADMINS, jurisdiction_of
from gateways.http.errors import ApiError
from gateways.http.identity import (
    HeaderedError,
    Principal,
    current_principal,
    identity_settings,
    public,
    require,
    user_store,
)
from gateways.http.inputs import Patch

router = APIRouter(prefix="/v1/auth", tags=["identity 身份认证"])
admin_router = APIRouter(prefix="/v1/admin/users", tags=["admin 用户管理"])

#: Security events (failed, locked and disabled sign-ins): one structlog line each with the
#: event name, the username tried and the client address, for the SIEM / log search.
security_log = get_logger("security")

_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$"
#: A role a person can be given (``core/vocabulary.py``, without the internal ``system``).
Role = Literal[HUMAN_ROLES]  # type: ignore[valid-type]


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds the access token lives")
    refresh_token: str
    refresh_expires_in: int
    scope: str
    user: Principal


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=200)


class DeviceIn(Strict):
    name: str = Field(min_length=1, max_length=100, examples=["网格员手机 Xiaomi 13"])
    expires_in_days: int | None = Field(default=None, ge=1, le=400)


class DeviceOut(BaseModel):
    id: str
    user_id: str
    name: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    active: bool


class DeviceCreated(DeviceOut):
    token: str = Field(description="shown once; send as 'Authorization: Bearer <token>'")


class DeviceList(BaseModel):
    items: list[DeviceOut]
    count: int


class SignedOut(BaseModel):
    status: Literal["signed_out"] = "signed_out"
    token_kind: str


class UserIn(Strict):
    username: str = Field(pattern=USERNAME_PATTERN, examples=["dispatcher-520102"])
    name: str = Field(min_length=1, max_length=100)
    role: Role
    password: str = Field(min_length=passwords.MIN_LENGTH, max_length=passwords.MAX_LENGTH)
    user_id: str | None = Field(default=None, pattern=USERNAME_PATTERN)
    node: str | None = Field(default=None, max_length=64)
    department: str | None = Field(default=None, max_length=80)
    grids: list[str] = Field(default_factory=list, max_length=500)
    scopes: list[str] | None = Field(default=None, max_length=len(SCOPES))


class UserPatch(Patch):
    """Omitted fields are kept; ``null`` clears only node, department and scopes (back to the
    role's default scopes)."""

    nullable = frozenset({"node", "department", "scopes"})
    name: str | None = Field(default=None, min_length=1, max_length=100)
    role: Role | None = None
    node: str | None = Field(default=None, max_length=64)
    department: str | None = Field(default=None, max_length=80)
    grids: list[str] | None = Field(default=None, max_length=500)
    scopes: list[str] | None = Field(default=None, max_length=len(SCOPES))
    disabled: bool | None = None


class PasswordIn(Strict):
    password: str = Field(min_length=passwords.MIN_LENGTH, max_length=passwords.MAX_LENGTH)


class UserList(BaseModel):
    items: list[UserRecord]
    count: int


# --------------------------------------------------------------------------- helpers


def _grant_error(exc: GrantError) -> ApiError:
    problems = [{"field": f, "message": m} for f, m in exc.problems]
    return ApiError(
        422,
        "validation_error",
        "; ".join(f"{p['field']}: {p['message']}" for p in problems),
        problems=problems,
        field=problems[0]["field"] if problems else None,
    )


def _token_error(exc: TokenError) -> HeaderedError:
    return HeaderedError(
        401,
        exc.code,
        exc.message,
        headers={"WWW-Authenticate": 'Bearer realm="griddispatch", error="invalid_grant"'},
    )


def _principal_for(user: UserRecord, scopes: list[str], channel: str, sid: str) -> Principal:
    return Principal(
        user_id=user.user_id,
        username=user.username,
        name=user.name,
        role=user.role,
        node=user.node,
        department=user.department,
        grids=list(user.grids),
        channel=channel,
        scopes=scopes,
        token_kind="access",
        token_id=sid,
    )


def _issue(
    request: Request,
    user: UserRecord,
    sid: str,
    scopes: list[str],
    channel: str,
    refresh: str,
    refresh_expires: datetime,
) -> TokenOut:
    settings = identity_settings(request)
    secret = request.app.state.runtime.settings.jwt_secret
    access = issue_access_token(secret, user, sid, scopes, settings.access_ttl_s)
    return TokenOut(
        access_token=access,
        expires_in=settings.access_ttl_s,
        refresh_token=refresh,
        refresh_expires_in=max(0, int((refresh_expires - datetime.now(UTC)).total_seconds())),
        scope=" ".join(scopes),
        user=_principal_for(user, scopes, channel, sid),
    )


async def _refresh(request: Request, refresh_token: str) -> TokenOut:
    ratelimit.hit_ip(request, "signin")
    store = user_store(request)
    try:
        user, sid, scopes, new, expires = await store.rotate_refresh(
            refresh_token, identity_settings(request)
        )
    except TokenError as exc:
        raise _token_error(exc) from exc
    async with request.app.state.runtime.pool.acquire() as conn:
        channel = await conn.fetchval("SELECT channel FROM auth_sessions WHERE sid = $1::uuid", sid)
    return _issue(request, user, sid, scopes, channel or "api", new, expires)


# --------------------------------------------------------------------------- sign-in


@router.post(
    "/token",
    response_model=TokenOut,
    responses={
        400: {"description": "unsupported grant type or scope"},
        401: {"description": "wrong username or password, or a bad refresh token"},
        403: {"description": "account disabled"},
        429: {"description": "too many attempts (Retry-After)"},
    },
    dependencies=[Depends(public)],
)
async def sign_in(
    request: Request,
    username: str | None = Form(default=None, max_length=100),
    password: str | None = Form(default=None, max_length=200),
    scope: str = Form(default="", max_length=500),
    grant_type: str | None = Form(default=None, max_length=40),
    refresh_token: str | None = Form(default=None, max_length=200),
    client_id: str | None = Form(default=None, max_length=40),
) -> TokenOut:
    """OAuth2 password flow (登录): username + password → access token, refresh token."""
    if grant_type == "refresh_token":
        if not refresh_token:
            raise ApiError(
                400, "invalid_request", "refresh_token is required", field="refresh_token"
            )
        return await _refresh(request, refresh_token)
    if grant_type not in (None, "", "password"):
        raise ApiError(
            400,
            "unsupported_grant_type",
            f"grant_type {grant_type!r} is not supported",
            supported=["password", "refresh_token"],
        )
    ip = ratelimit.client_ip(request)
    try:
        ratelimit.hit_ip(request, "signin")
    except HeaderedError:
        security_log.warning("auth.signin_locked", username=(username or "")[:100], ip=ip,
                             limit="signin_ip")
        raise
    if not username or not password:
        raise ApiError(
            422,
            "validation_error",
            "请填写用户名和密码 (username and password are required form fields)",
            field="username" if not username else "password",
        )
    try:
        ratelimit.hit_username(request, username)
    except HeaderedError:
        security_log.warning("auth.signin_locked", username=username[:100], ip=ip,
                             limit="signin_user")
        raise
    store = user_store(request)
    user = await store.authenticate(username, password)
    if user is None:
        security_log.warning("auth.signin_failed", username=username[:100], ip=ip,
                             reason="wrong username or password")
        raise HeaderedError(
            401,
            "invalid_credentials",
            "用户名或密码错误",
            headers={"WWW-Authenticate": 'Bearer realm="griddispatch"'},
        )
    if user.disabled:
        security_log.warning("auth.signin_failed", username=username[:100], ip=ip,
                             reason="account disabled")
        raise ApiError(403, "account_disabled", "账号已停用, 请联系管理员")
    allowed = user.effective_scopes
    requested = scope.split()
    unknown = sorted(set(requested) - set(allowed))
    if unknown:
        raise ApiError(
            400,
            "invalid_scope",
            f"scope {' '.join(unknown)} is not available to this user",
            allowed=allowed,
        )
    scopes = sorted(set(requested)) if requested else allowed
    channel = client_id if client_id and _CHANNEL.match(client_id) else "api"
    sid, refresh, refresh_expires = await store.create_session(
        user,
        scopes,
        channel,
        identity_settings(request),
        ip=ratelimit.client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return _issue(request, user, sid, scopes, channel, refresh, refresh_expires)


@router.get("/demo", dependencies=[Depends(public)])
async def demo_accounts(
    request: Request,
    role: list[str] = Query(default=[], max_length=10, description="only these roles"),
) -> dict[str, Any]:
    """The demo accounts a sign-in page may print (演示账号): only while demo users are
    enabled (``GRID_DEMO_USERS``) and only those still as published — the user exists, is not
    disabled and still has the demo file's password hash. Anything else: an empty list."""
    settings = identity_settings(request)
    path = settings.demo_users_file
    if not settings.demo_users or not path.is_file():
        return {"enabled": False, "accounts": []}
    city, demo = read_demo_file(path)
    if city is not None and city != request.app.state.runtime.ref.jurisdiction.city_code:
        return {"enabled": False, "accounts": []}
    wanted = [u for u in demo if u.password_hash and (not role or u.role in role)]
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT username, password_hash FROM users WHERE username = ANY($1::text[]) "
            "AND NOT disabled",
            [u.username for u in wanted],
        )
    hashes = {r["username"]: r["password_hash"] for r in rows}
    accounts = [
        {"username": u.username, "password": u.password, "role": u.role, "name": u.name}
        for u in wanted
        if hashes.get(u.username) == u.password_hash
    ]
    return {"enabled": bool(accounts), "accounts": accounts}


@router.post(
    "/refresh",
    response_model=TokenOut,
    responses={
        401: {"description": "unknown, spent, expired or revoked refresh token"},
        429: {"description": "too many attempts (Retry-After)"},
    },
    dependencies=[Depends(public)],
)
async def refresh(request: Request, body: RefreshIn) -> TokenOut:
    """Swap a refresh token for a new access token and a new refresh token (rotation)."""
    return await _refresh(request, body.refresh_token)


@router.post("/logout", response_model=SignedOut)
async def logout(request: Request, principal: Principal = Depends(current_principal)) -> SignedOut:
    """Sign out (登出): the session (its access and refresh tokens) ends at once; called with
    a device token, that device token is revoked."""
    store = user_store(request)
    if principal.token_kind == "device" and principal.token_id:
        await store.revoke_device(principal.token_id, by=f"{principal.user_id} (logout)")
    elif principal.token_id:
        await store.revoke_session(principal.token_id, "signed out")
    return SignedOut(token_kind=principal.token_kind)


@router.get("/me", response_model=Principal)
async def me(principal: Principal = Depends(current_principal)) -> Principal:
    """Who am I: role, jurisdiction, scopes, channel."""
    return principal


# --------------------------------------------------------------------------- devices


@router.post(
    "/devices",
    status_code=201,
    response_model=DeviceCreated,
    responses={409: {"description": "too many active devices"}},
)
async def create_device(
    request: Request,
    body: DeviceIn,
    principal: Principal = Depends(require("inspector", "handler", scopes=("devices",))),
) -> DeviceCreated:
    """Register a phone (设备绑定): returns a long-lived device token, shown once."""
    if principal.token_kind != "access":
        raise ApiError(
            403,
            "password_session_required",
            "sign in with your password to register a device (not with a device token)",
        )
    settings = identity_settings(request)
    store = user_store(request)
    user = await store.get_by_id(principal.user_id)
    if user is None:
        raise ApiError(404, "not_found", "user not found")
    try:
        device, token = await store.create_device(
            user,
            body.name,
            body.expires_in_days or settings.device_ttl_days,
            settings.max_devices,
        )
    except TokenError as exc:
        raise ApiError(409, exc.code, exc.message) from exc
    return DeviceCreated(**device, token=token)


@router.get("/devices", response_model=DeviceList)
async def list_devices(
    request: Request,
    principal: Principal = Depends(current_principal),
    user_id: str | None = Query(default=None, max_length=64, description="admins: any user"),
) -> DeviceList:
    """Your device tokens (admins: anyone's with ``user_id``, or everyone's)."""
    store = user_store(request)
    if principal.role == "admin":
        items = await store.list_devices(user_id)
    elif user_id not in (None, principal.user_id):
        raise ApiError(403, "forbidden", "you can list only your own devices")
    else:
        items = await store.list_devices(principal.user_id)
    return DeviceList(items=[DeviceOut(**d) for d in items], count=len(items))


@router.delete(
    "/devices/{device_id}",
    response_model=DeviceOut,
    responses={404: {"description": "no such device (or not yours)"}},
)
async def revoke_device(
    request: Request,
    device_id: str = Path(max_length=64),
    principal: Principal = Depends(current_principal),
) -> DeviceOut:
    """Revoke a device token (lost phone 设备挂失): it stops working at once."""
    store = user_store(request)
    device = await store.get_device(device_id)
    if device is None or (principal.role != "admin" and device["user_id"] != principal.user_id):
        raise ApiError(404, "not_found", f"device {device_id} not found")
    revoked = await store.revoke_device(device_id, by=principal.user_id)
    assert revoked is not None
    return DeviceOut(**revoked)


# --------------------------------------------------------------------------- admin: users

_admin = require(*ADMINS, scopes=("admin:users",))


@admin_router.get("", response_model=UserList)
async def admin_list_users(
    request: Request,
    _: Principal = Depends(_admin),
    role: Role | None = None,
    disabled: bool | None = None,
    q: str | None = Query(default=None, max_length=100),
) -> UserList:
    """Users with role, jurisdiction, scopes (never passwords)."""
    items = await user_store(request).list_users(role, disabled, q)
    return UserList(items=items, count=len(items))


@admin_router.post(
    "",
    status_code=201,
    response_model=UserRecord,
    responses={409: {"description": "username or user id taken"}},
)
async def admin_create_user(
    request: Request, body: UserIn, _: Principal = Depends(_admin)
) -> UserRecord:
    """Add a user with a role and its jurisdiction (node / department / grids)."""
    try:
        passwords.check_policy(body.password)
    except passwords.WeakPassword as exc:
        raise ApiError(422, "weak_password", str(exc), field="password") from exc
    encoded = await asyncio.to_thread(passwords.hash_password, body.password)
    try:
        return await user_store(request).create(
            body.username,
            body.role,
            encoded,
            name=body.name,
            node=body.node,
            department=body.department,
            grids=body.grids,
            scopes=body.scopes,
            user_id=body.user_id,
            jurisdiction=jurisdiction_of(request),
        )
    except GrantError as exc:
        raise _grant_error(exc) from exc
    except asyncpg.UniqueViolationError as exc:
        raise ApiError(409, "user_exists", f"user {body.username} already exists") from exc


async def _existing(request: Request, username: str) -> UserRecord:
    user = await user_store(request).get(username)
    if user is None:
        raise ApiError(404, "not_found", f"user {username} not found")
    return user


@admin_router.get("/{username}", response_model=UserRecord)
async def admin_get_user(
    request: Request, username: str = Path(max_length=64), _: Principal = Depends(_admin)
) -> UserRecord:
    return await _existing(request, username)


@admin_router.patch(
    "/{username}",
    response_model=UserRecord,
    responses={409: {"description": "would lock the admin out"}},
)
async def admin_update_user(
    request: Request,
    body: UserPatch,
    username: str = Path(max_length=64),
    principal: Principal = Depends(_admin),
) -> UserRecord:
    """Change role, jurisdiction, scopes, name, or disable / enable. Changing the grant or
    disabling ends the user's sessions and device tokens at once."""
    user = await _existing(request, username)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if user.user_id == principal.user_id and (
        changes.get("disabled") or changes.get("role", user.role) != user.role
    ):
        raise ApiError(409, "cannot_lock_out_self", "you cannot disable or demote yourself")
    try:
        updated = await user_store(request).update(username, changes, jurisdiction_of(request))
    except GrantError as exc:
        raise _grant_error(exc) from exc
    assert updated is not None
    return updated


@admin_router.post("/{username}/password", response_model=UserRecord)
async def admin_set_password(
    request: Request,
    body: PasswordIn,
    username: str = Path(max_length=64),
    _: Principal = Depends(_admin),
) -> UserRecord:
    """Set a new password; the user's sessions and device tokens end."""
    await _existing(request, username)
    try:
        passwords.check_policy(body.password)
    except passwords.WeakPassword as exc:
        raise ApiError(422, "weak_password", str(exc), field="password") from exc
    encoded = await asyncio.to_thread(passwords.hash_password, body.password)
    updated = await user_store(request).set_password(username, encoded)
    assert updated is not None
    return updated


@admin_router.get("/{username}/devices", response_model=DeviceList)
async def admin_user_devices(
    request: Request, username: str = Path(max_length=64), _: Principal = Depends(_admin)
) -> DeviceList:
    user = await _existing(request, username)
    items = await user_store(request).list_devices(user.user_id)
    return DeviceList(items=[DeviceOut(**d) for d in items], count=len(items))


@router.get("/scopes", dependencies=[Depends(public)])
async def list_scopes() -> dict[str, Any]:
    """The OAuth2 scopes and which roles hold them by default."""
    return {
        "scopes": SCOPES,
        "roles": {role: sorted(ROLE_SCOPES[role]) for role in HUMAN_ROLES},
    }


__all__ = ["admin_router", "router"]
