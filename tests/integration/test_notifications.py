"""Notifications through the running system: a new dispatch, a re-check task, a returned
case and an approaching deadline reach the handler's and the inspector's live streams (SSE on
a real port) and go out as signed webhooks to a real HTTP receiver, retried after a failure,
with every attempt in the delivery log."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from gateways.http.app import create_app
from gateways.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.conftest import eventually
from tests.intake_support import Receiver, live_server, login, on_site

GRID = "520102001001"
DEPT = "D-520102-sanitation"
SECRET = "test-webhook-secret-0123456789"


async def collect_sse(
    url: str,
    headers: dict[str, str],
    into: list[dict[str, Any]],
    connected: asyncio.Event | None = None,
) -> None:
    """Read a text/event-stream and append each ``notification`` event's data; ``connected``
    is set at the stream's ``: connected`` comment (sent once its subscriptions are made)."""
    async with (
        httpx.AsyncClient(timeout=None) as http,
        http.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event, data = None, None
        async for line in response.aiter_lines():
            if line == ": connected" and connected is not None:
                connected.set()
            elif line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
            elif line == "" and event == "notification" and data:
                into.append(json.loads(data))
                event, data = None, None


async def act(client: Any, case_no: str, verb: str, headers: dict[str, str], **args: Any) -> None:
    response = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args, headers=headers)
    assert response.status_code == 200, (verb, response.text)


async def dispatched_case(
    client: httpx.AsyncClient, inspector: dict[str, str], dispatcher: dict[str, str], text: str
) -> str:
    """Report, file and dispatch a case; returns its number once the queue shows it
    dispatched (its events are stored and on the EVENTS stream)."""
    report = await client.post(
        "/v1/reports",
        headers=inspector,
        json={"category": "SJ0101", "grid": GRID, "description": text},
    )
    assert report.status_code == 202, report.text
    case_no: str = report.json()["case_no"]

    async def case_is(status: str) -> bool:
        r = await client.get(f"/v1/cases/{case_no}", headers=dispatcher)
        return r.status_code == 200 and r.json()["status"] == status

    await eventually(lambda: case_is("reported"))
    await act(client, case_no, "file", dispatcher)
    await act(
        client,
        case_no,
        "dispatch",
        dispatcher,
        department=DEPT,
        override_reason="區環衛局負責 district sanitation handles it",
    )
    await eventually(lambda: case_is("dispatched"))
    return case_no


async def test_live_stream_and_signed_retried_webhooks(system: dict[str, Any]) -> None:
    client, runtime, clock = system["client"], system["runtime"], system["clock"]
    admin = await login(client, "admin")
    inspector = await login(client, "inspector-520102001001")
    dispatcher = await login(client, "dispatcher")
    handler = await login(client, f"handler-{DEPT}")
    other_handler = await login(client, "handler-D-520102-municipal")
    runtime.notifier.dispatcher.base_delay_s = 0.2  # retries in tenths of seconds here
    runtime.notifier.dispatcher.poll_s = 0.1

    with Receiver(statuses=[500]) as receiver:
        # Only admins configure webhooks.
        hook_body = {"url": receiver.url, "kinds": ["new_dispatch"], "secret": SECRET}
        assert (
            await client.post("/v1/webhooks", json=hook_body, headers=dispatcher)
        ).status_code == 403
        bad = await client.post("/v1/webhooks", json={**hook_body, "url": "ftp://x"}, headers=admin)
        assert bad.status_code == 422
        created = await client.post("/v1/webhooks", json=hook_body, headers=admin)
        assert created.status_code == 201, created.text
        hook_id = created.json()["id"]

        handler_feed: list[dict[str, Any]] = []
        other_feed: list[dict[str, Any]] = []
        async with live_server(create_app(runtime, clock)) as base:
            subscribed = [asyncio.Event(), asyncio.Event()]
            streams = [
                asyncio.create_task(
                    collect_sse(f"{base}/v1/notifications/stream", handler, handler_feed,
                                subscribed[0])
                ),
                asyncio.create_task(
                    collect_sse(f"{base}/v1/notifications/stream", other_handler, other_feed,
                                subscribed[1])
                ),
            ]
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(e.wait() for e in subscribed)), timeout=20
                )  # both streams subscribed
                case_no = await dispatched_case(client, inspector, dispatcher, "垃圾 garbage")

                # Live: the handler of that department sees it at once, another does not.
                async def got(feed: list[dict[str, Any]], kind: str) -> Any:
                    return next((n for n in feed if n["kind"] == kind), None)

                new = await eventually(lambda: got(handler_feed, "new_dispatch"))
                assert new["case_no"] == case_no and new["audience"] == [f"dept.{DEPT}"]
                assert new["title"].startswith("新派遣")

                # Webhook: the first attempt gets 500, the retry 200; both are signed.
                await eventually(lambda: _true(len(receiver.requests) >= 2), timeout=20)
                first, second = receiver.requests[:2]
                assert (first["status"], second["status"]) == (500, 200)
                for request in (first, second):
                    headers = {k.lower(): v for k, v in request["headers"].items()}
                    assert verify_signature(
                        SECRET,
                        headers[TIMESTAMP_HEADER.lower()],
                        request["body"],
                        headers[SIGNATURE_HEADER.lower()],
                    )
                    assert headers["x-grid-event"] == "new_dispatch"
                    assert not verify_signature(
                        "wrong-secret-wrong-secret",
                        headers[TIMESTAMP_HEADER.lower()],
                        request["body"],
                        headers[SIGNATURE_HEADER.lower()],
                    )
                payload = json.loads(second["body"])
                assert payload["attempt"] == 2
                assert payload["notification"]["case_no"] == case_no
                assert json.loads(first["body"])["delivery_id"] == payload["delivery_id"]

                async def logged() -> Any:
                    r = await client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=admin)
                    items = r.json()["items"]
                    return items if items and items[0]["status"] == "delivered" else None

                [delivery] = await eventually(logged)
                assert delivery["attempts"] == 2 and delivery["last_status_code"] == 200
                assert [a["status_code"] for a in delivery["log"]] == [500, 200]
                assert "HTTP 500" in delivery["log"][0]["error"]
                assert delivery["case_no"] == case_no

                # Re-check task (核查) reaches the grid's inspector.
                clock.advance(minutes=5)
                await act(client, case_no, "accept", handler)
                clock.advance(minutes=30)
                await act(client, case_no, "report_result", handler, note="已清運 cleared")

                async def mine(headers: dict[str, str], kind: str) -> Any:
                    r = await client.get("/v1/notifications", headers=headers)
                    return next((n for n in r.json()["items"] if n["kind"] == kind), None)

                task = await eventually(lambda: mine(inspector, "recheck_task"))
                assert task["case_no"] == case_no and task["audience"] == [f"grid.{GRID}"]

                # A failed check returns the case to the department (返工), live.
                clock.advance(minutes=30)
                await act(client, case_no, "verify_fail", inspector, note="仍有垃圾 still dirty",
                          **await on_site(client, case_no, inspector))
                returned = await eventually(lambda: got(handler_feed, "returned"))
                assert "返工" in returned["body"]

                # The handling deadline comes near (黃燈) and passes: the department hears.
                clock.advance(days=30)
                assert runtime.watcher is not None
                await runtime.watcher.tick()
                await eventually(lambda: got(handler_feed, "deadline_approaching"))
                await eventually(lambda: got(handler_feed, "overdue"))
                assert other_feed == []  # another department heard nothing

                # The stream replays what a reconnecting page missed (Last-Event-ID).
                replay: list[dict[str, Any]] = []
                first_id = handler_feed[0]["id"]
                again = asyncio.create_task(
                    collect_sse(
                        f"{base}/v1/notifications/stream",
                        {**handler, "Last-Event-ID": str(first_id)},
                        replay,
                    )
                )
                streams.append(again)
                await eventually(lambda: _true(len(replay) >= len(handler_feed) - 1))
                assert [n["id"] for n in replay][: len(handler_feed) - 1] == [
                    n["id"] for n in handler_feed[1:]
                ]
                # Only the webhook's kinds were delivered (no re-check / rework calls).
                assert {
                    json.loads(r["body"])["notification"]["kind"] for r in receiver.requests
                } == {"new_dispatch"}
                unauth = await client.get("/v1/notifications")
                assert unauth.status_code == 401
            finally:
                for stream in streams:
                    stream.cancel()
                    with contextlib.suppress(BaseException):
                        await stream
        gone = await client.delete(f"/v1/webhooks/{hook_id}", headers=admin)
        assert gone.status_code == 200 and gone.json()["active"] is False


async def _true(value: bool) -> bool:
    return value
