"""Text messages to reporters: the rule (filed, closed, return visit due; citizens with a
phone only), and the sender on real PostgreSQL through the webhook channel to a real HTTP
receiver — signed, retried after a failure, marked sent. (The log-only default, end to end
through a running system, is checked in tests/integration/test_return_visits.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from aggregates.notices import reporter_notices
from aggregates.visits import VisitRule
from core.db import create_pool
from core.settings import Settings
from gateways import outbound
from gateways.notify import verify_signature
from tests.conftest import database_url, unique_name
from tests.intake_support import Receiver

CASE = {"case_no": "GD-AAAA-BBBB-CCCC", "source": "hotline", "reporter_type": "citizen",
        "reporter_phone": "13700001234"}


def _kinds(etype: str, case: dict[str, Any], rule: VisitRule | None = None) -> list[str]:
    env = {"type": etype, "data": {}}
    return [n.kind for n in reporter_notices(env, case, rule or VisitRule())]


def test_who_gets_which_message() -> None:
    assert _kinds("Filed", CASE) == ["filed"]
    assert _kinds("Closed", CASE) == ["closed", "return_visit_due"]
    assert _kinds("Dispatched", CASE) == [] and _kinds("Supervised", CASE) == []
    assert _kinds("Closed", {**CASE, "reporter_phone": None}) == []  # nobody to text
    assert _kinds("Filed", {**CASE, "reporter_type": "inspector"}) == []  # staff's own report
    # A city that visits only hotline cases: an API case with a phone is closed, not visited.
    hotline_only = VisitRule.parse("hotline")
    assert _kinds("Closed", {**CASE, "source": "api"}, hotline_only) == ["closed"]
    (filed,) = reporter_notices({"type": "Filed", "data": {}}, CASE, VisitRule())
    assert "GD-AAAA-BBBB-CCCC" in filed.body and "13700001234" not in filed.body


def test_channels_from_settings() -> None:
    assert isinstance(outbound.channel_from(Settings(GRID_SMS_CHANNEL="log")),
                      outbound.LogChannel)
    with pytest.raises(ValueError, match="GRID_SMS_WEBHOOK_URL"):
        outbound.channel_from(Settings(GRID_SMS_CHANNEL="webhook"))
    custom = outbound.channel_from(
        Settings(GRID_SMS_CHANNEL="tests.integration.test_reporter_messages:made"))
    assert custom.name == "custom"
    assert outbound.masked("13700001234") == "137****1234"


class _Custom:
    name = "custom"

    async def send(self, message: outbound.Message) -> None:
        pass


def made(_: Settings) -> _Custom:
    return _Custom()


async def test_webhook_channel_signed_retried_then_sent() -> None:
    schema = unique_name("t_sms_")
    pool = await create_pool(database_url(), schema, max_size=2)
    try:
        async with pool.acquire() as conn:
            await outbound.setup(conn)
            await conn.execute(
                "INSERT INTO outbound_messages (case_id, case_no, kind, to_phone, body, at, "
                "partition, position) VALUES (gen_random_uuid(), 'GD-AAAA-BBBB-CCCC', 'closed',"
                " '13700001234', '【12319】已办结', $1, '520102', 7)", datetime.now(UTC))
        with Receiver(statuses=[503]) as receiver:
            sender = outbound.Sender(pool, outbound.WebhookChannel(receiver.url, "s3cret"))
            assert await sender.tick() == 1  # the gateway answered 503: retried later
            async with pool.acquire() as conn:
                row = await conn.fetchrow("SELECT * FROM outbound_messages")
                assert (row["status"], row["attempts"]) == ("pending", 1)
                assert "503" in row["last_error"] and row["next_attempt_at"] > datetime.now(UTC)
                assert await sender.tick() == 0  # not due yet
                await conn.execute("UPDATE outbound_messages SET next_attempt_at = now()")
            assert await sender.tick() == 1
            async with pool.acquire() as conn:
                row = await conn.fetchrow("SELECT * FROM outbound_messages")
            assert (row["status"], row["channel"], row["attempts"]) == ("sent", "webhook", 2)
            last = receiver.requests[-1]
            body = json.loads(last["body"])
            assert body == {"id": row["id"], "to": "13700001234", "text": "【12319】已办结",
                            "case_no": "GD-AAAA-BBBB-CCCC", "kind": "closed"}
            headers = {k.lower(): v for k, v in last["headers"].items()}
            assert verify_signature("s3cret", headers["x-grid-timestamp"], last["body"],
                                    headers["x-grid-signature"])
    finally:
        await pool.close()
        conn2 = await asyncpg.connect(database_url())
        try:
            await conn2.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn2.close()


def test_a_typo_in_the_settings_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="GRID_RETURN_VISITS"):
        VisitRule.parse("hotline,phnoe")
    with pytest.raises(ValueError, match="GRID_SMS_CHANNEL"):
        outbound.channel_from(Settings(GRID_SMS_CHANNEL="carrier-pigeon"))


async def test_projector_and_notifier_in_one_process_share_one_consumer(
    system: dict[str, Any],
) -> None:
    """``Runtime.start`` with both roles (as ``gridctl up``'s ``projector,notifier`` process):
    ONE durable consumer on the events stream feeds the case queue, the notifications and
    the reporters' texts, each exactly once by its own position."""
    from tests.conftest import auth_headers, eventually

    client, runtime = system["client"], system["runtime"]
    headers = await auth_headers(client, "call_taker")
    grid = sorted(runtime.ref.jurisdiction.grids)[0]
    answer = await client.post("/v1/reports", headers=headers, json={
        "category": "SJ0101", "grid": grid, "description": "井盖缺失", "source": "hotline",
        "reporter": {"name": "王", "phone": "13700001234", "type": "citizen"},
    })
    assert answer.status_code == 202, answer.text
    case_no = answer.json()["case_no"]

    async def everywhere() -> bool:
        async with runtime.pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT (SELECT count(*) FROM case_queue WHERE case_no = $1) "
                "+ (SELECT count(*) FROM notify_cases WHERE case_no = $1) "
                "+ (SELECT count(*) FROM reporter_contacts WHERE case_no = $1)", case_no)
        return found == 3

    await eventually(everywhere)
    consumers = await runtime.js.consumers_info(runtime.topo.events_stream)
    readers = sorted(c.name for c in consumers if c.config.durable_name)
    assert readers == ["proj_queue_timeline_map_metrics"], readers
    async with runtime.pool.acquire() as conn:
        positions = {r["projection"] for r in await conn.fetch(
            "SELECT projection FROM projection_positions")}
    assert {"queue", "timeline", "map", "metrics", "notify", "reporter_sms"} <= positions
