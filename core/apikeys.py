"""API keys of client applications (Open311 GeoReport v2 clients: other cities' apps, a
newspaper's "report a problem" widget …).

* One key per client application, issued by an admin, shown once, revocable at any time.
* Only the SHA-256 of a key is stored. Issued keys carry 256 bits of randomness, so a fast
  hash is the right tool (no password stretching needed: nobody can guess the preimage), and
  a lookup is one indexed equality.
* The sample city ships a demo client in ``<city dir>/api-clients.json``; it is loaded at
  start-up idempotently (inserted once, never re-activated after an admin revoked it).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from core.logging import get_logger

log = get_logger("apikeys")

CLIENTS_FILE = "api-clients.json"

DDL = """
CREATE TABLE IF NOT EXISTS api_clients (
    client_id text PRIMARY KEY,
    name text NOT NULL,
    key_sha256 text NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    contact text,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    revoked_at timestamptz,
    revoked_by text,
    last_used_at timestamptz
);
-- The tokens an Open311 client gets for a request before its case number is known
-- (GeoReport v2 "token"; gateways/http/open311.py issues and resolves them).
CREATE TABLE IF NOT EXISTS open311_tokens (
    token text PRIMARY KEY,
    case_no text NOT NULL,
    client_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    name: str
    key_prefix: str
    contact: str | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "key_prefix": self.key_prefix,
            "contact": self.contact,
            "active": self.active,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "last_used_at": self.last_used_at,
        }


_COLUMNS = (
    "client_id, name, key_prefix, contact, created_at, created_by, revoked_at, revoked_by, "
    "last_used_at"
)


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh key: ``gd_`` + 43 url-safe characters (256 bits)."""
    return "gd_" + secrets.token_urlsafe(32)


async def setup(conn: asyncpg.Connection, city_dir: Path | None = None) -> None:
    """Create the tables (API clients, their Open311 tokens) and load the city's shipped
    clients (idempotent)."""
    await conn.execute(DDL)
    if city_dir is None:
        return
    path = Path(city_dir) / CLIENTS_FILE
    if not path.is_file():
        return
    document = json.loads(path.read_text(encoding="utf-8"))
    for entry in document.get("clients", []):
        digest = entry.get("key_sha256") or key_hash(entry["api_key"])
        await conn.execute(
            "INSERT INTO api_clients (client_id, name, key_sha256, key_prefix, contact, "
            "created_by) VALUES ($1, $2, $3, $4, $5, 'config') ON CONFLICT DO NOTHING",
            entry["client_id"],
            entry["name"],
            digest,
            entry.get("key_prefix", entry.get("api_key", "")[:6]),
            entry.get("contact"),
        )


async def issue(
    pool: asyncpg.Pool, name: str, created_by: str, contact: str | None = None
) -> tuple[ApiClient, str]:
    """Create a client and its key; the key is returned once and never stored."""
    api_key = new_api_key()
    client_id = "c-" + secrets.token_hex(6)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO api_clients (client_id, name, key_sha256, key_prefix, contact, "
            f"created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            client_id,
            name,
            key_hash(api_key),
            api_key[:7],
            contact,
            created_by,
        )
    assert row is not None
    log.info("apikey.issued", client_id=client_id, by=created_by)
    return ApiClient(**dict(row)), api_key


async def revoke(pool: asyncpg.Pool, client_id: str, revoked_by: str) -> ApiClient | None:
    """Revoke (idempotent: the first revocation's time and actor stay)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "UPDATE api_clients SET revoked_at = COALESCE(revoked_at, now()), "
            "revoked_by = COALESCE(revoked_by, $2) WHERE client_id = $1 "
            f"RETURNING {_COLUMNS}",
            client_id,
            revoked_by,
        )
    if row is not None:
        log.info("apikey.revoked", client_id=client_id, by=revoked_by)
    return ApiClient(**dict(row)) if row is not None else None


async def list_clients(pool: asyncpg.Pool) -> list[ApiClient]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_clients ORDER BY created_at")
    return [ApiClient(**dict(r)) for r in rows]


async def authenticate(pool: asyncpg.Pool, api_key: str) -> ApiClient | None:
    """The active client owning ``api_key``, or None (unknown or revoked)."""
    if not api_key or len(api_key) > 200:
        return None
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"UPDATE api_clients SET last_used_at = now() WHERE key_sha256 = $1 "
            f"AND revoked_at IS NULL RETURNING {_COLUMNS}",
            key_hash(api_key),
        )
    return ApiClient(**dict(row)) if row is not None else None
