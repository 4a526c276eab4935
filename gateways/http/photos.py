"""Photos: ``POST /v1/photos`` (upload) and ``GET /v1/photos/{digest}`` (download).

Upload first, then reference: a report, a result (处置反馈) or a verification (核查) carries
``{"digest", "size", "content_type"}`` as returned here. The body is either the raw image
(``Content-Type: image/jpeg`` … or ``application/octet-stream``, what the inspector app sends
after downscaling on the phone)
or ``multipart/form-data`` with a ``file`` field. The size limit is enforced while reading, so
an oversized upload is cut off without being buffered whole.

Downloads are for the uploader and for whoever may see a case that references the photo:
evidence photos show people, number plates and homes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from aggregates.commands import Photo
from core import photos
from core.jurisdiction import Jurisdiction
from core.refdata import Reference
from gateways.http.access import CASE_ACTORS, CASE_READERS, can_see
from gateways.http.deps import get_photos, get_pool, get_reference
from gateways.http.errors import ApiError
from gateways.http.identity import Principal, require

router = APIRouter(prefix="/v1", tags=["photos 照片"])

_MULTIPART_OVERHEAD = 64 * 1024
UPLOADERS = require(*CASE_ACTORS)
VIEWERS = require(*CASE_READERS)


async def may_view(
    pool: asyncpg.Pool, j: Jurisdiction, principal: Principal, photo: photos.StoredPhoto
) -> bool:
    """The uploader, auditors, and whoever may see a case whose events reference the photo
    (a report, a result 处置反馈, a verification 核查)."""
    if principal.role in ("auditor", "system") or photo.uploaded_by == principal.user_id:
        return True
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT DISTINCT q.grid, q.community, q.district, q.node, q.department "
            "FROM case_timeline t JOIN case_queue q ON q.case_id = t.case_id "
            "WHERE t.data @> $1::jsonb LIMIT 200",
            {"photos": [{"digest": photo.digest}]},
        )
    return any(can_see(principal, dict(r), j) for r in rows)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413,
            "photo_too_large",
            f"upload is {declared} bytes; the limit is {photos.MAX_BYTES} bytes",
            limit=photos.MAX_BYTES,
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(
                413,
                "photo_too_large",
                f"upload exceeds the limit of {photos.MAX_BYTES} bytes",
                limit=photos.MAX_BYTES,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _photo_bytes(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        # Bound the whole body, then let Starlette parse the (already read) form.
        raw = await _read_limited(request, photos.MAX_BYTES + _MULTIPART_OVERHEAD)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": raw, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=1, max_fields=5)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, "missing_file", "send the photo in a form field named 'file'")
        data = await upload.read()
        await form.close()
        return data
    return await _read_limited(request, photos.MAX_BYTES)


async def check_photo_refs(pool: asyncpg.Pool, refs: Sequence[Photo]) -> None:
    """Refuse photo references (in a report, result or verification) that were never
    uploaded, or whose size / type differ from what was stored: an event must not point at
    evidence that does not exist. Called by every route that queues a command carrying
    ``photos`` (``POST /v1/reports``, its batch, ``POST /v1/cases/{no}/actions/{verb}``)."""
    if not refs:
        return
    known = await photos.lookup(pool, [r.digest for r in refs])
    for ref in refs:
        stored = known.get(ref.digest)
        if stored is None:
            raise ApiError(
                422,
                "unknown_photo",
                f"photo {ref.digest} was not uploaded; POST it to /v1/photos first",
                field="photos",
            )
        if stored.size != ref.size or stored.content_type != ref.content_type:
            raise ApiError(
                422,
                "photo_mismatch",
                f"photo {ref.digest} is {stored.size} bytes of {stored.content_type}",
                field="photos",
                stored=stored.ref(),
            )


@router.post(
    "/photos",
    status_code=201,
    responses={
        201: {"description": "stored (or already stored: same digest)"},
        401: {"description": "not signed in"},
        413: {"description": "larger than the limit"},
        415: {"description": "not JPEG / PNG / WebP by content"},
        422: {"description": "empty or no file"},
    },
)
async def upload_photo(
    request: Request,
    store: photos.PhotoStore = Depends(get_photos),
    pool: asyncpg.Pool = Depends(get_pool),
    principal: Principal = Depends(UPLOADERS),
) -> JSONResponse:
    """Store a photo; answers its reference ``{digest, size, content_type, url}``."""
    data = await _photo_bytes(request)
    try:
        stored = await store.put(data)
    except photos.PhotoRejected as exc:
        raise ApiError(exc.status, exc.code, str(exc), **exc.details) from exc
    except Exception as exc:
        raise ApiError(503, "store_unavailable", f"could not store the photo: {exc!r}") from exc
    await photos.record(pool, stored, principal.user_id, principal.role)
    body: dict[str, Any] = {**stored.ref(), "url": f"/v1/photos/{stored.digest}"}
    return JSONResponse(body, status_code=201, headers={"Location": body["url"]})


@router.get(
    "/photos/{digest}",
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
        401: {"description": "not signed in"},
        404: {"description": "no such photo"},
    },
)
async def download_photo(
    request: Request,
    digest: str = Path(max_length=80),
    store: photos.PhotoStore = Depends(get_photos),
    pool: asyncpg.Pool = Depends(get_pool),
    ref: Reference = Depends(get_reference),
    principal: Principal = Depends(VIEWERS),
) -> Response:
    """The photo's bytes, for the uploader and whoever may see a case that shows it
    (``Cache-Control: private``); others get 404 as for a photo that does not exist."""
    try:
        digest = photos.parse_digest(digest)
    except ValueError as exc:
        raise ApiError(422, "invalid_digest", str(exc)) from exc
    known = await photos.lookup(pool, [digest])
    if digest not in known or not await may_view(pool, ref.jurisdiction, principal,
                                                 known[digest]):
        raise ApiError(404, "not_found", f"no photo {digest}")
    etag = f'"{digest}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    data = await store.get(digest)
    if data is None:
        raise ApiError(404, "not_found", f"photo {digest} is not in the store")
    return Response(
        data,
        media_type=known[digest].content_type,
        headers={
            "ETag": etag,
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline",
        },
    )
