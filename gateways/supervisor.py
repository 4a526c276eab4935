"""``gridctl up``'s process tree: one OS process per role, restarted if it dies.

Why processes and not tasks: Python runs one thread of bytecode at a time per process; the
worker, relay and projector each need a core's worth of CPU at full intake (measured: the
same pipeline went from ~600 to ~1,400 reports/s when split into processes — see
docs/performance.md). It is also the distributed deployment in miniature: every child is
exactly ``gridctl run <role>`` with NATS_URL / DATABASE_URL pointing at the shared servers.
A child that exits unexpectedly is restarted with backoff; SIGTERM drains children first
(each finishes its in-flight batch), then the embedded servers stop.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.embedded import spawn_child
from core.logging import get_logger
from core.retry import sleep_or_stop

log = get_logger("supervisor")


@dataclass
class Child:
    role: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: Any = None
    restarts: int = 0
    started_at: float = 0.0
    log_file: Any = field(default=None, repr=False)
    quick_exits: int = 0  # consecutive exits within 10 s of a start (crash loop)
    restart_at: float | None = None  # when a dead child is due to be started again

    def start(self) -> None:
        if self.log_file is None:
            self.log_file = self.log_path.open("ab")
        self.proc = spawn_child(
            self.argv,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.started_at = time.monotonic()
        log.info("supervisor.started", role=self.role, pid=self.proc.pid)

    @property
    def pid(self) -> int | None:
        return int(self.proc.pid) if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Starts, watches and stops the role processes."""

    def __init__(self, roles: list[str], env: dict[str, str], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        base = [sys.executable, "-m", "gateways.cli", "run"]
        self.children = [Child(role, [*base, role], env, log_dir / f"{role}.log") for role in roles]
        self.stopping = False

    def start(self) -> None:
        for child in self.children:
            child.start()

    async def watch(self, stop: asyncio.Event) -> None:
        """Restart children that die until ``stop``: after 1 s, or with backoff (2 s → 30 s,
        jittered) while a child keeps dying within 10 s of its start. Each dead child has its
        own restart time, so several dying at once come back together."""
        while not stop.is_set():
            now = time.monotonic()
            for child in list(self.children):
                if self.stopping or child.alive():
                    continue
                if child.restart_at is None:
                    code = child.proc.returncode if child.proc is not None else None
                    quick = now - child.started_at < 10
                    child.quick_exits = child.quick_exits + 1 if quick else 0
                    delay = 1.0
                    if child.quick_exits > 1:
                        delay = min(30.0, 2.0 ** min(child.quick_exits - 1, 5))
                        delay *= random.uniform(0.8, 1.2)
                    log.warning(
                        "supervisor.child_exited",
                        role=child.role,
                        code=code,
                        restart_in_s=round(delay, 1),
                        log=str(child.log_path),
                    )
                    child.restarts += 1
                    child.restart_at = now + delay
                elif now >= child.restart_at:
                    try:
                        child.start()
                        child.restart_at = None
                    except OSError as exc:  # e.g. out of processes: try again, keep watching
                        child.restart_at = now + 5.0
                        log.error("supervisor.start_failed", role=child.role, error=repr(exc))
            await sleep_or_stop(stop, 0.2)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child (they drain), SIGKILL what is still running after ``timeout``."""
        self.stopping = True
        for child in self.children:
            if child.alive():
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("supervisor.kill", role=child.role)
                child.proc.kill()
                child.proc.wait()
            if child.log_file is not None:
                child.log_file.close()

    def status(self) -> list[dict[str, Any]]:
        return [
            {"role": c.role, "pid": c.pid, "alive": c.alive(), "restarts": c.restarts}
            for c in self.children
        ]


def child_env(nats_url: str, database_url: str) -> dict[str, str]:
    """The children's environment: ours plus the servers they must use."""
    env = dict(os.environ)
    env.update({"NATS_URL": nats_url, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"})
    return env
