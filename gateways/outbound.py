"""Text messages to reporters go out (短信发送): a pluggable channel and the sender loop.

What is sent and when is the domain's rule (``aggregates.notices.reporter_notices``: filed,
closed, return visit due); ``projections/reporter_messages.py`` writes one
``outbound_messages`` row per message, exactly once. Here, in the notifier role:

* :class:`OutboundRunner` — the projection (it rides on the notifier's consumer and
  transaction: ``gateways.notify.Notifier``'s riders) and :class:`Sender`, which claims
  pending rows (with a lease, so several notifiers may run), hands each to the channel, and
  marks it ``sent`` or retries it with backoff (``failed`` after :data:`MAX_ATTEMPTS`).
* Channels (``GRID_SMS_CHANNEL``): ``log`` (the default: a log line per message, the phone
  masked — an intranet without an SMS gateway loses nothing), ``webhook`` (POST JSON
  ``{id, to, text, case_no, kind}`` to ``GRID_SMS_WEBHOOK_URL``, signed like the
  notification webhooks: ``X-Grid-Signature: sha256=HMAC(secret, "<ts>.<body>")``, so the
  operator's SMS gateway — or a small adapter in front of it — can check it), or
  ``package.module:factory`` for an adapter of one's own (``factory(settings) -> Channel``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
import httpx
import orjson

from core.logging import get_logger
from core.messaging import drop_consumer
from core.settings import Settings
from gateways.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

if TYPE_CHECKING:
    from gateways.runtime import Runtime

log = get_logger("outbound")
MAX_ATTEMPTS = 6
LEASE_S = 60


@dataclass(frozen=True)
class Message:
    id: int
    to: str
    text: str
    case_no: str
    kind: str


class Channel(Protocol):
    """Sends one message; raises on failure (the sender retries)."""

    name: str

    async def send(self, message: Message) -> None: ...


def masked(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 7 else "****"


class LogChannel:
    """No SMS gateway: each message is a log line (phone masked); nothing is lost."""

    name = "log"

    async def send(self, message: Message) -> None:
        log.info("sms.logged", to=masked(message.to), case_no=message.case_no,
                 kind=message.kind, text=message.text)


class WebhookChannel:
    """POST the message as signed JSON to the operator's SMS gateway (or an adapter)."""

    name = "webhook"

    def __init__(self, url: str, secret: str, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    async def send(self, message: Message) -> None:
        body = orjson.dumps({"id": message.id, "to": message.to, "text": message.text,
                             "case_no": message.case_no, "kind": message.kind})
        stamp = str(int(time.time()))
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.post(self.url, content=body, headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self.secret, stamp, body),
                TIMESTAMP_HEADER: stamp,
            })
        if response.status_code >= 300:
            raise RuntimeError(f"SMS gateway answered {response.status_code}")


def channel_from(settings: Settings) -> Channel:
    """The channel ``GRID_SMS_CHANNEL`` names (refused at start-up when incomplete)."""
    name = settings.sms_channel.strip()
    if name == "log":
        return LogChannel()
    if name == "webhook":
        if not settings.sms_webhook_url or not settings.sms_webhook_secret:
            raise ValueError("GRID_SMS_CHANNEL=webhook needs GRID_SMS_WEBHOOK_URL and "
                             "GRID_SMS_WEBHOOK_SECRET")
        return WebhookChannel(settings.sms_webhook_url, settings.sms_webhook_secret)
    module, _, factory = name.partition(":")
    if not factory:
        raise ValueError(f"GRID_SMS_CHANNEL={name!r}: use log, webhook or module:factory")
    made: Channel = getattr(importlib.import_module(module), factory)(settings)
    return made


class Sender:
    """Claims pending messages and sends them through the channel."""

    def __init__(self, pool: asyncpg.Pool, channel: Channel, interval_s: float = 1.0) -> None:
        self.pool = pool
        self.channel = channel
        self.interval_s = interval_s
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.tick()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("sms.tick_failed", error=str(exc))
                sent = 0
            if sent:
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._either(stop), timeout=self.interval_s)

    async def _either(self, stop: asyncio.Event) -> None:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def tick(self, limit: int = 50) -> int:
        """Send what is due now; how many were handled."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "UPDATE outbound_messages SET next_attempt_at = now() + make_interval(secs => $2),"
                " attempts = attempts + 1 WHERE id IN (SELECT id FROM outbound_messages "
                "WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY id LIMIT $1 "
                "FOR UPDATE SKIP LOCKED) RETURNING id, to_phone, body, case_no, kind, attempts",
                limit, float(LEASE_S),
            )
        for r in rows:
            message = Message(r["id"], r["to_phone"], r["body"], r["case_no"], r["kind"])
            try:
                await self.channel.send(message)
            except Exception as exc:  # any failure of the channel: retry, then give up
                failed = r["attempts"] >= MAX_ATTEMPTS
                delay = min(3600.0, 5.0 * 2 ** (r["attempts"] - 1))
                async with self.pool.acquire() as conn:
                    await conn.execute(
                        "UPDATE outbound_messages SET status = $2, last_error = $3, "
                        "next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1",
                        r["id"], "failed" if failed else "pending", str(exc)[:500], delay,
                    )
                log.warning("sms.failed" if failed else "sms.retry", id=r["id"],
                            case_no=r["case_no"], channel=self.channel.name, error=str(exc))
                continue
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE outbound_messages SET status = 'sent', sent_at = now(), "
                    "channel = $2, last_error = NULL WHERE id = $1", r["id"], self.channel.name,
                )
        return len(rows)


class OutboundRunner:
    """The notifier role's part for reporters: the messages' read model (applied by the
    notifier's runner, :attr:`rider`) and the sender."""

    #: The durable consumer this part had before it rode on the notifier's (removed at start).
    OLD_CONSUMER = "outbound_reporter_sms"

    def __init__(self, runtime: Runtime) -> None:
        from projections.reporter_messages import ReporterMessages

        self.runtime = runtime
        self.projection = ReporterMessages(runtime.clock, runtime.settings.notify_max_age_s)
        self.sender = Sender(runtime.pool, channel_from(runtime.settings))

    @property
    def rider(self) -> tuple[Any, Any]:
        """What ``Notifier(riders=…)`` takes: the projection and its after-commit step."""
        return self.projection, self._applied

    def _applied(self) -> None:
        if self.projection.queued:
            self.sender.wake.set()

    async def _send(self, stop: asyncio.Event) -> None:
        # An upgraded box still has the consumer this part used before; nobody reads it.
        await drop_consumer(self.runtime.js, self.runtime.topo.events_stream, self.OLD_CONSUMER)
        await self.sender.run(stop)

    def tasks(self, stop: asyncio.Event) -> list[Any]:
        return [self._send(stop)]


async def setup(conn: asyncpg.Connection) -> None:
    from projections.reporter_messages import DDL

    await conn.execute(DDL)
