"""``gridctl up``'s process tree: the roles in OS processes (``bootstrap.PROCESSES``: one per
role, the projector and the notifier together), each restarted if it dies.

Why processes and not tasks: Python runs one thread of bytecode at a time per process; the
worker, relay and projector each need a core's worth of CPU at full intake (measured: the
same pipeline went from ~600 to ~1,400 reports/s when split into processes — see
docs/performance.md). It is also the distributed deployment in miniature: every child is
exactly ``gridctl run <role>`` with NATS_URL / DATABASE_URL pointing at the shared servers.
A child that exits unexpectedly is restarted with backoff; SIGTERM drains children first
(each finishes its in-flight batch), then the embedded servers stop.

The embedded nats-server and PostgreSQL are supervised the same way (:class:`ServerChild`):
a server that dies is reaped at once (a zombie postmaster keeps its PID "alive" and blocks
every restart) and started again on the same port and data directory with backoff; the roles
reconnect by themselves. A crash loop — a role or server that keeps dying right after each
start, or a server that cannot be started again — is not retried forever: the supervisor
logs ``supervisor.crash_loop`` with the reason and the log to read, and stops the box
(``failure`` says why; ``gridctl up`` then exits non-zero).
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

#: A role that exits this many times in a row within 10 s of its start is in a crash loop.
ROLE_CRASH_LOOP = 8
#: A server that dies or fails to start this many times in a row (each within a minute of
#: the last good start) is in a crash loop.
SERVER_CRASH_LOOP = 5
#: A server that stayed up this long is healthy again: its failure count starts over.
SERVER_HEALTHY_S = 60.0


def backoff(failures: int, first: float) -> float:
    """The delay before restart number ``failures`` in a row: ``first``, then 2, 4, … 30 s,
    jittered so several processes do not come back in lockstep."""
    if failures <= 1:
        return first
    return min(30.0, 2.0 ** min(failures - 1, 5)) * random.uniform(0.8, 1.2)


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
        self.children = [
            Child(role, [*base, role], env, log_dir / f"{role.replace(',', '+')}.log")
            for role in roles
        ]
        self.servers: list[ServerChild] = []
        self.stopping = False
        self.failure: str | None = None  # why the supervisor stopped the box, if it did

    def supervise_server(self, name: str, server: Any) -> ServerChild:
        """Watch an already started embedded server (``core.embedded``) and restart it when
        it dies."""
        entry = ServerChild(name, server)
        self.servers.append(entry)
        return entry

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
                    if child.quick_exits >= ROLE_CRASH_LOOP:
                        self._crash_loop(stop, child.role, child.quick_exits,
                                         f"exited with code {code} within 10 s of each start",
                                         child.log_path)
                        return
                    delay = backoff(child.quick_exits, 1.0)
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
            for server in self.servers:
                if server.watch(now, stop) is False:
                    self._crash_loop(stop, server.name, server.failures, server.last_error,
                                     server.log_path)
                    return
            await sleep_or_stop(stop, 0.2)
        for server in self.servers:
            await server.settle()

    def _crash_loop(self, stop: asyncio.Event, name: str, times: int, why: str,
                    log_path: Path) -> None:
        """Give up on a crash loop: say what and where to look, and stop the box."""
        self.failure = (
            f"{name} is in a crash loop ({times} failures in a row: {why}); see {log_path}"
        )
        log.error("supervisor.crash_loop", name=name, failures=times, reason=why,
                  log=str(log_path))
        stop.set()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child (they drain), SIGKILL what is still running after ``timeout``.
        The servers are left to their owner (``gridctl up`` stops them after the roles)."""
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
        ] + [
            {"role": s.name, "pid": s.server.pid, "alive": s.server.running,
             "restarts": s.restarts}
            for s in self.servers
        ]


@dataclass
class ServerChild:
    """One embedded server under supervision: reaped when it dies, restarted with backoff.

    ``server`` is a ``core.embedded`` server: ``running`` polls (and so reaps) its process,
    ``stopped`` is true after a deliberate ``stop()`` (never restarted), ``start()`` blocks
    until it serves again (run in a thread: PostgreSQL's crash recovery takes a while)."""

    name: str
    server: Any
    failures: int = 0  # deaths / failed starts in a row, without a healthy minute between
    restarts: int = 0
    restart_at: float | None = None
    up_since: float = field(default_factory=time.monotonic)
    starting: asyncio.Task[None] | None = None
    last_error: str = ""

    @property
    def log_path(self) -> Path:
        return Path(self.server.log_path)

    def watch(self, now: float, stop: asyncio.Event) -> bool:
        """One look: False when the server is in a crash loop (the caller stops the box)."""
        if self.starting is not None:
            return True
        if self.server.stopped or self.server.running:
            # Stopped on purpose (maybe between two looks of the last round), or serving:
            # nothing is due.
            self.restart_at = None
            if self.failures and now - self.up_since > SERVER_HEALTHY_S:
                self.failures = 0
            return True
        if self.restart_at is None:
            code = self.server.returncode
            self.failures += 1
            self.last_error = f"exited with code {code}"
            if self.failures >= SERVER_CRASH_LOOP:
                return False
            delay = backoff(self.failures, 0.2)
            self.restart_at = now + delay
            log.warning("supervisor.server_exited", server=self.name, code=code,
                        restart_in_s=round(delay, 1), log=str(self.log_path))
        elif now >= self.restart_at and not stop.is_set():
            self.starting = asyncio.create_task(self._start())
        return True

    async def _start(self) -> None:
        began = time.monotonic()
        try:
            await asyncio.to_thread(self.server.start)
        except Exception as exc:  # logged and retried; a crash loop stops the box
            self.failures += 1
            self.last_error = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
            delay = backoff(self.failures, 1.0)
            log.error("supervisor.server_start_failed", server=self.name, error=self.last_error,
                      restart_in_s=round(delay, 1), log=str(self.log_path))
            self.restart_at = time.monotonic() + delay
            if self.failures >= SERVER_CRASH_LOOP:
                self.restart_at = None  # the next watch() reports the crash loop
        else:
            self.restarts += 1
            self.restart_at = None
            self.up_since = time.monotonic()
            log.warning("supervisor.server_restarted", server=self.name, pid=self.server.pid,
                        took_s=round(self.up_since - began, 2), restarts=self.restarts)
        finally:
            self.starting = None

    async def settle(self) -> None:
        """Wait for a start in progress (so the owner's ``stop()`` finds a settled server)."""
        if self.starting is not None:
            await asyncio.gather(self.starting, return_exceptions=True)


def child_env(nats_url: str, database_url: str) -> dict[str, str]:
    """The children's environment: ours plus the servers they must use."""
    env = dict(os.environ)
    env.update({"NATS_URL": nats_url, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"})
    return env
