"""Notifications (通知): the right people hear about a case when it needs them.

What is notified, and to whom, is the domain's rule: ``aggregates.notices`` (``notices_for``).
This module stores, pushes and delivers those notices.

How it travels:

1. ``NotifyProjection`` reads the EVENTS stream through the same exactly-once runner as the
   read models (durable consumer ``notify_notify``, positions in
   ``projection_positions``), writes ``notifications`` rows and one ``webhook_deliveries``
   row per matching webhook in the same transaction; a crash never loses or doubles one.
   The reporters' text messages (``gateways/outbound.py``) ride on the same consumer and
   transaction: one delivery, one decode and one commit per batch for both.
2. After the commit each notification is published on core NATS ``<root>.ntf.<audience>``;
   every gateway's ``GET /v1/notifications/stream`` (Server-Sent Events) subscribes to the
   caller's audiences only, and replays what it missed from the table (``Last-Event-ID``).

News, not history — what a notifier does with old events. A new durable consumer (the role
enabled on a system that has run for weeks) or a reset / rebuilt position replays the whole
EVENTS stream. Every event still gets its ``notifications`` rows (the list stays complete for
audits), but:

* a webhook receives only events recorded at or after its ``created_at`` (event ``at`` ≥
  ``webhooks.created_at``; the API stamps it with the gateway's clock, the domain events'
  clock; hooks from ``deploy/webhooks.json`` get the database's ``now()`` when first loaded):
  a new subscriber never gets a flood of history;
* an event recorded more than ``GRID_NOTIFY_MAX_AGE_S`` (default 1 h) before the runtime's
  clock reads now (``Runtime.clock``, read once per batch and passed to the pure
  :func:`is_news`) is history: its rows are written with ``live = false``, are not published
  on NATS, are left out of the SSE ``Last-Event-ID`` replay, and get no webhook deliveries.
  One ``notify.history_not_pushed`` line per catch-up says how many were held back.

Both decisions are taken inside the batch's transaction, from the event and that batch's
``now``, so the exactly-once rule above holds: a notification row and its deliveries commit
together or not at all. The price: when the notifier itself was down for longer than the
bound, webhooks miss the events of the outage's early part (they stay in the list); raise
``GRID_NOTIFY_MAX_AGE_S`` where a receiver must see those.
3. ``WebhookDispatcher`` posts pending deliveries: JSON body, ``X-Grid-Signature:
   sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with ``X-Grid-Timestamp``,
   retried with exponential backoff and jitter up to ``max_attempts``; every attempt is
   written to ``webhook_attempts`` (the delivery log). Rows are claimed with a lease, so
   several dispatchers can run.

Webhooks come from the admin API (``/v1/webhooks``) or ``deploy/webhooks.json`` (loaded at
start-up, idempotently; secrets from environment variables named in the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import asyncpg
import httpx

from core import codec
from core.logging import get_logger
from core.messaging import drop_consumer
from core.settings import REPO_ROOT
from projections.base import Envelope
from projections.notifications import DDL, NotifyProjection

if TYPE_CHECKING:
    from gateways.runtime import Runtime

log = get_logger("notify")

WEBHOOKS_FILE = Path(os.environ.get("GRID_WEBHOOKS_FILE", REPO_ROOT / "deploy" / "webhooks.json"))
SIGNATURE_HEADER = "X-Grid-Signature"
TIMESTAMP_HEADER = "X-Grid-Timestamp"

#: The summary of a catch-up on history is logged when news arrives or after this many
#: seconds without more history.
HISTORY_QUIET_S = 5.0

_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def audience_subject(root: str, audience: str) -> str:
    """``dept.D-520102-water`` → ``<root>.ntf.dept.D-520102-water`` (NATS-safe tokens)."""
    kind, _, value = audience.partition(".")
    return f"{root}.ntf.{kind}.{_TOKEN_UNSAFE.sub('_', value)}"


# ------------------------------------------------------------------------------- webhooks


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (constant-time compare); also check the timestamp is recent."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookDispatcher:
    """Delivers pending webhook deliveries with retries (exponential backoff + jitter)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        base_delay_s: float = 2.0,
        max_delay_s: float = 600.0,
        max_attempts: int = 8,
        timeout_s: float = 10.0,
        poll_s: float = 1.0,
        batch: int = 20,
    ) -> None:
        self.pool = pool
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.batch = batch
        self.wake = asyncio.Event()
        self.delivered = 0

    def delay(self, attempt: int) -> float:
        """Seconds before retry after failed attempt ``attempt`` (1-based): exponential,
        capped, with "equal jitter" (half fixed, half random) so retries never bunch up."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
            while not stop.is_set():
                try:
                    sent = await self.tick(http)
                except Exception as exc:
                    log.warning("webhooks.tick_failed", error=repr(exc))
                    sent = 0
                if sent:
                    continue
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    waiter = asyncio.ensure_future(self.wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait(
                        [waiter, stopper], timeout=self.poll_s, return_when="FIRST_COMPLETED"
                    )
                    waiter.cancel()
                    stopper.cancel()

    async def tick(self, http: httpx.AsyncClient) -> int:
        """Claim due deliveries (lease 2 × timeout), send them, record the outcome."""
        async with self.pool.acquire() as conn:
            claimed = await conn.fetch(
                "UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval("
                "secs => $2) FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending' "
                "AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 "
                "FOR UPDATE SKIP LOCKED) due WHERE d.id = due.id "
                "RETURNING d.id, d.webhook_id, d.notification_id, d.kind, d.attempts",
                self.batch,
                self.timeout_s * 2,
            )
            if not claimed:
                return 0
            hooks = {
                r["id"]: r
                for r in await conn.fetch(
                    "SELECT id, url, secret FROM webhooks WHERE id = ANY($1::text[])",
                    list({c["webhook_id"] for c in claimed}),
                )
            }
            notes = {
                r["id"]: dict(r)
                for r in await conn.fetch(
                    "SELECT id, kind, case_no, audience, title, body, data, at FROM notifications "
                    "WHERE id = ANY($1::bigint[])",
                    [c["notification_id"] for c in claimed],
                )
            }
        await asyncio.gather(
            *(
                self._deliver(http, c, hooks.get(c["webhook_id"]), notes[c["notification_id"]])
                for c in claimed
            )
        )
        return len(claimed)

    async def _deliver(
        self, http: httpx.AsyncClient, delivery: Any, hook: Any, note: dict[str, Any]
    ) -> None:
        attempt = delivery["attempts"] + 1
        if hook is None:
            return
        payload = {"delivery_id": delivery["id"], "attempt": attempt, "notification": note}
        body = codec.dumps(payload)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "griddispatch-webhooks/1",
            "X-Grid-Event": note["kind"],
            "X-Grid-Delivery": str(delivery["id"]),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(hook["secret"], timestamp, body),
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await http.post(hook["url"], content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        duration_ms = int((time.monotonic() - started) * 1000)
        ok = error is None
        if ok:
            status, next_in = "delivered", 0.0
        elif attempt >= self.max_attempts:
            status, next_in = "failed", 0.0
        else:
            status, next_in = "pending", self.delay(attempt)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, "
                "duration_ms) VALUES ($1, $2, $3, $4, $5)",
                delivery["id"],
                attempt,
                status_code,
                error,
                duration_ms,
            )
            await conn.execute(
                "UPDATE webhook_deliveries SET attempts = $2, status = $3, last_status_code = $4, "
                "last_error = $5, next_attempt_at = now() + make_interval(secs => $6), "
                "delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE NULL END "
                "WHERE id = $1",
                delivery["id"],
                attempt,
                status,
                status_code,
                error,
                next_in,
            )
        if ok:
            self.delivered += 1
        log.info(
            "webhook.attempt",
            delivery=delivery["id"],
            attempt=attempt,
            status=status,
            code=status_code,
            error=error,
        )


# ------------------------------------------------------------------------------ the service


class Notifier:
    """The ``notifier`` role: the notifications' read model, pushed after each commit, plus
    the webhook dispatcher.

    ``riders`` are further read models of the role with what to do after each commit (the
    reporters' text messages): they share the notifications' consumer and transaction — a
    second consumer per event cost a delivery, a decode, an acknowledgement and a transaction
    more per report (docs/performance.md). In a process that also runs the projector
    (``gridctl up`` runs them together) the projector's runner applies :attr:`projections`
    as well and calls :meth:`applied` (``gateways.bootstrap``): one consumer for every read
    model. Alone, :meth:`tasks` runs its own runner on the consumer ``notify_notify``."""

    #: The notifications' own consumer (when the role runs without the projector).
    DURABLE = "notify_notify"

    def __init__(
        self,
        runtime: Runtime,
        riders: Sequence[tuple[Any, Callable[[], Any]]] = (),
    ) -> None:
        self.runtime = runtime
        # The runtime's clock (as the SLA watcher's): an event's age is measured against it.
        self.projection = NotifyProjection(runtime.clock, runtime.settings.notify_max_age_s)
        self.dispatcher = WebhookDispatcher(runtime.pool)
        #: The read models this role keeps (its own first, then the riders').
        self.projections: list[Any] = [self.projection, *(p for p, _ in riders)]
        self._after = [after for _, after in riders]
        # The history held back since the catch-up began (logged once when it ends).
        self.history_events = 0
        self.history_held = 0
        self.history_span: tuple[datetime, datetime] | None = None
        self._history_timer: asyncio.TimerHandle | None = None

    async def applied(self, envelopes: list[Envelope]) -> None:
        """After a commit that applied events: push the fresh notifications, then the
        riders' steps (wake the text sender)."""
        await self._published(envelopes)
        for after in self._after:
            result = after()
            if asyncio.iscoroutine(result):
                await result

    async def _published(self, _: list[Envelope]) -> None:
        fresh, self.projection.fresh = self.projection.fresh, []
        p = self.projection
        news_seen = p.news_seen
        if p.history_events:
            self.history_events += p.history_events
            self.history_held += p.held
            if p.history_span is not None:
                old, new = self.history_span or p.history_span
                self.history_span = (min(old, p.history_span[0]), max(new, p.history_span[1]))
        # Taken: a later batch that only a rider applied must not count this one again.
        p.history_events = p.held = 0
        p.history_span = None
        p.news_seen = False
        root = self.runtime.topo.subject_root
        for item in fresh:
            payload = codec.dumps(item)
            for audience in item["audience"]:
                with contextlib.suppress(Exception):
                    await self.runtime.nc.publish(audience_subject(root, audience), payload)
        if fresh:
            self.dispatcher.wake.set()
        if not self.history_events:
            return
        # The catch-up is over when news arrives, or when no history came for a while (a
        # catch-up spans many batches, and the stream may end with old events).
        if self._history_timer is not None:
            self._history_timer.cancel()
            self._history_timer = None
        if news_seen:
            self._log_history()
        else:
            self._history_timer = asyncio.get_running_loop().call_later(
                HISTORY_QUIET_S, self._log_history
            )

    def _log_history(self) -> None:
        """One line per catch-up: how much history was listed but not pushed nor sent."""
        if self._history_timer is not None:
            self._history_timer.cancel()
            self._history_timer = None
        if not self.history_events:
            return
        oldest, newest = self.history_span or (None, None)
        log.info(
            "notify.history_not_pushed",
            events=self.history_events,
            notifications=self.history_held,
            oldest=oldest.isoformat() if oldest else None,
            newest=newest.isoformat() if newest else None,
            max_age_s=self.projection.max_age.total_seconds(),
            note="older than GRID_NOTIFY_MAX_AGE_S: notification rows written, no live push, "
            "no webhook deliveries",
        )
        self.history_events = self.history_held = 0
        self.history_span = None

    async def run_projections(
        self, runner: Any, stop: asyncio.Event, drop_own_consumer: bool = False
    ) -> None:
        """Run the runner that applies :attr:`projections` (its own or, with
        ``drop_own_consumer``, the projector's: then the role's own consumer, left by a layout
        that ran it alone, has no reader and is removed first)."""
        if drop_own_consumer:
            await drop_consumer(self.runtime.js, self.runtime.topo.events_stream, self.DURABLE)
        try:
            await runner.run(stop)
        finally:
            self._log_history()  # a catch-up cut short by a stop is still reported

    def tasks(self, stop: asyncio.Event, own_runner: bool = True) -> list[Any]:
        """The role's tasks: the webhook dispatcher and, unless the projector applies the
        notifications (``own_runner=False``), a runner of their own."""
        if not own_runner:
            return [self.dispatcher.run(stop)]
        from projections.runner import ProjectionRunner

        runner = ProjectionRunner(
            self.projections,
            self.runtime.js,
            self.runtime.topo,
            self.runtime.pool,
            batch=500,
            on_applied=self.applied,
            # The name the notifications' consumer always had: an upgraded box carries on
            # where it was (a rider behind it is filled from the event store).
            durable=self.DURABLE,
        )
        return [self.run_projections(runner, stop), self.dispatcher.run(stop)]


async def setup(conn: asyncpg.Connection, path: Path | None = None) -> None:
    """Create the tables and load the webhooks of the config file (idempotent)."""
    await conn.execute(DDL)
    path = path or WEBHOOKS_FILE
    if not path.is_file():
        return
    document = json.loads(path.read_text(encoding="utf-8"))
    for hook in document.get("webhooks", []):
        secret = os.environ.get(hook.get("secret_env", ""), "") or hook.get("secret", "")
        if not secret:
            log.warning("webhooks.no_secret", id=hook.get("id"))
            continue
        await conn.execute(
            "INSERT INTO webhooks (id, url, secret, kinds, audiences, description, source, "
            "created_by) VALUES ($1, $2, $3, $4, $5, $6, 'config', 'config') "
            "ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, "
            "kinds = EXCLUDED.kinds, audiences = EXCLUDED.audiences "
            "WHERE webhooks.source = 'config'",
            hook["id"],
            check_url(hook["url"]),
            secret,
            hook.get("kinds", []),
            hook.get("audiences", []),
            hook.get("description"),
        )


def check_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; else ValueError (the API answers 422)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("a webhook URL is http(s)://host/…")
    return url
