"""The faster pipeline parts against the real servers: the event store's batch insert and
transcoder (core/eventstore.py) and the pull fetch (core/pull.py).

Why: both replace library code on the path every report takes; these pin the behaviour the
rest of the system relies on — ids in event order, a conflicting batch refused as a whole
(exactly-once storage), rows readable by eventsourcing, the relay's decoder and the auditors'
stdlib mapper; and a fetch that returns what is there, in order, without losing leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats
import psycopg
import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from aggregates.actions.fields import NoteArgs, Reporter
from aggregates.actions.intake import ReportArgs
from aggregates.case import Case, verify_chain
from aggregates.registry import Context
from core.envelope import envelope_from_stored, to_envelope
from core.eventstore import FastRecorder, FastTranscoder, StoreRegistry
from core.pull import _OPEN, fetch
from core.refdata import load_reference
from core.settings import Settings
from tests.conftest import database_url, nats_url

T = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)


REF = load_reference(Settings())


def _report(n: int, case_id: uuid.UUID | None = None, description: str | None = None) -> Case:
    args = ReportArgs(
        category="SJ0101", grid="520102001001", community="520102001", district="520102",
        description=description or f"井蓋 {n} \"破損\"\n", source="api",
        reporter=Reporter(name="張三", type="citizen"), lat=26.5 + n / 1000, lon=106.7,
    )
    ctx = Context("u1", "call_taker", "test", T + timedelta(seconds=n), f"k{n}", REF)
    return Case.create(case_id or uuid.uuid4(), f"GD-TEST-0000-{n:04d}", args, ctx)


@pytest.fixture
def stores() -> Iterator[StoreRegistry]:
    schema = f"fp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    registry = StoreRegistry(database_url(), schema)
    yield registry
    registry.close()
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_batch_insert_ids_order_conflicts_and_readers(stores: StoreRegistry) -> None:
    store = stores.get("520102")
    assert isinstance(store.recorder, FastRecorder)
    assert isinstance(store.mapper.transcoder, FastTranscoder)
    cases = [_report(n) for n in range(50)]
    for case in cases[:10]:
        ctx = Context("d1", "dispatcher", "test", T + timedelta(minutes=5),
                      f"f{case.state.case_no}", REF)
        case.execute("file", NoteArgs(), ctx)
    recordings = store.save(*cases)
    ids = [r.notification.id for r in recordings]
    assert ids == sorted(ids) and len(set(ids)) == 60

    # The log in notification order is the events in the order they were saved.
    notifications = store.recorder.select_notifications(start=0, limit=100)
    events = [r.domain_event for r in recordings]
    expected = [(e.originator_id, e.originator_version) for e in events]
    assert [(n.originator_id, n.originator_version) for n in notifications] == expected

    # Readers: eventsourcing's repository, the auditors' stdlib mapper, the relay's decoder.
    stdlib = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        stdlib.register(transcoding)
    mapper: Mapper[uuid.UUID] = Mapper(transcoder=stdlib)
    for n in notifications:
        event = mapper.to_domain_event(n)
        fast = envelope_from_stored("520102", n.id, n.originator_id, n.originator_version,
                                    n.topic, n.state)
        assert fast == to_envelope("520102", n.id, event)
    for case in cases[:10]:
        copy: Case = store.repository.get(case.id)
        assert copy.snapshot_dict() == case.snapshot_dict()
        events = [mapper.to_domain_event(s) for s in store.recorder.select_events(case.id)]
        assert verify_chain(events) is None

    # A batch with one conflicting event is refused as a whole: nothing of it is stored.
    again = _report(99)
    clash = _report(98)
    store.save(clash)
    duplicate = _report(98, case_id=clash.id, description="x")
    with pytest.raises(IntegrityError):
        store.save(again, duplicate)
    assert store.recorder.select_events(again.id) == []
    assert store.recorder.max_notification_id() == 61


async def test_fetch_returns_what_is_there_in_order() -> None:
    nc = await nats.connect(nats_url())
    js = nc.jetstream()
    name = f"FP{uuid.uuid4().hex[:8].upper()}"
    subject = name.lower()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{subject}.>"]))
    try:
        sub = await js.pull_subscribe(
            f"{subject}.>", durable="d", stream=name,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
        )
        with pytest.raises(NatsTimeout):  # nothing there: times out like nats-py
            await fetch(sub, 10, 0.3)

        for i in range(25):
            await js.publish(f"{subject}.x", str(i).encode(), headers={"Nats-Msg-Id": str(i)})
        first = await fetch(sub, 10, 1.0)
        second = await fetch(sub, 100, 1.0)
        seen = [int(m.data) for m in first + second]
        assert [int(m.data) for m in first] == list(range(10))
        assert seen == list(range(25))
        for m in first + second:
            await m.ack()

        # A waiting fetch returns as soon as something arrives (not after the timeout) …
        async def later() -> None:
            await asyncio.sleep(0.2)
            for i in range(25, 30):
                await js.publish(f"{subject}.x", str(i).encode())

        task = asyncio.create_task(later())
        started = asyncio.get_running_loop().time()
        got = await fetch(sub, 100, 3.0)
        assert asyncio.get_running_loop().time() - started < 2.0
        await task
        # … and what its request still brings is taken by the next fetch, in order.
        await asyncio.sleep(0.2)
        got += await fetch(sub, 100, 1.0)
        assert [int(m.data) for m in got] == list(range(25, 30))
        for m in got:
            await m.ack()
        info = await js.consumer_info(name, "d")
        assert info.num_pending == 0
    finally:
        await js.delete_stream(name)
        await nc.close()


@contextlib.asynccontextmanager
async def _watched_pull(prefix: str) -> AsyncIterator[tuple[Any, Any, str, list[bytes]]]:
    """A fresh stream with a durable pull consumer on it, and the body of every pull request
    sent for that consumer (seen by a second connection): (jetstream, subscription, subject
    prefix, requests)."""
    nc = await nats.connect(nats_url())
    watcher = await nats.connect(nats_url())
    js = nc.jetstream()
    name = f"{prefix}{uuid.uuid4().hex[:8].upper()}"
    subject = name.lower()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{subject}.>"]))
    requests: list[bytes] = []

    async def count(msg: Msg) -> None:
        requests.append(msg.data)

    await watcher.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{name}.d", cb=count)
    await watcher.flush()
    try:
        sub = await js.pull_subscribe(
            f"{subject}.>", durable="d", stream=name,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
        )
        yield js, sub, subject, requests
        await watcher.flush()
    finally:
        await js.delete_stream(name)
        await nc.close()
        await watcher.close()


async def test_a_trickle_reuses_one_waiting_request() -> None:
    """One message at a time, each fetched as it comes: the waiting pull request sent for the
    first is reused for the rest (no request, no status per message). A status ending the
    ``no_wait`` request once discarded every waiting request after its first delivery."""
    async with _watched_pull("FT") as (js, sub, subject, requests):
        received = []
        for i in range(12):
            pending = asyncio.create_task(fetch(sub, 100, 5.0))
            await asyncio.sleep(0.02)  # the fetch is waiting when the message comes
            await js.publish(f"{subject}.x", str(i).encode())
            msgs = await pending
            for m in msgs:
                await m.ack()
            received += [int(m.data) for m in msgs]
    assert received == list(range(12))
    # The first fetch: one no_wait request and one waiting request; then none.
    assert len(requests) <= 3, requests


async def test_an_expiring_request_is_replaced_once() -> None:
    """A trickle slower than the fetch timeout: each waiting request lives until its 408, then
    ONE new one is sent. (Left just before its expiry, a request's late 408 ended the next
    request too, and so on: a pair of requests per message instead of per expiry.)"""
    sent, timeout = 24, 0.3
    async with _watched_pull("FX") as (js, sub, subject, requests):

        async def trickle() -> None:
            for i in range(sent):
                await js.publish(f"{subject}.x", str(i).encode())
                await asyncio.sleep(0.07)

        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.create_task(trickle())
        received: list[int] = []
        while len(received) < sent:
            try:
                msgs = await fetch(sub, 100, timeout)
            except NatsTimeout:
                continue
            for m in msgs:
                await m.ack()
            received += [int(m.data) for m in msgs]
        await task
        elapsed = loop.time() - started
    assert received == list(range(sent))
    waiting = [r for r in requests if b"expires" in r]
    # One waiting request per expiry (each lives ``timeout``), and one to begin with; a
    # loaded machine only makes fetches later, which cannot add requests.
    assert len(waiting) <= elapsed / timeout + 2, (len(waiting), elapsed)


async def test_a_linger_that_outlives_the_request_forgets_it() -> None:
    """The waiting request expires while the stage lingers: its 408, queued meanwhile, ends
    it, so the next fetch asks anew at once. (Taken as a stale status, it left the request
    recorded as open, and the next fetch waited on a request the server had ended — a
    stall of the grace period for whatever arrived meanwhile.)"""
    async with _watched_pull("FL") as (js, sub, subject, _requests):
        pending = asyncio.create_task(fetch(sub, 100, 0.3, linger=0.5))
        await asyncio.sleep(0.05)
        await js.publish(f"{subject}.x", b"0")
        first = await pending  # the linger outlived the request (expires 0.3 s after it)
        assert [m.data for m in first] == [b"0"]
        assert getattr(sub, _OPEN) is None
        await js.publish(f"{subject}.x", b"1")
        second = await fetch(sub, 100, 2.0)
        assert [m.data for m in second] == [b"1"]
        for m in first + second:
            await m.ack()


async def test_event_log_reader_matches_eventsourcing(stores: StoreRegistry) -> None:
    """``core.eventlog`` (asyncpg, every reader's path) gives the envelopes eventsourcing's own
    ``select_notifications`` gives, and bounds the range both ways."""
    from core import eventlog
    from core.envelope import envelope_from_stored
    from tests.unit.casekit import report

    store = stores.get("520103")
    store.save(*[report(when=n, description=f'井蓋 {n} "破損"\n') for n in range(30)])
    conn = await asyncpg.connect(database_url(), server_settings={"search_path": stores.schema})
    try:
        fast = await eventlog.read_envelopes(conn, "520103", 5, 20)
        bounded = await eventlog.read_envelopes(conn, "520103", 5, 20, upto=10)
        elsewhere = await asyncpg.connect(database_url())  # search_path: public
        try:
            qualified = await eventlog.read_envelopes(
                elsewhere, "520103", 5, 20, schema=stores.schema
            )
            head = await eventlog.head(elsewhere, "520103", stores.schema)
            missing = await eventlog.head(elsewhere, "999999", stores.schema)
        finally:
            await elsewhere.close()
    finally:
        await conn.close()
    notifications = await asyncio.to_thread(
        store.recorder.select_notifications, start=5, limit=20, inclusive_of_start=False
    )
    slow = [
        envelope_from_stored("520103", n.id, n.originator_id, n.originator_version, n.topic,
                             n.state)
        for n in notifications
    ]
    assert [e["position"] for e in bounded] == list(range(6, 11))
    assert qualified == fast and head == 30 and missing == 0
    assert fast == slow and [e["position"] for e in fast] == list(range(6, 26))


async def test_existing_cases_asked_together(stores: StoreRegistry) -> None:
    """``eventlog.ExistingCases``: concurrent callers get exactly their own answer, asked in
    fewer queries than callers; a database error reaches every caller waiting on it."""
    from core import eventlog
    from tests.unit.casekit import report

    store = stores.get("520104")
    stored = [report(when=n) for n in range(10)]
    store.save(*stored)
    pool = await asyncpg.create_pool(
        database_url(), min_size=1, max_size=2, server_settings={"search_path": stores.schema}
    )
    try:
        lookup = eventlog.ExistingCases(pool)
        known = [str(c.id) for c in stored]
        asks = [[known[n % 10], str(uuid.uuid4())] for n in range(40)]
        answers = await asyncio.gather(*(lookup.ask("520104", ids) for ids in asks))
        assert answers == [{ids[0]} for ids in asks]
        assert 1 <= lookup.queries < len(asks)  # the first alone, the rest together
        alone = await lookup.ask("520104", [str(uuid.uuid4())])
        assert alone == set()
        # A partition without a table: every waiting caller gets the database's error.
        outcomes = await asyncio.gather(
            *(lookup.ask("999999", [known[0]]) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, asyncpg.UndefinedTableError) for o in outcomes), outcomes
        assert await lookup.ask("520104", known[:2]) == set(known[:2])  # still usable
    finally:
        await pool.close()
