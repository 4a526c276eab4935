"""Who is calling, and may they call this endpoint? (authentication and the role gate)

Every endpoint declares its access rule as a dependency; the rule *is* the dependency, so
there is no second table to forget (``tests/integration/test_access_matrix.py`` walks
``app.routes`` and fails for a route without one):

    from gateways.http.identity import Principal, current_principal, public, require

    @router.get("/v1/queue")
    async def queue(principal: Principal = Depends(require("dispatcher", "supervisor",
                                                           scopes=("cases:read",)))): ...

    @router.get("/v1/stream")                    # EventSource cannot send headers:
    async def stream(principal: Principal = Depends(
        require(*CASE_READERS, scopes=("cases:read",), query_token=True))): ...

    @router.get("/v1/categories", dependencies=[Depends(current_principal)])  # any role
    @router.get("/healthz", dependencies=[Depends(public)])                   # no token

* ``current_principal`` — any signed-in caller (Bearer access JWT or device token).
* ``require(*roles, scopes=(), query_token=False, rate=None)`` — the caller's role must be
  one of ``roles`` (else 403 ``forbidden``), its token must carry every scope (else 403
  ``insufficient_scope``); ``query_token`` also accepts ``?access_token=`` on GET (SSE);
  ``rate="intake"`` applies the per-IP and per-token intake buckets (429).
* auditors: every request they make is written to ``audit_reads`` before it runs, and they
  are refused (403 ``read_only``) on anything but GET / HEAD whatever a rule says.

No token, a bad one, an expired one, a revoked session or device, or a disabled account:
401 ``{"error": "unauthorized", "reason": <code>, "message": ...}`` with
``WWW-Authenticate: Bearer``. Jurisdiction (which cases) is :mod:`gateways.http.access`;
masking personal data is :mod:`gateways.http.privacy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.users import (
    HUMAN_ROLES,
    SCOPES,
    Credential,
    TokenError,
    UserStore,
    decode_access_token,
    looks_like_jwt,
)
from gateways.http import ratelimit
from gateways.http.deps import identity_settings as identity_settings
from gateways.http.errors import ApiError, for_people
from gateways.http.refusals import HeaderedError as HeaderedError

KNOWN_ROLES = frozenset({*HUMAN_ROLES, "system"})
READ_METHODS = frozenset({"GET", "HEAD"})


class Principal(BaseModel):
    """The authenticated caller, rebuilt from the database on every request."""

    user_id: str = Field(description="stable actor id recorded in events")
    username: str | None = None
    name: str = ""
    role: str = Field(
        description="inspector, call_taker, shift_leader, dispatcher, handler, "
        "supervisor, auditor, admin (system: internal only)"
    )
    node: str | None = Field(
        default=None,
        description="jurisdiction node (call_taker, shift_leader, dispatcher, supervisor): "
        "own node and everything below it",
    )
    department: str | None = Field(default=None, description="handler's department code")
    grids: list[str] = Field(default_factory=list, description="inspector's grid codes")
    channel: str = "api"
    scopes: list[str] = Field(default_factory=list)
    token_kind: Literal["access", "device", "internal"] = "internal"
    token_id: str | None = Field(default=None, description="session id or device id")

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @classmethod
    def from_credential(cls, cred: Credential) -> Principal:
        user = cred.user
        return cls(
            user_id=user.user_id,
            username=user.username,
            name=user.name,
            role=user.role,
            node=user.node,
            department=user.department,
            grids=list(user.grids),
            channel=cred.channel,
            scopes=list(cred.scopes),
            token_kind="device" if cred.kind == "device" else "access",
            token_id=cred.token_id,
        )


#: In-process callers (the SLA watcher, the sample loader) act as this; never issued as a token.
SYSTEM_PRINCIPAL = Principal(
    user_id="system", name="系统", role="system", scopes=sorted(SCOPES), token_kind="internal"
)


# --------------------------------------------------------------------------- errors


def unauthorized(reason: str, message: str) -> HeaderedError:
    challenge = 'Bearer realm="griddispatch"'
    if reason not in ("missing_token",):
        safe = message.replace('"', "'")
        challenge += f', error="invalid_token", error_description="{safe}"'
    return HeaderedError(
        401, "unauthorized", message, headers={"WWW-Authenticate": challenge}, reason=reason
    )


def install(app: FastAPI) -> None:
    """Register the handler for :class:`HeaderedError` (more specific than ApiError's)."""

    @app.exception_handler(HeaderedError)
    async def _headered(_: Request, exc: HeaderedError) -> JSONResponse:
        body = for_people(exc.body)  # the zh-Hans meaning first (gateways/http/errors.py)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """Who may call an endpoint. ``roles=None`` means public (no token)."""

    roles: frozenset[str] | None
    scopes: tuple[str, ...] = ()
    query_token: bool = False
    rate: str | None = None

    @property
    def public(self) -> bool:
        return self.roles is None

    def allows(self, role: str, method: str = "GET") -> bool:
        if self.roles is None:
            return True
        if role == "auditor" and method.upper() not in READ_METHODS:
            return False
        return role in self.roles


def user_store(request: Request) -> UserStore:
    store: UserStore | None = getattr(request.app.state, "users", None)
    if store is None or store.pool is not request.app.state.runtime.pool:
        runtime = request.app.state.runtime
        store = request.app.state.users = UserStore(
            runtime.pool, session_cache_s=runtime.settings.session_cache_s
        )
    return store


def _token_from(request: Request, allow_query: bool) -> str:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise unauthorized("invalid_request", "use the header 'Authorization: Bearer <token>'")
        return value
    if allow_query and request.method in READ_METHODS:
        token = request.query_params.get("access_token")
        if token:
            return token
    raise unauthorized(
        "missing_token", "sign in first: POST /v1/auth/token, then send 'Authorization: Bearer'"
    )


async def authenticate(request: Request, allow_query: bool = False) -> Principal:
    """The caller of this request (cached on ``request.state``), or 401."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = _token_from(request, allow_query)
    if len(token) > 4096:
        raise unauthorized("invalid_token", "token too long")
    store = user_store(request)
    try:
        if looks_like_jwt(token):
            claims = decode_access_token(request.app.state.runtime.settings.jwt_secret, token)
            cred = await store.resolve_access(claims)
        else:
            cred = await store.resolve_device(token)
    except TokenError as exc:
        raise unauthorized(exc.code, exc.message) from exc
    principal = Principal.from_credential(cred)
    request.state.principal = principal
    structlog.contextvars.bind_contextvars(user=principal.user_id, role=principal.role)
    return principal


async def authorize(request: Request, rule: Rule) -> Principal:
    """Authenticate, then apply ``rule`` (roles, scopes, rate limits, auditor read log)."""
    if rule.public:
        raise RuntimeError("authorize() called for a public rule")
    if rule.rate:
        ratelimit.hit_ip(request, rule.rate)
    principal = await authenticate(request, rule.query_token)
    assert rule.roles is not None
    if principal.role == "auditor" and request.method not in READ_METHODS:
        raise ApiError(403, "read_only", "auditors read; they never change anything")
    if principal.role not in rule.roles:
        raise ApiError(
            403,
            "forbidden",
            f"role {principal.role} may not {request.method} {request.url.path}",
            roles=sorted(rule.roles),
        )
    missing = [s for s in rule.scopes if s not in principal.scopes]
    if missing:
        raise HeaderedError(
            403,
            "insufficient_scope",
            f"the token lacks scope {', '.join(missing)}",
            headers={
                "WWW-Authenticate": (
                    f'Bearer error="insufficient_scope", scope="{" ".join(missing)}"'
                )
            },
            required=list(rule.scopes),
        )
    if rule.rate:
        ratelimit.hit_token(request, principal.token_id or principal.user_id, rule.rate)
    if principal.role == "auditor" and not getattr(request.state, "audit_logged", False):
        await user_store(request).record_read(
            principal.user_id,
            principal.role,
            request.method,
            request.url.path,
            _query_without_token(request),
            request.path_params.get("case_no"),
        )
        request.state.audit_logged = True
    return principal


def _query_without_token(request: Request) -> str | None:
    items = [(k, v) for k, v in request.query_params.multi_items() if k != "access_token"]
    if not items:
        return None
    from urllib.parse import urlencode

    return urlencode(items)


class Requirement:
    """A FastAPI dependency enforcing a :class:`Rule`; returns the :class:`Principal`."""

    def __init__(self, rule: Rule, label: str) -> None:
        self.rule = rule
        self.__access_rule__ = rule
        self._label = label

    async def __call__(self, request: Request) -> Principal:
        return await authorize(request, self.rule)

    def __repr__(self) -> str:
        return f"<require {self._label}>"


def require(
    *roles: str,
    scopes: tuple[str, ...] | list[str] = (),
    query_token: bool = False,
    rate: str | None = None,
) -> Requirement:
    """A dependency admitting only ``roles`` (and tokens holding ``scopes``)."""
    if not roles:
        raise ValueError("require() needs at least one role; use current_principal for any")
    unknown = set(roles) - KNOWN_ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {sorted(KNOWN_ROLES)}")
    bad_scopes = set(scopes) - set(SCOPES)
    if bad_scopes:
        raise ValueError(f"unknown scopes {sorted(bad_scopes)}; scopes are {sorted(SCOPES)}")
    if rate is not None and rate not in ("intake", "signin"):
        raise ValueError("rate must be 'intake' or 'signin'")
    rule = Rule(frozenset(roles), tuple(scopes), query_token, rate)
    return Requirement(rule, ",".join(sorted(roles)))


def require_scope(*scopes: str, query_token: bool = False) -> Requirement:
    """Any role whose token holds every one of ``scopes``."""
    return require(*sorted(KNOWN_ROLES), scopes=scopes, query_token=query_token)


#: Any signed-in caller, whatever the role.
current_principal = Requirement(Rule(frozenset(KNOWN_ROLES)), "any signed-in user")


async def public() -> None:
    """Marks an endpoint as callable without a token (health checks, the token endpoint)."""


public.__access_rule__ = Rule(None)  # type: ignore[attr-defined]


def rule_of_dependency(call: Any) -> Rule | None:
    rule = getattr(call, "__access_rule__", None)
    return rule if isinstance(rule, Rule) else None
