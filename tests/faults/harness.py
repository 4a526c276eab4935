"""The system under fault: embedded nats-server + PostgreSQL and one OS process per role.

Everything is real and separately killable: the servers are ``core.embedded`` children of the
test process (stop / SIGKILL / start again on the same port and data directory), the roles are
``python -m gateways.cli run <role>`` children of a ``gateways.supervisor.Supervisor`` (the
same code ``gridctl up`` uses), which restarts whatever dies. Extra processes (a second worker
on one partition, a rogue worker with its own durable consumer) are added as further
supervised children so they are stopped with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from core.messaging import Topology, connect
from gateways.supervisor import Child, Supervisor, child_env
from tests.faults.load import Ledger, LoadDriver

ROLES = ["gateway", "worker", "relay", "projector", "watcher", "notifier"]
SCHEMA = "faults"
PREFIX = "FLT"
DEDUPE_WINDOW_S = 2.0


@dataclass
class Timer:
    """Wall-clock marks of one fault: when it started, healed, and the system recovered."""

    name: str
    started: float = field(default_factory=time.monotonic)
    healed: float | None = None
    recovered: float | None = None

    def heal(self) -> None:
        self.healed = time.monotonic()

    def recover(self) -> None:
        self.recovered = time.monotonic()

    @property
    def recovery_s(self) -> float | None:
        if self.healed is None or self.recovered is None:
            return None
        return round(self.recovered - self.healed, 2)


class FaultSystem:
    """Servers + supervised role processes + helpers to break and inspect them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log_dir = root / "logs"
        self.nats = EmbeddedNats(root / "nats", port=free_port())
        # max_connections: every role process keeps a psycopg pool of 4 per partition store
        # (4 partitions) plus an asyncpg pool — ~20-30 connections per process, more than the
        # default 100 for six roles plus the drills' extra workers (see docs/reliability.md).
        self.pg = EmbeddedPostgres(
            root / "pg", port=free_port(), settings={"max_connections": "400"}
        )
        self.http_port = free_port()
        self.topo = Topology(PREFIX)
        self.schema = SCHEMA
        self.env: dict[str, str] = {}
        self.supervisor: Supervisor | None = None
        self.watch_task: asyncio.Task[None] | None = None
        self.watch_stop = asyncio.Event()
        self.counts: list[dict[str, Any]] = []  # one entry per reconciliation, printed at the end

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start_servers(self) -> None:
        self.nats.start()
        self.pg.start()

    def role_env(self) -> dict[str, str]:
        env = child_env(self.nats.url, self.pg.url)
        env.update(
            {
                "GRID_STREAM_PREFIX": PREFIX,
                "GRID_DB_SCHEMA": SCHEMA,
                "GRID_HTTP_HOST": "127.0.0.1",
                "GRID_HTTP_PORT": str(self.http_port),
                "GRID_STATE_DIR": str(self.root / "state"),
                "GRID_DEDUPE_WINDOW": str(DEDUPE_WINDOW_S),
                "GRID_RATE_LIMITS": "false",
                "GRID_LOG_JSON": "true",
                "GRID_LOG_LEVEL": "INFO",
                "GRID_WORKER_BATCH": "200",
                "GRID_REPLY_TIMEOUT": "3",
                "GRID_WATCHER_INTERVAL": "2",
            }
        )
        return env

    def start_roles(self) -> None:
        self.env = self.role_env()
        self.supervisor = Supervisor(ROLES, self.env, self.log_dir)
        # The servers too, as gridctl up does: one that dies is reaped and started again (a
        # deliberate stop(), as in drill 2, is left alone).
        self.supervisor.supervise_server("nats-server", self.nats)
        self.supervisor.supervise_server("postgres", self.pg)
        self.supervisor.start()
        self.watch_stop = asyncio.Event()
        self.watch_task = asyncio.create_task(self.supervisor.watch(self.watch_stop))

    async def stop(self) -> None:
        if self.supervisor is not None:  # a drill that failed may have left one frozen
            for child in self.supervisor.children:
                if child.alive():
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.send_signal(signal.SIGCONT)
        self.watch_stop.set()
        if self.watch_task is not None:
            await asyncio.gather(self.watch_task, return_exceptions=True)
        if self.supervisor is not None:
            await asyncio.to_thread(self.supervisor.stop, 15.0)
        await asyncio.to_thread(self.pg.stop)
        await asyncio.to_thread(self.nats.stop)

    # ------------------------------------------------------------------ children
    def child(self, role: str) -> Child:
        assert self.supervisor is not None
        for child in self.supervisor.children:
            if child.role == role:
                return child
        raise KeyError(role)

    def add_child(
        self, name: str, argv_tail: list[str], env: dict[str, str] | None = None
    ) -> Child:
        """Start one more supervised process (``python -m <argv_tail…>``)."""
        assert self.supervisor is not None
        child = Child(
            name,
            [sys.executable, "-m", *argv_tail],
            env or self.env,
            self.log_dir / f"{name}.log",
        )
        child.start()
        self.supervisor.children.append(child)
        return child

    async def remove_child(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Stop an extra child for good (it is taken out of the supervisor first)."""
        assert self.supervisor is not None
        child = self.child(name)
        self.supervisor.children.remove(child)
        code = await self.signal_and_wait(child, sig, timeout)
        if child.log_file is not None:
            child.log_file.close()
        return code

    async def signal_and_wait(self, child: Child, sig: int, timeout: float = 20) -> int:
        proc = child.proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            return int(await asyncio.to_thread(proc.wait, timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            return int(await asyncio.to_thread(proc.wait))

    async def kill(self, role: str, sig: int = signal.SIGKILL) -> int:
        """Signal a supervised role and wait for it to die; the supervisor restarts it."""
        child = self.child(role)
        pid = child.pid
        code = await self.signal_and_wait(child, sig)
        log_event("fault.signal", role=role, pid=pid, signal=signal.Signals(sig).name, code=code)
        return code

    async def wait_server_restarted(self, server: Any, old_pid: int, timeout: float) -> float:
        """Seconds until the supervisor has a new process of ``server`` serving."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if server.running and server.pid not in (None, old_pid):
                return time.monotonic() - started
            await asyncio.sleep(0.05)
        raise AssertionError(f"{server._label} was not restarted within {timeout}s")

    async def wait_restarted(self, role: str, old_pid: int | None, timeout: float = 60) -> int:
        child = self.child(role)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.alive() and child.pid != old_pid:
                return int(child.pid or 0)
            await asyncio.sleep(0.1)
        raise AssertionError(f"{role} was not restarted within {timeout}s")

    # ------------------------------------------------------------------ probes
    async def readyz(self) -> int:
        try:
            async with httpx.AsyncClient(timeout=3) as client:
                return (await client.get(self.base_url + "/readyz")).status_code
        except httpx.HTTPError:
            return 0

    async def wait_readyz(self, status: int, timeout: float = 60) -> float:
        """Poll /readyz until it answers ``status``; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.readyz()
            if last == status:
                return time.monotonic() - started
            await asyncio.sleep(0.2)
        raise AssertionError(f"/readyz did not answer {status} within {timeout}s (last {last})")

    async def js_call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(js)`` on a short-lived connection of our own."""
        nc = await connect(self.nats.url, "faults-probe")
        try:
            return await fn(nc.jetstream(timeout=10))
        finally:
            await nc.close()

    async def consumers(self) -> list[dict[str, Any]]:
        """Durable consumers of the COMMANDS and EVENTS streams with their backlog."""

        async def probe(js: Any) -> list[dict[str, Any]]:
            out = []
            for stream in (self.topo.commands_stream, self.topo.events_stream):
                for info in await js.consumers_info(stream):
                    if not info.config.durable_name:
                        continue
                    out.append(
                        {
                            "stream": stream,
                            "name": info.name,
                            "num_pending": info.num_pending or 0,
                            "num_ack_pending": info.num_ack_pending or 0,
                            "num_redelivered": info.num_redelivered or 0,
                            "delivered": info.delivered.stream_seq if info.delivered else 0,
                        }
                    )
            return out

        result: list[dict[str, Any]] = await self.js_call(probe)
        return result

    async def consumer(self, name: str) -> dict[str, Any]:
        for info in await self.consumers():
            if info["name"] == name:
                return info
        raise KeyError(name)

    # ------------------------------------------------------------------ logs
    def log_lines(self, role: str) -> list[dict[str, Any]]:
        """The JSON log lines a role has written (all its incarnations)."""
        path = self.log_dir / f"{role}.log"
        if not path.exists():
            return []
        lines = []
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            raw = raw.strip()
            if raw.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(raw))
        return lines

    def events_named(self, roles: Iterable[str], prefix: str) -> dict[str, int]:
        """How many log lines per event name starting with ``prefix`` the roles wrote."""
        counts: dict[str, int] = {}
        for role in roles:
            for line in self.log_lines(role):
                name = str(line.get("event", ""))
                if name.startswith(prefix):
                    counts[name] = counts.get(name, 0) + 1
        return counts


#: Every reconciliation's counts of the session, printed in the terminal summary.
COUNTS: list[dict[str, Any]] = []


@dataclass
class Drill:
    """What a fault test gets: the system, the promises so far, and a load factory."""

    system: FaultSystem
    ledger: Ledger
    grids: list[str]
    grids_by_partition: dict[str, list[str]]
    category: str
    drivers: list[LoadDriver] = field(default_factory=list)

    def load(self, run: str, rate: float = 30.0, grids: list[str] | None = None) -> LoadDriver:
        driver = LoadDriver(
            self.system.base_url,
            grids or self.grids,
            self.category,
            f"{run}-{uuid.uuid4().hex[:6]}",
            self.ledger,
            rate=rate,
        )
        self.drivers.append(driver)
        return driver

    async def accepted_more(self, n: int = 40, timeout: float = 60.0) -> float:
        """Wait until ``n`` more reports than now were accepted (202): the load is flowing.
        A condition instead of a fixed warm-up time; returns the seconds it took."""
        started = time.monotonic()
        target = len(self.ledger.accepted) + n
        while len(self.ledger.accepted) < target:
            assert time.monotonic() - started < timeout, (
                f"the load made no progress: {len(self.ledger.accepted)} of {target} accepted "
                f"within {timeout}s; client errors: {self.ledger.errors[-3:]}"
            )
            await asyncio.sleep(0.05)
        return time.monotonic() - started


def record(counts: dict[str, Any]) -> None:
    """Print one reconciliation's counts now (visible with -s) — and in the summary."""
    log_event("fault.counts", **counts)


def log_event(event: str, **fields: Any) -> None:
    """A structured line from the test itself (shown with -s / on failure)."""
    print(json.dumps({"event": event, **fields}, default=str), file=sys.stderr, flush=True)


def env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default)
