"""The relay's publish keeps its once-and-in-order check whatever the batch's size: a batch of
one event goes out as a plain publish (no batch headers: nats-server's atomic batch of one
cost it 2.0–2.6 ms of CPU against 0.34–0.39 ms), still refused when the partition's last
sequence is not the one expected; a bigger batch stays one atomic batch.

On an embedded nats-server of this project's build (atomic batches need ≥ 2.12; the shared
test server may be older), on a free port, removed afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext

from core.embedded import EmbeddedNats, free_port
from core.messaging import Topology, ensure_streams
from gateways.relay import Relay, StreamConflict
from tests.conftest import unique_name

PARTITION = "520102"


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[Relay, JetStreamContext, Topology]]:
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    await asyncio.to_thread(server.start)
    topo = Topology(unique_name("RP").upper())
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, topo)
        info = await js.stream_info(topo.events_stream)
        assert info.config.allow_atomic, "this nats-server has no atomic batches"
        # Only what publishing needs: the stream context and the names.
        publisher = Relay(stores=None, partitions=[PARTITION], js=js,  # type: ignore[arg-type]
                          topo=topo, pool=None)  # type: ignore[arg-type]
        yield publisher, js, topo
    finally:
        await nc.close()
        await asyncio.to_thread(server.stop)


def envelope(position: int) -> dict[str, Any]:
    return {"partition": PARTITION, "position": position, "type": "Reported",
            "case_id": "00000000-0000-0000-0000-000000000001", "data": {"n": position}}


async def stored(js: JetStreamContext, topo: Topology, seq: int) -> Any:
    return await js.get_msg(topo.events_stream, seq)


async def test_one_event_is_a_plain_publish_that_still_expects_the_last_sequence(
    relay: tuple[Relay, JetStreamContext, Topology],
) -> None:
    publisher, js, topo = relay
    seq = await publisher._publish_atomic(PARTITION, [envelope(1)], {1: "c1"}, 0)
    msg = await stored(js, topo, seq)
    assert msg.headers is not None
    assert msg.headers["Grid-Position"] == f"{PARTITION}:1"
    assert msg.headers["Grid-Log-Chain"] == "c1"
    assert not any(h.startswith("Nats-Batch") for h in msg.headers)
    # The same event again, expecting the sequence before it (a relay that crashed before
    # recording its position): refused, not stored twice.
    with pytest.raises(StreamConflict):
        await publisher._publish_atomic(PARTITION, [envelope(1)], {}, 0)
    info = await js.stream_info(topo.events_stream)
    assert info.state.messages == 1
    # The next event after the right sequence is stored.
    assert await publisher._publish_atomic(PARTITION, [envelope(2)], {}, seq) == seq + 1


async def test_a_batch_is_atomic_and_refused_whole(
    relay: tuple[Relay, JetStreamContext, Topology],
) -> None:
    publisher, js, topo = relay
    first = await publisher._publish_atomic(PARTITION, [envelope(1)], {}, 0)
    last = await publisher._publish_atomic(
        PARTITION, [envelope(2), envelope(3), envelope(4)], {}, first)
    assert last == first + 3
    msg = await stored(js, topo, last)
    assert msg.headers is not None and msg.headers["Grid-Position"] == f"{PARTITION}:4"
    with pytest.raises(StreamConflict):  # expecting an old sequence: none of it is stored
        await publisher._publish_atomic(PARTITION, [envelope(5), envelope(6)], {}, first)
    info = await js.stream_info(topo.events_stream)
    assert info.state.messages == 4
