"""Liveness, readiness and Prometheus metrics.

``/readyz`` turns false while NATS or PostgreSQL is unreachable, so a load balancer stops
sending reports to a gateway that could not queue them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateways.http.deps import get_runtime
from gateways.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    checks: dict[str, Any] = {"nats": runtime.nc.is_connected}
    try:
        async with runtime.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        checks["postgres"] = True
    except Exception:
        checks["postgres"] = False
    checks["consumers"] = runtime.consumers_ready()
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
