"""The relay publishes a new event when the store's NOTIFY arrives, not at its next poll:
with the safety-net poll set to a minute, a report still becomes visible at once — and the
relay reads only the partition that notified, not every partition."""

from __future__ import annotations

from typing import Any

import pytest

from gateways import relay as relay_module
from tests.conftest import auth_headers, eventually
from tests.integration.test_flow import first_grid, get_case, report_body


async def test_relay_wakes_on_the_stores_notify(
    system: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, runtime = system["client"], system["runtime"]
    monkeypatch.setattr(relay_module, "IDLE_POLL_S", 60.0)
    relay = runtime.relay
    # Listening on every partition's channel (the relay set it up on its first idle wait).
    await eventually(lambda: _true(relay._listener is not None), timeout=10)
    # End the wait that started with the short poll: the next one lasts a minute, so only a
    # NOTIFY can wake the relay in time (it clears ``wake`` before each pump).
    relay.wake.set()
    await eventually(lambda: _true(not relay.wake.is_set()), timeout=10)
    pumped: list[str] = []
    notified: list[str] = []
    pump, notify = relay.pump, relay._notified

    async def counted(partition: str) -> int:
        pumped.append(partition)
        return await pump(partition)

    def heard(conn: Any, pid: int, channel: str, payload: str) -> None:
        notified.append(relay._by_channel.get(channel, channel))
        notify(conn, pid, channel, payload)

    monkeypatch.setattr(relay, "pump", counted)
    monkeypatch.setattr(relay, "_notified", heard)
    await relay._listen()  # listening again, through the recording callback
    grid = await first_grid(system)
    category = runtime.ref.catalogue.all()[0].code
    response = await client.post(
        "/v1/reports",
        json=report_body(category=category, grid=grid.code),
        headers={**await auth_headers(client, "call_taker"), "Idempotency-Key": "wake-key-0001"},
    )
    assert response.status_code == 202, response.text
    # Visible within 20 s (generous for a loaded machine), far sooner than the next poll.
    case = await eventually(lambda: get_case(client, response.json()["case_no"]), timeout=20)
    assert case["status"] == "reported"
    assert len(relay.partitions) > 1
    # Only partitions that notified are read (the watcher may write to another meanwhile);
    # before, every NOTIFY read all of them.
    assert pumped and set(pumped) <= set(notified), (pumped, notified)


async def _true(value: bool) -> bool:
    return value
