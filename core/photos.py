"""Photos (现场照片) in the NATS JetStream Object Store, content-addressed by SHA-256.

Why the Object Store: the photos live on the same JetStream cluster as the command and event
streams, replicated the same way, so a case's evidence survives exactly what its events
survive, without another storage system to run. Events keep only ``digest / size /
content_type`` (see ``aggregates.commands.Photo``); the bytes are fetched on demand.

Why content-addressed: the object name is the digest, so an inspector's phone that re-uploads
the same photo after a lost response stores nothing twice, and a photo reference in an event
cannot silently point at different bytes later.

Rules enforced here (the HTTP layer only translates them to status codes):
* type by magic bytes, never by the declared Content-Type or file name: JPEG, PNG, WebP;
* size: 1 byte … ``MAX_BYTES`` (the limit of ``Photo.size``);
* a small PostgreSQL table records who uploaded what and when (for authorisation and audit).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError

from core.messaging import Topology

#: Largest photo accepted (bytes); equals the ``le`` of ``aggregates.commands.Photo.size``.
MAX_BYTES = 10_000_000
#: Types we accept, by the magic bytes that identify them.
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp")

_DIGEST = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")

PHOTOS_DDL = """
CREATE TABLE IF NOT EXISTS photo_objects (
    digest text PRIMARY KEY,
    size integer NOT NULL,
    content_type text NOT NULL,
    uploaded_by text NOT NULL,
    uploaded_role text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
"""


class PhotoRejected(ValueError):
    """The bytes are not an acceptable photo; ``code`` is machine-readable."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details


@dataclass(frozen=True)
class StoredPhoto:
    digest: str  # "sha256:<hex>"
    size: int
    content_type: str
    uploaded_by: str | None = None
    uploaded_at: datetime | None = None

    def ref(self) -> dict[str, Any]:
        """The reference a report or a result carries (``aggregates.commands.Photo``)."""
        return {"digest": self.digest, "size": self.size, "content_type": self.content_type}


def sniff(data: bytes) -> str | None:
    """The image type from the first bytes, or None when it is none we accept."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check(data: bytes) -> tuple[str, str]:
    """Validate the bytes; returns ``(digest, content_type)`` or raises PhotoRejected."""
    if not data:
        raise PhotoRejected(422, "empty_photo", "the photo is empty")
    if len(data) > MAX_BYTES:
        raise PhotoRejected(
            413,
            "photo_too_large",
            f"photo is {len(data)} bytes; the limit is {MAX_BYTES} bytes",
            limit=MAX_BYTES,
        )
    content_type = sniff(data)
    if content_type is None:
        raise PhotoRejected(
            415,
            "unsupported_photo_type",
            "only JPEG, PNG and WebP photos are accepted (checked by content, not by name)",
            allowed=list(ALLOWED_TYPES),
        )
    return "sha256:" + hashlib.sha256(data).hexdigest(), content_type


def parse_digest(value: str) -> str:
    """``sha256:<hex>`` from either that form or the bare hex; ValueError otherwise."""
    match = _DIGEST.match(value.strip().lower())
    if not match:
        raise ValueError("a photo id is sha256:<64 hex digits>")
    return "sha256:" + match.group(1)


def _object_name(digest: str) -> str:
    return digest.replace(":", "-")  # object names: no ':' in NATS subjects' tokens


class PhotoStore:
    """Put / get photos in one Object Store bucket (``<PREFIX>_PHOTOS``)."""

    def __init__(self, js: JetStreamContext, topo: Topology, replicas: int = 1) -> None:
        self.js = js
        self.bucket = topo.photos_bucket
        self.replicas = replicas
        self._store: Any = None

    async def _obs(self, create: bool) -> Any:
        if self._store is not None:
            return self._store
        try:
            self._store = await self.js.object_store(self.bucket)
        except (BucketNotFoundError, NotFoundError):
            if not create:
                return None
            # Created on first upload: deployments that never take photos carry no bucket.
            self._store = await self.js.create_object_store(
                self.bucket,
                config=ObjectStoreConfig(
                    description="griddispatch photos (content-addressed by sha256)",
                    storage=StorageType.FILE,
                    replicas=self.replicas,
                ),
            )
        return self._store

    async def put(self, data: bytes) -> StoredPhoto:
        """Validate and store; storing the same bytes twice is a no-op."""
        digest, content_type = check(data)
        obs = await self._obs(create=True)
        name = _object_name(digest)
        try:
            info = await obs.get_info(name)
            if info is not None and not getattr(info, "deleted", False):
                return StoredPhoto(digest, len(data), content_type)
        except (ObjectNotFoundError, NotFoundError):
            pass
        await obs.put(
            name,
            data,
            meta=ObjectMeta(
                name=name, description=content_type, headers={"Content-Type": content_type}
            ),
        )
        return StoredPhoto(digest, len(data), content_type)

    async def get(self, digest: str) -> bytes | None:
        obs = await self._obs(create=False)
        if obs is None:
            return None
        try:
            result = await obs.get(_object_name(digest))
        except (ObjectNotFoundError, NotFoundError):
            return None
        data: bytes = result.data or b""
        return data



async def setup(conn: asyncpg.Connection) -> None:
    await conn.execute(PHOTOS_DDL)


async def record(
    pool: asyncpg.Pool, photo: StoredPhoto, uploaded_by: str, role: str
) -> StoredPhoto:
    """Remember the upload (first uploader wins; later identical uploads change nothing)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO photo_objects (digest, size, content_type, uploaded_by, uploaded_role) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO UPDATE SET digest = "
            "EXCLUDED.digest RETURNING digest, size, content_type, uploaded_by, uploaded_at",
            photo.digest,
            photo.size,
            photo.content_type,
            uploaded_by,
            role,
        )
    assert row is not None
    return StoredPhoto(**dict(row))


async def lookup(pool: asyncpg.Pool, digests: list[str]) -> dict[str, StoredPhoto]:
    """The recorded uploads among ``digests``."""
    if not digests:
        return {}
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT digest, size, content_type, uploaded_by, uploaded_at FROM photo_objects "
            "WHERE digest = ANY($1::text[])",
            digests,
        )
    return {r["digest"]: StoredPhoto(**dict(r)) for r in rows}
