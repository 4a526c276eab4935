"""Retry timing: exponential backoff with full jitter, shared by every external call.

Why jitter: after a NATS or PostgreSQL restart every process retries at once; random spread
keeps them from hammering the recovering server in lock-step.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator


def backoff_delays(base: float = 0.1, cap: float = 5.0) -> Iterator[float]:
    """Endless delays: uniform in [0, min(cap, base·2^n)] for attempt n."""
    attempt = 0
    while True:
        yield random.uniform(0, min(cap, base * (2**attempt)))
        attempt = min(attempt + 1, 30)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when the process is asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
