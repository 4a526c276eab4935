"""FastAPI dependencies: the process runtime and the clock, from ``app.state``.

They are ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, and
that hop cost more than the lookup itself on every request."""

from __future__ import annotations

from fastapi import Request

from core.clock import Clock
from gateways.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock
