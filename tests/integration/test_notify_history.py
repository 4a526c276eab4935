"""The notifier and history: a notifier that starts on a system with a past (a new durable
consumer, a reset position) writes the notification rows of old events but pushes nothing
live and sends no webhooks for them, and a webhook only ever receives events recorded after
it was registered. Real NATS, PostgreSQL and HTTP receivers; the notifier role is started
late on purpose, as on a system where it is first enabled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from structlog.testing import capture_logs

from core import codec
from core.clock import FixedClock
from core.messaging import connect
from gateways.bootstrap import ROLES, Runtime
from gateways.http.app import create_app
from tests.conftest import database_url, drop_everything, eventually, make_settings, nats_url
from tests.intake_support import Receiver, live_server, login
from tests.integration.test_notifications import collect_sse, dispatched_case

GRID = "520102001001"
DEPT = "D-520102-sanitation"


@contextlib.asynccontextmanager
async def system_without_notifier(
    clock: FixedClock, **settings: Any
) -> AsyncIterator[dict[str, Any]]:
    """Every role but the notifier (the test starts it with ``runtime.start(["notifier"])``),
    on an isolated stream prefix and schema, plus an HTTP client."""
    config = make_settings(**settings)
    runtime = await Runtime.open(config, nats_url(), database_url())
    runtime.clock = clock
    runtime.start([role for role in ROLES if role != "notifier"])
    transport = httpx.ASGITransport(app=create_app(runtime, clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        try:
            yield {"runtime": runtime, "client": client}
        finally:
            await runtime.close()
            await drop_everything(config)


@contextlib.asynccontextmanager
async def ntf_listener(runtime: Runtime) -> AsyncIterator[list[dict[str, Any]]]:
    """Every notification published on core NATS (``<root>.ntf.>``), from a connection of
    its own, in the order the notifier published them."""
    heard: list[dict[str, Any]] = []
    nc = await connect(nats_url(), "test-ntf-listener")

    async def on_msg(msg: Any) -> None:
        heard.append(codec.loads(msg.data))

    try:
        await nc.subscribe(f"{runtime.topo.subject_root}.ntf.>", cb=on_msg)
        await nc.flush()
        yield heard
    finally:
        await nc.close()


async def notification_rows(runtime: Runtime, kind: str = "new_dispatch") -> dict[str, bool]:
    """case number → ``live`` of the notifications of ``kind``."""
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT case_no, live FROM notifications WHERE kind = $1", kind)
    return {r["case_no"]: r["live"] for r in rows}


async def deliveries(runtime: Runtime) -> list[tuple[str, str, str]]:
    """(webhook id, case number, kind) of every webhook delivery, in creation order."""
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT d.webhook_id, n.case_no, d.kind FROM webhook_deliveries d "
            "JOIN notifications n ON n.id = d.notification_id ORDER BY d.id"
        )
    return [(r["webhook_id"], r["case_no"], r["kind"]) for r in rows]


def received(receiver: Receiver) -> list[str]:
    """Case numbers of the notifications a webhook receiver was sent, in order."""
    return [codec.loads(r["body"])["notification"]["case_no"] for r in receiver.requests]


async def _true(value: bool) -> bool:
    return value


def _cases(notifications: list[dict[str, Any]]) -> list[str]:
    return [n["case_no"] for n in notifications]


async def _rows_of(runtime: Runtime, case_nos: list[str]) -> dict[str, bool] | None:
    """The new-dispatch rows once those of all ``case_nos`` are there."""
    found = await notification_rows(runtime)
    return found if all(no in found for no in case_nos) else None


async def test_a_webhook_gets_only_events_recorded_after_it_was_registered(
    clock: FixedClock,
) -> None:
    async with system_without_notifier(clock) as system:
        client, runtime = system["client"], system["runtime"]
        admin = await login(client, "admin")
        inspector = await login(client, "inspector-520102001001")
        dispatcher = await login(client, "dispatcher")
        with Receiver() as early_receiver, Receiver() as late_receiver:
            early = await client.post(
                "/v1/webhooks",
                headers=admin,
                json={"url": early_receiver.url, "kinds": ["new_dispatch"]},
            )
            assert early.status_code == 201, early.text

            # Events stored while the notifier is not (yet) reading them ...
            before = await dispatched_case(client, inspector, dispatcher, "垃圾 before")
            # ... then, five minutes later (news still: well inside the 1 h default), a second
            # webhook is registered and the notifier starts.
            clock.advance(minutes=5)
            late = await client.post(
                "/v1/webhooks",
                headers=admin,
                json={"url": late_receiver.url, "kinds": ["new_dispatch"]},
            )
            assert late.status_code == 201, late.text
            early_id, late_id = early.json()["id"], late.json()["id"]
            async with ntf_listener(runtime) as heard:
                runtime.start(["notifier"])
                runtime.notifier.dispatcher.poll_s = 0.1
                # The earlier event's notification is written (a delivery row is written in
                # the same transaction, so what is there now is final for it) and pushed.
                await eventually(lambda: _true(before in _cases(heard)))
                assert (await notification_rows(runtime))[before] is True
                assert await deliveries(runtime) == [(early_id, before, "new_dispatch")]

                after = await dispatched_case(client, inspector, dispatcher, "垃圾 after")
                await eventually(lambda: _true(len(early_receiver.requests) >= 2))
                await eventually(lambda: _true(len(late_receiver.requests) >= 1))
                assert await deliveries(runtime) == [
                    (early_id, before, "new_dispatch"),
                    (early_id, after, "new_dispatch"),
                    (late_id, after, "new_dispatch"),
                ]
                assert sorted(received(early_receiver)) == sorted([before, after])
                assert received(late_receiver) == [after]  # no flood of what came before it
                assert _cases(heard) == [before, after]


async def test_a_notifier_started_on_old_history_lists_it_but_pushes_and_sends_only_news(
    clock: FixedClock,
) -> None:
    async with system_without_notifier(clock, GRID_NOTIFY_MAX_AGE_S=900) as system:
        client, runtime = system["client"], system["runtime"]
        admin = await login(client, "admin")
        inspector = await login(client, "inspector-520102001001")
        dispatcher = await login(client, "dispatcher")
        handler = await login(client, f"handler-{DEPT}")
        with Receiver() as receiver:
            # The webhook predates the history: only its age keeps it from being sent.
            hook = await client.post("/v1/webhooks", headers=admin, json={"url": receiver.url})
            assert hook.status_code == 201, hook.text
            hook_id = hook.json()["id"]
            old = [
                await dispatched_case(client, inspector, dispatcher, f"垃圾 old {i}")
                for i in range(2)
            ]
            # 20 minutes on, beyond GRID_NOTIFY_MAX_AGE_S=900 s (and within the 1 h default:
            # the setting is what makes them history), the notifier is enabled.
            clock.advance(minutes=20)
            with capture_logs() as logs:
                async with ntf_listener(runtime) as heard:
                    runtime.start(["notifier"])
                    runtime.notifier.dispatcher.poll_s = 0.1

                    # Rows for the audit trail, marked as not pushed, and no deliveries (they
                    # would have been written in the same transaction as the rows).
                    rows = await eventually(lambda: _rows_of(runtime, old))
                    assert {no: rows[no] for no in old} == {no: False for no in old}
                    assert await deliveries(runtime) == []

                    async with live_server(create_app(runtime, clock)) as base:
                        feed: list[dict[str, Any]] = []
                        stream = asyncio.create_task(
                            collect_sse(f"{base}/v1/notifications/stream?after=0", handler, feed)
                        )
                        try:
                            # A fresh event is news: pushed, listed live, and sent.
                            new = await dispatched_case(client, inspector, dispatcher, "垃圾 new")
                            await eventually(lambda: _true(new in _cases(heard)))
                            await eventually(lambda: _true(new in _cases(feed)))
                            await eventually(lambda: _true(len(receiver.requests) >= 1))
                        finally:
                            stream.cancel()
                            with contextlib.suppress(BaseException):
                                await stream

                    # NATS keeps one publisher's order: anything published for the history
                    # would have arrived before the fresh notice.
                    assert _cases(heard) == [new]
                    # The SSE replay (after=0) holds no history either, only the news.
                    assert _cases(feed) == [new]
                    assert await deliveries(runtime) == [(hook_id, new, "new_dispatch")]
                    assert received(receiver) == [new]
                    assert (await notification_rows(runtime))[new] is True

            # The list is complete (history included) for the department's handler.
            listed = await client.get("/v1/notifications", headers=handler)
            assert listed.status_code == 200
            assert sorted(_cases(listed.json()["items"])) == sorted([*old, new])

            summaries = [e for e in logs if e["event"] == "notify.history_not_pushed"]
            assert len(summaries) == 1, summaries
            [summary] = summaries
            assert summary["notifications"] == 2  # the two old dispatches
            assert summary["events"] >= 6  # reported, filed, dispatched × 2
            assert summary["max_age_s"] == 900
