"""Running the long-lived processes on uvloop when it is installed.

uvloop's event loop (libuv, in C) roughly halves the per-message cost of asyncio's pure-Python
selector loop for our socket-heavy roles (HTTP, NATS, asyncpg). It is an optional speed-up:
without it (e.g. on Windows) the standard loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop (if available)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
