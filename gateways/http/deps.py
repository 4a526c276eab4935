"""FastAPI dependencies: the process runtime and the clock, from ``app.state``."""

from __future__ import annotations

from fastapi import Request

from core.clock import Clock
from gateways.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock
