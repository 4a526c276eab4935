"""Work spread over plain child processes: ``python -m <module>``, the job on stdin, the answer
on stdout.

Why not multiprocessing: a spawned pool worker imports the parent's ``__main__`` before its
first job — for ``gridctl`` the whole CLI, about a second on this 2-core box — which cost more
than the work it was started for (measured for the rebuild's folds: two workers folded
67,691 events more slowly than one process; for the bulk loader, a second per worker in a
load of a few seconds). A child started here imports the module it runs and nothing else.
The job goes in on stdin, not on the command line: it may hold a database URL with a
password. The child reads the code of this checkout (PYTHONPATH), whatever is installed.

Used by the fast rebuild (``projections.bulk``) and the bulk loader (``benchmarks.bulk_load``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: The checkout's root: children find its packages first, as the parent did.
ROOT = Path(__file__).resolve().parent.parent


def share_out(items: Sequence[T], processes: int, size: Callable[[T], int]) -> list[list[T]]:
    """``items`` dealt to at most ``processes`` children, biggest first to the least loaded,
    so that they finish at about the same time (no share is empty)."""
    shares: list[list[T]] = [[] for _ in range(min(processes, len(items)))]
    loads = [0] * len(shares)
    for item in sorted(items, key=lambda i: -size(i)):
        least = loads.index(min(loads))
        shares[least].append(item)
        loads[least] += size(item)
    return shares


async def run_child(module: str, job: bytes, what: str) -> bytes:
    """Run ``python -m module`` with ``job`` on its stdin; its stdout when it exits 0.

    A child that fails raises RuntimeError naming ``what`` with the last lines of its
    stderr; a cancelled caller kills its child and waits for it (none is left behind)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT),
    )
    try:
        out, err = await child.communicate(job)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        raise
    if child.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{what} failed ({child.returncode}): {' / '.join(tail)}")
    return out


async def run_all(module: str, jobs: Sequence[bytes], what: str) -> list[bytes]:
    """:func:`run_child` for each job, all at once; if one fails (or the caller is
    cancelled) the others are stopped, not left running, and the failure is raised."""
    children = [asyncio.ensure_future(run_child(module, job, what)) for job in jobs]
    try:
        return list(await asyncio.gather(*children))
    except BaseException:
        for child in children:
            child.cancel()
        await asyncio.gather(*children, return_exceptions=True)
        raise
