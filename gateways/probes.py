"""``/healthz`` and ``/readyz`` for the roles that serve no HTTP (worker, relay, projector,
watcher, notifier), so an orchestrator can probe them like the gateway.

Started by ``Runtime.start`` (gateways/bootstrap.py) when ``GRID_HEALTH_PORT`` is set (the
deployments in deploy/ set it; ``gridctl up`` and tests do not). A few lines of asyncio
instead of a second ASGI app: the probe must stay cheap and must not pull the HTTP stack into
a worker process.

- ``GET /healthz`` → 200 while the event loop answers (liveness);
- ``GET /readyz`` → 200 when NATS is connected, PostgreSQL answers and every started role's
  task is alive, else 503 — the same checks as the gateway's ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg
from nats.aio.client import Client

from core import codec
from core.logging import get_logger

if TYPE_CHECKING:
    from gateways.runtime import Runtime

log = get_logger("probes")


async def readiness(
    nc: Client, pool: asyncpg.Pool, roles_alive: Callable[[], bool]
) -> dict[str, Any]:
    """The checks of ``/readyz`` (also what the gateway's endpoint reports): NATS connected,
    a bounded ``SELECT 1``, and ``roles_alive()`` (``Runtime.consumers_ready``)."""
    checks: dict[str, bool] = {"nats": bool(nc.is_connected)}
    try:
        async with pool.acquire(timeout=2) as conn:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=2)
        checks["postgres"] = True
    except Exception:
        checks["postgres"] = False
    checks["consumers"] = roles_alive()
    return {"ready": all(checks.values()), "checks": checks}


async def _handle(
    runtime: Runtime, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        request = await asyncio.wait_for(reader.readline(), timeout=5)
        parts = request.decode("latin-1").split()
        path = parts[1].split("?")[0] if len(parts) >= 2 else ""
        # Drain the headers (probes send a handful); the body of a GET is empty.
        while (line := await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b""):
            del line
        if path == "/healthz":
            status, body = 200, {"status": "ok"}
        elif path == "/readyz":
            body = await readiness(runtime.nc, runtime.pool, runtime.consumers_ready)
            status = 200 if body["ready"] else 503
        else:
            status, body = 404, {"error": "not_found"}
        payload = codec.dumps(body)
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve_probes(runtime: Runtime, host: str, port: int, stop: asyncio.Event) -> None:
    """Answer probes on ``host:port`` until ``stop``."""
    server = await asyncio.start_server(lambda r, w: _handle(runtime, r, w), host, port)
    log.info("probes.listening", host=host, port=port)
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
