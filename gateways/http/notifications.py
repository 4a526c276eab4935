"""The notifications and webhooks API: my notifications (list and live Server-Sent
Events) and the admin's webhooks. The notifier role itself (writing notifications, pushing
them on NATS, delivering webhooks) is ``gateways/notify.py``; this router only reads what it
wrote and listens to what it pushes — kept apart so that the role processes that are not
HTTP gateways do not import FastAPI."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from core import codec
from core.clock import Clock
from gateways.http.access import CASE_READERS
from gateways.http.deps import get_clock, get_pool, get_runtime
from gateways.http.errors import ApiError
from gateways.http.identity import Principal, require
from gateways.http.inputs import INT8_MAX
from gateways.notify import audience_subject, check_url
from projections.notifications import KINDS, recent


def audiences_of(principal: Principal) -> list[str]:
    """Which notifications a signed-in person receives."""
    out = [f"user.{principal.user_id}"]
    if principal.role == "handler" and principal.department:
        out.append(f"dept.{principal.department}")
    if principal.role == "inspector":
        out.extend(f"grid.{g}" for g in principal.grids)
    if principal.role in ("dispatcher", "shift_leader", "call_taker", "supervisor"):
        out.append(f"role.{principal.role}")
    return out



@dataclass(frozen=True)
class Feed:
    """What a live stream needs: the pool (replay), NATS (live pushes), the subject root and
    the process's stop signal (streams end on shutdown)."""

    pool: asyncpg.Pool
    nc: Any
    root: str
    stop: asyncio.Event


async def get_feed(request: Request) -> Feed:
    runtime = await get_runtime(request)
    return Feed(runtime.pool, runtime.nc, runtime.topo.subject_root, runtime.stop_event)


router = APIRouter(prefix="/v1", tags=["notifications 通知"])
ADMIN = require("admin")
LISTENERS = require(*[r for r in CASE_READERS if r != "auditor"], query_token=True)


@router.get("/notifications")
async def list_notifications(
    after: int | None = Query(default=None, ge=0),
    limit: int = Query(default=50, ge=1, le=500),
    pool: asyncpg.Pool = Depends(get_pool),
    principal: Principal = Depends(LISTENERS),
) -> dict[str, Any]:
    """My notifications, oldest first (the latest ``limit`` when ``after`` is not given)."""
    items = await recent(pool, audiences_of(principal), after, limit)
    return {"items": items, "audiences": audiences_of(principal)}


@router.get("/notifications/stream", response_class=StreamingResponse)
async def notification_stream(
    request: Request,
    after: int | None = Query(default=None, ge=0),
    last_event_id: str | None = Header(default=None, max_length=20),
    feed: Feed = Depends(get_feed),
    principal: Principal = Depends(LISTENERS),
) -> StreamingResponse:
    """Server-Sent Events: my notifications as they happen (``event: notification``), after
    a replay of the ones since ``Last-Event-ID`` / ``after`` (those pushed live: history the
    notifier caught up on is in ``GET /notifications`` only). A comment every 15 s keeps
    proxies from closing the connection."""
    audiences = audiences_of(principal)
    since = after
    if last_event_id and last_event_id.isdigit() and int(last_event_id) <= INT8_MAX:
        since = int(last_event_id)  # an id we never issued (too large) replays nothing
    return StreamingResponse(
        _events(request, feed, audiences, since),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(item: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: notification\ndata: %s\n\n" % (item["id"], codec.dumps(item))


async def _events(
    request: Request, feed: Feed, audiences: list[str], since: int | None
) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)

    async def on_msg(msg: Any) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(msg.data)

    subs = [await feed.nc.subscribe(audience_subject(feed.root, a), cb=on_msg)
            for a in audiences]
    try:
        yield b"retry: 3000\n: connected\n\n"
        last = since or 0
        if since is not None:
            for item in await recent(feed.pool, audiences, since, 500, live_only=True):
                last = max(last, item["id"])
                yield _sse(item)
        while not feed.stop.is_set():
            try:
                raw = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                if await request.is_disconnected():
                    break
                yield b": keep-alive\n\n"
                continue
            item = codec.loads(raw)
            if item["id"] <= last:
                continue  # already replayed; one delivery per audience match
            last = item["id"]
            yield _sse(item)
    finally:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


@router.get("/webhooks")
async def list_webhooks(
    pool: asyncpg.Pool = Depends(get_pool), _: Principal = Depends(ADMIN)
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, url, kinds, audiences, active, description, source, created_at, "
            "created_by FROM webhooks ORDER BY created_at"
        )
    return {"items": [dict(r) for r in rows], "kinds": KINDS}


@router.post("/webhooks", status_code=201)
async def create_webhook(
    payload: dict[str, Any],
    pool: asyncpg.Pool = Depends(get_pool),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(ADMIN),
) -> dict[str, Any]:
    """Register ``{"url", "kinds"?: [...], "audiences"?: [...], "secret"?, "description"?}``.
    The answer holds the signing secret (generated when not given). The webhook receives
    events recorded from now on (``created_at``, the clock events are stamped with), never
    the history before it."""
    url = payload.get("url")
    if not isinstance(url, str) or len(url) > 500:
        raise ApiError(422, "invalid_url", "url: an http(s) URL", field="url")
    try:
        check_url(url)
    except ValueError as exc:
        raise ApiError(422, "invalid_url", str(exc), field="url") from exc
    kinds = payload.get("kinds") or []
    if not isinstance(kinds, list) or any(k not in KINDS for k in kinds):
        raise ApiError(422, "invalid_kinds", "kinds: a list of known kinds", kinds=list(KINDS))
    audiences = payload.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise ApiError(422, "invalid_audiences", "audiences: a list like ['dept.D-…']")
    secret = payload.get("secret") or secrets.token_urlsafe(32)
    if not isinstance(secret, str) or not 16 <= len(secret) <= 200:
        raise ApiError(422, "invalid_secret", "secret: 16–200 characters")
    description = payload.get("description")
    hook_id = "wh-" + secrets.token_hex(6)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO webhooks (id, url, secret, kinds, audiences, description, created_by, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            hook_id,
            url,
            secret,
            kinds,
            audiences,
            description if isinstance(description, str) else None,
            principal.user_id,
            clock.now(),
        )
    return {"id": hook_id, "url": url, "kinds": kinds, "audiences": audiences, "secret": secret}


@router.delete("/webhooks/{hook_id}")
async def deactivate_webhook(
    hook_id: str, pool: asyncpg.Pool = Depends(get_pool), _: Principal = Depends(ADMIN)
) -> dict[str, Any]:
    """Stop a webhook (its delivery log stays)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "UPDATE webhooks SET active = false WHERE id = $1 RETURNING id, active", hook_id
        )
        if row is not None:
            await conn.execute(
                "UPDATE webhook_deliveries SET status = 'cancelled' WHERE webhook_id = $1 "
                "AND status = 'pending'",
                hook_id,
            )
    if row is None:
        raise ApiError(404, "not_found", f"no webhook {hook_id}")
    return dict(row)


@router.get("/webhooks/{hook_id}/deliveries")
async def webhook_deliveries(
    hook_id: str,
    limit: int = Query(default=100, ge=1, le=1000),
    pool: asyncpg.Pool = Depends(get_pool),
    _: Principal = Depends(ADMIN),
) -> dict[str, Any]:
    """The delivery log: each delivery with its attempts (status code, error, duration)."""
    async with pool.acquire() as conn:
        deliveries = await conn.fetch(
            "SELECT d.id, d.notification_id, d.kind, d.status, d.attempts, d.last_status_code, "
            "d.last_error, d.created_at, d.delivered_at, d.next_attempt_at, n.case_no "
            "FROM webhook_deliveries d JOIN notifications n ON n.id = d.notification_id "
            "WHERE d.webhook_id = $1 ORDER BY d.id DESC LIMIT $2",
            hook_id,
            limit,
        )
        attempts = await conn.fetch(
            "SELECT delivery_id, attempt, at, status_code, error, duration_ms FROM "
            "webhook_attempts WHERE delivery_id = ANY($1::bigint[]) ORDER BY delivery_id, attempt",
            [d["id"] for d in deliveries],
        )
    by_delivery: dict[int, list[dict[str, Any]]] = {}
    for a in attempts:
        by_delivery.setdefault(a["delivery_id"], []).append(dict(a))
    return {
        "items": [{**dict(d), "log": by_delivery.get(d["id"], [])} for d in deliveries],
    }
