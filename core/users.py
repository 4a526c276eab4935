"""Users, sign-in sessions, refresh and device tokens, and the auditor read log (PostgreSQL).

Who may do what is decided by three things stored per user (DOMAIN.md, "People and roles"):

* ``role`` — inspector 网格员, call_taker 受理员, shift_leader 值班长, dispatcher 派遣员,
  handler 处置部门, supervisor 督办, auditor 审计员, admin 系统管理员. ``system`` (the SLA
  watcher, the sample loader) is internal and is never stored here: nobody can sign in as it.
* the jurisdiction — ``node`` (a node of the tree: own node and everything below it) for
  call-takers, shift leaders, dispatchers and supervisors; ``department`` for handlers;
  ``grids`` for inspectors; nothing for auditors (read everything) and admins (configuration).
* ``scopes`` — OAuth2 scopes; by default every scope of the role (:data:`ROLE_SCOPES`), an
  explicit list can only narrow that.

Tokens (see docs/identity.md):

* access token — a JWT (HS256, ``GRID_JWT_SECRET``), 15 minutes by default, naming its user
  and sign-in session (``sid``). The gateway checks the session and the user on every request,
  so sign-out, a disabled account or a changed role take effect at once.
* refresh token — opaque, single use, rotated on every refresh; only its SHA-256 is stored.
  Presenting an already-used one (a stolen copy) revokes the whole session.
* device token — opaque and long-lived (180 days) for inspectors' and field handlers' phones,
  usable directly as a Bearer token, listed and revoked per device; stored hashed.

Tables are created idempotently at start-up like the projections' tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import jwt
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import passwords
from core.jurisdiction import Jurisdiction
from core.logging import get_logger
from core.settings import REPO_ROOT
from core.vocabulary import HUMAN_ROLES as VOCABULARY_HUMAN_ROLES

log = get_logger("users")

# --------------------------------------------------------------------------- settings


class IdentitySettings(BaseSettings):
    """Sign-in, token lifetimes, request limits (env names as documented in docs/identity.md).

    Kept apart from :class:`core.settings.Settings` so the identity layer can be tuned (and
    tests can pass their own) without touching the process settings."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", case_sensitive=False, populate_by_name=True
    )

    access_ttl_s: int = Field(default=900, ge=30, le=86_400, alias="GRID_ACCESS_TTL")
    refresh_ttl_s: int = Field(default=12 * 3600, ge=60, alias="GRID_REFRESH_TTL")
    session_max_age_s: int = Field(default=7 * 86_400, ge=60, alias="GRID_SESSION_MAX_AGE")
    device_ttl_days: int = Field(default=180, ge=1, le=400, alias="GRID_DEVICE_TTL_DAYS")
    max_devices: int = Field(default=5, ge=1, le=100, alias="GRID_MAX_DEVICES")
    demo_users: bool = Field(default=True, alias="GRID_DEMO_USERS")
    demo_users_file: Path = Field(
        default=REPO_ROOT / "deploy" / "users.demo.json", alias="GRID_DEMO_USERS_FILE"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, alias="GRID_MAX_BODY")
    max_upload_bytes: int = Field(default=12 * 1024 * 1024, ge=1024, alias="GRID_MAX_UPLOAD")
    rate_limits: bool = Field(default=True, alias="GRID_RATE_LIMITS")
    #: (burst, refill per minute) token buckets
    rate_signin_ip: tuple[int, float] = Field(default=(30, 30.0), alias="GRID_RATE_SIGNIN_IP")
    rate_signin_user: tuple[int, float] = Field(default=(10, 5.0), alias="GRID_RATE_SIGNIN_USER")
    rate_intake_token: tuple[int, float] = Field(
        default=(200, 600.0), alias="GRID_RATE_INTAKE_TOKEN"
    )
    rate_intake_ip: tuple[int, float] = Field(default=(1000, 6000.0), alias="GRID_RATE_INTAKE_IP")


# --------------------------------------------------------------------------- roles, scopes

#: Roles a person can hold: the vocabulary's (``core/vocabulary.py``).
HUMAN_ROLES: tuple[str, ...] = VOCABULARY_HUMAN_ROLES
#: Roles whose jurisdiction is a node of the tree (own node and everything below it).
NODE_ROLES = frozenset({"call_taker", "shift_leader", "dispatcher", "supervisor"})
#: Roles that may hold device tokens (field staff with phones).
DEVICE_ROLES = frozenset({"inspector", "handler"})

#: OAuth2 scopes and what they allow.
SCOPES: dict[str, str] = {
    "cases:read": "read cases in your jurisdiction (queue, case file, live stream)",
    "cases:act": "run lifecycle commands on cases in your jurisdiction",
    "reports:create": "submit reports (上报 / 受理登记)",
    "audit:read": "replay histories, verify integrity, export (auditors)",
    "devices": "register and manage your phones' device tokens",
    "admin:users": "manage users, roles and jurisdictions",
    "admin:config": "manage the jurisdiction tree, grids, categories and departments",
}

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "inspector": frozenset({"cases:read", "cases:act", "reports:create", "devices"}),
    "call_taker": frozenset({"cases:read", "cases:act", "reports:create"}),
    "shift_leader": frozenset({"cases:read", "cases:act"}),
    "dispatcher": frozenset({"cases:read", "cases:act"}),
    "handler": frozenset({"cases:read", "cases:act", "devices"}),
    "supervisor": frozenset({"cases:read", "cases:act"}),
    "auditor": frozenset({"cases:read", "audit:read"}),
    "admin": frozenset({"admin:users", "admin:config"}),
    "system": frozenset(SCOPES),
}

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")


class GrantError(ValueError):
    """A role / jurisdiction combination that cannot be granted; ``problems`` lists
    ``(field, message)`` pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.problems))


def check_grant(
    jurisdiction: Jurisdiction | None,
    role: str,
    node: str | None = None,
    department: str | None = None,
    grids: Sequence[str] = (),
    scopes: Sequence[str] | None = None,
) -> None:
    """Raise :class:`GrantError` unless the role and its jurisdiction fit together and every
    code exists in the tree (``jurisdiction=None`` skips the existence checks)."""
    problems: list[tuple[str, str]] = []
    if role == "system":
        problems.append(("role", "角色 'system' 仅供系统内部使用, 不发给人员"))
    elif role not in HUMAN_ROLES:
        problems.append(("role", f"未知角色 {role!r} (可用角色: {', '.join(HUMAN_ROLES)})"))
    if problems:
        raise GrantError(problems)
    if role in NODE_ROLES:
        if not node:
            problems.append(("node", f"角色 {role} 须指定辖区树中的节点 (node)"))
        elif jurisdiction is not None and node not in jurisdiction.nodes:
            problems.append(("node", f"未知节点 {node!r} (网格不是节点)"))
    elif node:
        problems.append(("node", f"角色 {role} 不设节点 (node)"))
    if role == "handler":
        if not department:
            problems.append(("department", "处置人员 (handler) 须指定部门"))
        elif jurisdiction is not None and department not in jurisdiction.departments:
            problems.append(("department", f"未知部门 {department!r}"))
    elif department:
        problems.append(("department", f"角色 {role} 不设部门"))
    if role == "inspector":
        if not grids:
            problems.append(("grids", "网格员 (inspector) 至少须指定一个网格"))
        for grid in grids:
            if jurisdiction is not None and grid not in jurisdiction.grids:
                problems.append(("grids", f"未知网格 {grid!r}"))
    elif grids:
        problems.append(("grids", f"角色 {role} 不设网格"))
    if scopes is not None:
        extra = sorted(set(scopes) - ROLE_SCOPES[role])
        if extra:
            problems.append(
                ("scopes", f"权限范围 {extra} 超出角色 {role} 的权限 ({sorted(ROLE_SCOPES[role])})")
            )
    if problems:
        raise GrantError(problems)


# --------------------------------------------------------------------------- records


class UserRecord(BaseModel):
    """A stored user (never with its password hash)."""

    user_id: str
    username: str
    name: str
    role: str
    node: str | None = None
    department: str | None = None
    grids: list[str] = Field(default_factory=list)
    scopes: list[str] | None = None
    disabled: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    password_changed_at: datetime | None = None

    @property
    def effective_scopes(self) -> list[str]:
        allowed = ROLE_SCOPES.get(self.role, frozenset())
        chosen = allowed if self.scopes is None else allowed & set(self.scopes)
        return sorted(chosen)


_USER_COLUMNS = (
    "user_id, username, name, role, node, department, grids, scopes, disabled, created_at, "
    "updated_at, password_changed_at"
)


def _user(record: Any, prefix: str = "") -> UserRecord:
    return UserRecord(
        user_id=record[f"{prefix}user_id"],
        username=record[f"{prefix}username"],
        name=record[f"{prefix}name"],
        role=record[f"{prefix}role"],
        node=record[f"{prefix}node"],
        department=record[f"{prefix}department"],
        grids=list(record[f"{prefix}grids"] or []),
        scopes=list(record[f"{prefix}scopes"]) if record[f"{prefix}scopes"] is not None else None,
        disabled=record[f"{prefix}disabled"],
        created_at=record[f"{prefix}created_at"],
        updated_at=record[f"{prefix}updated_at"],
        password_changed_at=record[f"{prefix}password_changed_at"],
    )


@dataclass(frozen=True)
class Credential:
    """What a presented token resolved to: the user as stored now and the token's limits."""

    user: UserRecord
    kind: str  # "access" | "device"
    token_id: str  # session id or device id
    scopes: list[str]
    channel: str


class TokenError(Exception):
    """A token or credential was refused; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- tokens

JWT_ISSUER = "griddispatch"
JWT_AUDIENCE = "griddispatch-api"
REFRESH_PREFIX = "gdr_"
DEVICE_PREFIX = "gdd_"


def _jwt_key(secret: str) -> bytes:
    # A fixed-length HMAC key whatever the configured secret looks like (PyJWT warns about
    # short HMAC keys); the secret's entropy is what it is, so configure a long random one.
    return hashlib.sha256(b"griddispatch/jwt/v1:" + secret.encode()).digest()


def token_hash(token: str) -> str:
    """SHA-256 of an opaque token: tokens are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def issue_access_token(
    secret: str,
    user: UserRecord,
    sid: str,
    scopes: Iterable[str],
    ttl_s: int,
    now: datetime | None = None,
) -> str:
    now = now or _utcnow()
    claims = {
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "sub": user.user_id,
        "sid": sid,
        "role": user.role,
        "scope": " ".join(sorted(scopes)),
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()) - 5,
        "exp": int(now.timestamp()) + ttl_s,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    return jwt.encode(claims, _jwt_key(secret), algorithm="HS256")


#: Leeway (s) for clock skew on ``exp``/``nbf``.
TOKEN_LEEWAY_S = 10
#: Access tokens whose signature and claims were verified, by (secret, token): every request
#: of a session carries the same token, and checking its HMAC and claims again cost about a
#: tenth of the gateway's CPU per request (py-spy, docs/performance.md). Only the expiry is
#: time-dependent, and it is checked on every use; revocation is the session row's business
#: (``UserStore.resolve_access``), not the token's.
_VERIFIED: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_VERIFIED_MAX = 4096


def decode_access_token(secret: str, token: str, now: float | None = None) -> dict[str, Any]:
    """The verified claims of an access token, or :class:`TokenError`."""
    key = (secret, token)
    cached = _VERIFIED.get(key)
    if cached is not None:
        if int(cached["exp"]) + TOKEN_LEEWAY_S <= (time.time() if now is None else now):
            del _VERIFIED[key]
            raise TokenError("token_expired", "the access token has expired; refresh it")
        _VERIFIED.move_to_end(key)
        return dict(cached)
    claims = _verify_access_token(secret, token)
    _VERIFIED[key] = claims
    if len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)
    return dict(claims)


def _verify_access_token(secret: str, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _jwt_key(secret),
            algorithms=["HS256"],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            leeway=TOKEN_LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "sid"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token_expired", "the access token has expired; refresh it") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"invalid access token ({exc})") from exc
    if claims.get("typ") != "access":
        raise TokenError("invalid_token", "not an access token")
    return claims


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


# --------------------------------------------------------------------------- schema

DDL = """
CREATE TABLE IF NOT EXISTS users (
    user_id text PRIMARY KEY,
    username text NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    node text,
    department text,
    grids text[] NOT NULL DEFAULT '{}',
    scopes text[],
    password_hash text,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username_idx ON users (lower(username));
CREATE TABLE IF NOT EXISTS auth_sessions (
    sid uuid PRIMARY KEY,
    user_id text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    scopes text[] NOT NULL,
    channel text NOT NULL,
    ip text,
    user_agent text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    last_refreshed_at timestamptz,
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX IF NOT EXISTS auth_sessions_user_idx ON auth_sessions (user_id);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash text PRIMARY KEY,
    sid uuid NOT NULL REFERENCES auth_sessions (sid) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_sid_idx ON refresh_tokens (sid);
CREATE TABLE IF NOT EXISTS device_tokens (
    id text PRIMARY KEY,
    user_id text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    scopes text[] NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at timestamptz,
    revoked_by text
);
CREATE INDEX IF NOT EXISTS device_tokens_user_idx ON device_tokens (user_id);
CREATE TABLE IF NOT EXISTS audit_reads (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    user_id text NOT NULL,
    role text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    query text,
    case_no text
);
CREATE INDEX IF NOT EXISTS audit_reads_at_idx ON audit_reads (at);
CREATE INDEX IF NOT EXISTS audit_reads_case_idx ON audit_reads (case_no) WHERE case_no IS NOT NULL;
"""

_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':users'))"


#: A cached session: until when, the session + user row, the credentials made from it by the
#: token's scope string (a user's row and the token's scopes decide the credential).
_SessionEntry = tuple[float, Any, dict[str, "Credential"]]


class UserStore:
    """All reads and writes of identity data, over an asyncpg pool (search_path = schema)."""

    def __init__(self, pool: asyncpg.Pool, session_cache_s: float = 0.0) -> None:
        self.pool = pool
        #: Seconds a session row read by :meth:`resolve_access` is reused (0: read every
        #: time). Every change made through this store forgets the cache at once; a change
        #: made elsewhere (another gateway, ``gridctl users``) reaches this one within it.
        self.session_cache_s = session_cache_s
        self._sessions: dict[uuid.UUID, _SessionEntry] = {}

    def forget_sessions(self) -> None:
        """Drop cached session rows (after anything that may revoke or change a grant)."""
        self._sessions.clear()

    async def setup(self) -> None:
        """Create the tables (idempotent; serialised so concurrent start-ups do not race)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK)
            await conn.execute(DDL)

    # ------------------------------------------------------------------ users

    async def count(self) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM users"))

    async def create(
        self,
        username: str,
        role: str,
        password_hash: str | None,
        *,
        name: str | None = None,
        node: str | None = None,
        department: str | None = None,
        grids: Sequence[str] = (),
        scopes: Sequence[str] | None = None,
        user_id: str | None = None,
        disabled: bool = False,
        jurisdiction: Jurisdiction | None = None,
    ) -> UserRecord:
        """Add a user; :class:`GrantError` for a bad grant, ``UniqueViolationError`` if the
        username or user id is taken."""
        problems: list[tuple[str, str]] = []
        if not NAME_RE.match(username):
            problems.append(("username", "2-64 characters of A-Z a-z 0-9 . _ @ -"))
        if user_id is not None and not NAME_RE.match(user_id):
            problems.append(("user_id", "2-64 characters of A-Z a-z 0-9 . _ @ -"))
        if problems:
            raise GrantError(problems)
        check_grant(jurisdiction, role, node, department, grids, scopes)
        now = _utcnow()
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(
                f"INSERT INTO users ({_USER_COLUMNS}, password_hash) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) "
                f"RETURNING {_USER_COLUMNS}",
                user_id or username,
                username,
                name or username,
                role,
                node,
                department,
                list(grids),
                list(scopes) if scopes is not None else None,
                disabled,
                now,
                now if password_hash else None,
                password_hash,
            )
        log.info("users.created", username=username, role=role)
        return _user(record)

    async def get(self, username: str) -> UserRecord | None:
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(username) = lower($1)", username
            )
        return _user(record) if record else None

    async def get_by_id(self, user_id: str) -> UserRecord | None:
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(
                f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = $1", user_id
            )
        return _user(record) if record else None

    async def list_users(
        self, role: str | None = None, disabled: bool | None = None, q: str | None = None
    ) -> list[UserRecord]:
        where: list[str] = []
        params: list[Any] = []
        if role is not None:
            params.append(role)
            where.append(f"role = ${len(params)}")
        if disabled is not None:
            params.append(disabled)
            where.append(f"disabled = ${len(params)}")
        if q:
            params.append(f"%{q.lower()}%")
            where.append(
                f"(lower(username) LIKE ${len(params)} OR lower(name) LIKE ${len(params)})"
            )
        sql = f"SELECT {_USER_COLUMNS} FROM users"
        if where:
            sql += " WHERE " + " AND ".join(where)
        async with self.pool.acquire() as conn:
            records = await conn.fetch(sql + " ORDER BY username", *params)
        return [_user(r) for r in records]

    async def update(
        self,
        username: str,
        changes: dict[str, Any],
        jurisdiction: Jurisdiction | None = None,
    ) -> UserRecord | None:
        """Change name / role / node / department / grids / scopes / disabled. A change of
        role, jurisdiction or scopes, or disabling, ends every session and device token of the
        user (their next request gets 401 and they sign in again with the new grant)."""
        self.forget_sessions()
        allowed = {"name", "role", "node", "department", "grids", "scopes", "disabled"}
        unknown = set(changes) - allowed
        if unknown:
            raise GrantError([(f, "cannot be changed here") for f in sorted(unknown)])
        current = await self.get(username)
        if current is None:
            return None
        merged = current.model_dump()
        merged.update(changes)
        if "role" in changes and changes["role"] != current.role:
            # Moving to another role drops the jurisdiction fields that do not fit it.
            for field_name, keep in (
                ("node", changes["role"] in NODE_ROLES),
                ("department", changes["role"] == "handler"),
                ("grids", changes["role"] == "inspector"),
            ):
                if not keep and field_name not in changes:
                    merged[field_name] = [] if field_name == "grids" else None
            if "scopes" not in changes:
                merged["scopes"] = None
        check_grant(
            jurisdiction,
            merged["role"],
            merged["node"],
            merged["department"],
            merged["grids"],
            merged["scopes"],
        )
        grant_changed = (
            any(merged[f] != getattr(current, f) for f in ("role", "node", "department", "grids"))
            or merged["scopes"] != current.scopes
        )
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                "UPDATE users SET name = $2, role = $3, node = $4, department = $5, grids = $6, "
                "scopes = $7, disabled = $8, updated_at = now() WHERE user_id = $1 "
                f"RETURNING {_USER_COLUMNS}",
                current.user_id,
                merged["name"],
                merged["role"],
                merged["node"],
                merged["department"],
                list(merged["grids"]),
                merged["scopes"],
                merged["disabled"],
            )
            if grant_changed or (merged["disabled"] and not current.disabled):
                await self._revoke_all(conn, current.user_id, "grant changed or disabled")
        return _user(record)

    async def set_password(self, username: str, password_hash: str) -> UserRecord | None:
        """Replace the password and end every session and device token of the user."""
        self.forget_sessions()
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                "UPDATE users SET password_hash = $2, password_changed_at = now(), "
                f"updated_at = now() WHERE lower(username) = lower($1) RETURNING {_USER_COLUMNS}",
                username,
                password_hash,
            )
            if record is not None:
                await self._revoke_all(conn, record["user_id"], "password changed")
        return _user(record) if record else None

    async def password_hash(self, username: str) -> tuple[UserRecord, str | None] | None:
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(
                f"SELECT {_USER_COLUMNS}, password_hash FROM users "
                "WHERE lower(username) = lower($1)",
                username,
            )
        return (_user(record), record["password_hash"]) if record else None

    async def rehash(self, user_id: str, password_hash: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash
            )

    async def authenticate(self, username: str, password: str) -> UserRecord | None:
        """The user when ``password`` is right (disabled users included: the caller decides),
        else None; costs one argon2 verification either way."""
        found = await self.password_hash(username)
        user, encoded = found if found else (None, None)
        ok = await asyncio.to_thread(passwords.verify_password, encoded, password)
        if not ok or user is None or encoded is None:
            return None
        if passwords.needs_rehash(encoded):
            await self.rehash(
                user.user_id, await asyncio.to_thread(passwords.hash_password, password)
            )
        return user

    # ------------------------------------------------------------------ sessions

    async def create_session(
        self,
        user: UserRecord,
        scopes: Sequence[str],
        channel: str,
        settings: IdentitySettings,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[str, str, datetime]:
        """A sign-in: returns (session id, refresh token, refresh token expiry)."""
        now = _utcnow()
        sid = uuid.uuid4()
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        session_end = now + timedelta(seconds=settings.session_max_age_s)
        refresh_end = min(now + timedelta(seconds=settings.refresh_ttl_s), session_end)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO auth_sessions (sid, user_id, scopes, channel, ip, user_agent, "
                "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                sid,
                user.user_id,
                list(scopes),
                channel,
                ip,
                (user_agent or "")[:300] or None,
                now,
                session_end,
            )
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, sid, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4)",
                token_hash(refresh),
                sid,
                now,
                refresh_end,
            )
        return str(sid), refresh, refresh_end

    async def rotate_refresh(
        self, refresh: str, settings: IdentitySettings
    ) -> tuple[UserRecord, str, list[str], str, datetime]:
        """Use a refresh token once: (user, session id, scopes, new refresh token, its expiry).

        A token presented a second time means two parties hold it: the whole session is
        revoked (OAuth 2.0 Security BCP, refresh token rotation)."""
        now = _utcnow()
        if not refresh.startswith(REFRESH_PREFIX) or len(refresh) > 200:
            raise TokenError("invalid_grant", "not a refresh token")
        problem: TokenError | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT r.sid, r.expires_at, r.used_at, s.revoked_at, "
                "s.expires_at AS s_exp, s.scopes, s.user_id FROM refresh_tokens r "
                "JOIN auth_sessions s USING (sid) WHERE r.token_hash = $1 FOR UPDATE OF r",
                token_hash(refresh),
            )
            if row is None:
                problem = TokenError("invalid_grant", "unknown refresh token")
            elif row["used_at"] is not None:
                # Committed, then refused: the revocation must outlive this request.
                await conn.execute(
                    "UPDATE auth_sessions SET revoked_at = $2, revoked_reason = $3 "
                    "WHERE sid = $1 AND revoked_at IS NULL",
                    row["sid"],
                    now,
                    "refresh token reused",
                )
                self.forget_sessions()
                log.warning("auth.refresh_reused", sid=str(row["sid"]))
                problem = TokenError(
                    "refresh_token_reused",
                    "this refresh token was already used; the session is revoked, sign in again",
                )
            elif row["revoked_at"] is not None:
                problem = TokenError("invalid_grant", "the session was signed out")
            elif row["expires_at"] <= now or row["s_exp"] <= now:
                problem = TokenError(
                    "invalid_grant", "the refresh token has expired; sign in again"
                )
            else:
                user = _user(
                    await conn.fetchrow(
                        f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = $1",
                        row["user_id"],
                    )
                )
                if user.disabled:
                    problem = TokenError("account_disabled", "the account is disabled")
                else:
                    await conn.execute(
                        "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1",
                        token_hash(refresh),
                        now,
                    )
                    new = REFRESH_PREFIX + secrets.token_urlsafe(32)
                    new_end = min(now + timedelta(seconds=settings.refresh_ttl_s), row["s_exp"])
                    await conn.execute(
                        "INSERT INTO refresh_tokens (token_hash, sid, created_at, "
                        "expires_at) VALUES ($1, $2, $3, $4)",
                        token_hash(new),
                        row["sid"],
                        now,
                        new_end,
                    )
                    await conn.execute(
                        "UPDATE auth_sessions SET last_refreshed_at = $2 WHERE sid = $1",
                        row["sid"],
                        now,
                    )
        if problem is not None:
            raise problem
        assert row is not None
        scopes = sorted(set(row["scopes"]) & set(user.effective_scopes))
        return user, str(row["sid"]), scopes, new, new_end

    async def revoke_session(self, sid: str, reason: str = "signed out") -> bool:
        self.forget_sessions()
        async with self.pool.acquire() as conn:
            status = await conn.execute(
                "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2 "
                "WHERE sid = $1 AND revoked_at IS NULL",
                uuid.UUID(sid),
                reason,
            )
        return status.endswith(" 1")

    async def _revoke_all(self, conn: asyncpg.Connection, user_id: str, reason: str) -> None:
        self.forget_sessions()
        await conn.execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2 "
            "WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
            reason,
        )
        await conn.execute(
            "UPDATE device_tokens SET revoked_at = now(), revoked_by = $2 "
            "WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
            f"system: {reason}",
        )

    async def revoke_all(self, user_id: str, reason: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._revoke_all(conn, user_id, reason)

    async def resolve_access(self, claims: dict[str, Any]) -> Credential:
        """The credential behind verified access-token claims, checked against the database
        now: the session must be live and the user enabled."""
        try:
            sid = uuid.UUID(str(claims["sid"]))
        except ValueError as exc:
            raise TokenError("invalid_token", "malformed session id") from exc
        entry = self._cached_session(sid)
        if entry is None:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT s.scopes AS s_scopes, s.channel AS s_channel, s.revoked_at, "
                    "s.expires_at AS s_exp, u.* FROM auth_sessions s JOIN users u "
                    "USING (user_id) WHERE s.sid = $1",
                    sid,
                )
            entry = (time.monotonic() + self.session_cache_s, row, {})
            if row is not None and self.session_cache_s > 0:
                if len(self._sessions) > 10_000:
                    self._sessions.clear()
                self._sessions[sid] = entry
        _, row, credentials = entry
        if row is None or row["user_id"] != claims["sub"]:
            raise TokenError("invalid_token", "unknown session")
        if row["revoked_at"] is not None:
            raise TokenError("session_revoked", "the session was signed out or revoked")
        if row["s_exp"] <= _utcnow():
            raise TokenError("session_expired", "the session has expired; sign in again")
        scope = str(claims.get("scope", ""))
        credential = credentials.get(scope)
        if credential is None:  # the first request of this token's scopes on this row
            user = _user(row)
            if user.disabled:
                raise TokenError("account_disabled", "the account is disabled")
            token_scopes = set(scope.split()) & set(row["s_scopes"])
            credential = credentials[scope] = Credential(
                user=user,
                kind="access",
                token_id=str(sid),
                scopes=sorted(token_scopes & set(user.effective_scopes)),
                channel=row["s_channel"],
            )
        return credential

    def _cached_session(self, sid: uuid.UUID) -> _SessionEntry | None:
        """The session + user row read less than ``session_cache_s`` ago (with the
        credentials already made from it, by the token's scopes), else None. The checks that
        depend on the time or the token (expiry, the token's user) still run on it at every
        request; the others (revoked, disabled, the scopes granted) depend on the row alone,
        which the cache keeps unchanged until it expires or is forgotten."""
        hit = self._sessions.get(sid)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._sessions[sid]
            return None
        return hit

    # ------------------------------------------------------------------ devices

    async def create_device(
        self, user: UserRecord, name: str, days: int, max_devices: int
    ) -> tuple[dict[str, Any], str]:
        """A device token for ``user``: (device row, the token — shown once, stored hashed)."""
        now = _utcnow()
        token = DEVICE_PREFIX + secrets.token_urlsafe(32)
        device_id = "dev_" + secrets.token_hex(8)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('device:' || $1::text))", user.user_id
            )
            active = await conn.fetchval(
                "SELECT count(*) FROM device_tokens WHERE user_id = $1 AND revoked_at IS NULL "
                "AND expires_at > now()",
                user.user_id,
            )
            if active >= max_devices:
                raise TokenError(
                    "too_many_devices",
                    f"{active} active devices (at most {max_devices}); revoke one first",
                )
            row = await conn.fetchrow(
                "INSERT INTO device_tokens (id, user_id, name, token_hash, scopes, created_at, "
                "expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                device_id,
                user.user_id,
                name,
                token_hash(token),
                user.effective_scopes,
                now,
                now + timedelta(days=days),
            )
        return _device(row), token

    async def list_devices(self, user_id: str | None = None) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            if user_id is None:
                rows = await conn.fetch("SELECT * FROM device_tokens ORDER BY created_at")
            else:
                rows = await conn.fetch(
                    "SELECT * FROM device_tokens WHERE user_id = $1 ORDER BY created_at", user_id
                )
        return [_device(r) for r in rows]

    async def get_device(self, device_id: str) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM device_tokens WHERE id = $1", device_id)
        return _device(row) if row else None

    async def revoke_device(self, device_id: str, by: str) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "UPDATE device_tokens SET revoked_at = coalesce(revoked_at, now()), "
                "revoked_by = coalesce(revoked_by, $2) WHERE id = $1 RETURNING *",
                device_id,
                by,
            )
        return _device(row) if row else None

    async def resolve_device(self, token: str) -> Credential:
        if not token.startswith(DEVICE_PREFIX) or len(token) > 200:
            raise TokenError("invalid_token", "unrecognised token")
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT d.id AS d_id, d.scopes AS d_scopes, d.revoked_at AS d_revoked, "
                "d.expires_at AS d_exp, d.last_used_at AS d_used, u.* FROM device_tokens d "
                "JOIN users u USING (user_id) WHERE d.token_hash = $1",
                token_hash(token),
            )
            if row is None:
                raise TokenError("invalid_token", "unknown device token")
            if row["d_revoked"] is not None:
                raise TokenError("token_revoked", "this device token was revoked")
            now = _utcnow()
            if row["d_exp"] <= now:
                raise TokenError("token_expired", "this device token has expired")
            if row["d_used"] is None or now - row["d_used"] > timedelta(minutes=5):
                await conn.execute(
                    "UPDATE device_tokens SET last_used_at = $2 WHERE id = $1", row["d_id"], now
                )
        user = _user(row)
        if user.disabled:
            raise TokenError("account_disabled", "the account is disabled")
        return Credential(
            user=user,
            kind="device",
            token_id=row["d_id"],
            scopes=sorted(set(row["d_scopes"]) & set(user.effective_scopes)),
            channel="mobile",
        )

    # ------------------------------------------------------------------ audit log

    async def record_read(
        self,
        user_id: str,
        role: str,
        method: str,
        path: str,
        query: str | None,
        case_no: str | None,
    ) -> None:
        """Log an auditor's read (who looked at what, when).

        Committed without waiting for the WAL flush: the row is written before the response
        and survives anything but a PostgreSQL or machine crash within the WAL writer's
        fraction of a second, and the flush wait was most of an auditor request's time
        (docs/performance.md, "Auditor history"). Nothing else may share this transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute(
                "INSERT INTO audit_reads (user_id, role, method, path, query, case_no) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                user_id,
                role,
                method,
                path[:2000],
                (query or None) and query[:2000],
                case_no,
            )


def _device(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "name": row["name"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "last_used_at": row["last_used_at"],
        "revoked_at": row["revoked_at"],
        "revoked_by": row["revoked_by"],
        "active": row["revoked_at"] is None and row["expires_at"] > _utcnow(),
    }


# --------------------------------------------------------------------------- demo users


class DemoUser(BaseModel):
    username: str
    role: str
    name: str
    password: str
    password_hash: str | None = None
    user_id: str | None = None
    node: str | None = None
    department: str | None = None
    grids: list[str] = Field(default_factory=list)


def read_demo_file(path: Path) -> tuple[str | None, list[DemoUser]]:
    """(city code the file is for, its users)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return data.get("city"), [DemoUser.model_validate(u) for u in data["users"]]


async def load_demo_users(store: UserStore, path: Path, jurisdiction: Jurisdiction) -> list[str]:
    """Create the demo users of ``path`` when the users table is empty (idempotent, safe from
    several processes at once); returns the usernames created."""
    if not path.is_file():
        log.warning("users.demo_file_missing", path=str(path))
        return []
    city, demo = read_demo_file(path)
    if city is not None and city != jurisdiction.city_code:
        log.info("users.demo_skipped", reason=f"file is for city {city}", path=str(path))
        return []
    created: list[str] = []
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute(_LOCK)
        if await conn.fetchval("SELECT count(*) FROM users"):
            return []
        now = _utcnow()
        for user in demo:
            try:
                check_grant(jurisdiction, user.role, user.node, user.department, user.grids)
            except GrantError as exc:
                log.warning("users.demo_invalid", username=user.username, problems=str(exc))
                continue
            encoded = user.password_hash
            if not encoded or not passwords.is_hash(encoded):
                encoded = await asyncio.to_thread(passwords.hash_password, user.password)
            await conn.execute(
                f"INSERT INTO users ({_USER_COLUMNS}, password_hash) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, false, $8, $8, $8, $9)",
                user.user_id or user.username,
                user.username,
                user.name,
                user.role,
                user.node,
                user.department,
                user.grids,
                now,
                encoded,
            )
            created.append(user.username)
    if created:
        log.warning(
            "users.demo_loaded",
            count=len(created),
            note="demo users with published passwords; set GRID_DEMO_USERS=false in production",
        )
    return created


async def setup(
    pool: asyncpg.Pool, jurisdiction: Jurisdiction, settings: IdentitySettings | None = None
) -> UserStore:
    """Create the identity tables and, unless disabled, load the demo users into an empty
    users table. Called by ``Runtime.open``."""
    settings = settings or IdentitySettings()
    store = UserStore(pool)
    await store.setup()
    if settings.demo_users:
        await load_demo_users(store, settings.demo_users_file, jurisdiction)
    return store
