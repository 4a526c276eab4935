"""One box per state directory, and the embedded servers heal (issue 15).

* A second ``gridctl up`` on a state directory in use says which box holds it (pid, URLs),
  exits non-zero and touches nothing; so does a role started by hand without URLs.
* A lock whose holder died (a stale pid) does not block a start.
* A ``postmaster.pid`` naming a process that is not a postgres of the data directory, or our
  own killed and not yet reaped postmaster, does not block PostgreSQL's restart.
* ``gridctl up`` restarts its SIGKILLed postmaster by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.embedded import EmbeddedPostgres, free_port
from core.statelock import StateDirInUse, StateLock

ROOT = Path(__file__).resolve().parents[2]


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


def test_lock_refuses_a_second_holder_and_a_stale_pid_does_not_block(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from core.statelock import StateLock\n"
         f"StateLock({str(tmp_path)!r}).acquire(nats_url='nats://127.0.0.1:1')\n"
         "print('held', flush=True); time.sleep(120)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        content = (tmp_path / "gridctl.lock").read_text()
        with pytest.raises(StateDirInUse) as refused:
            StateLock(tmp_path).acquire()
        assert refused.value.holder["pid"] == holder.pid
        assert "nats://127.0.0.1:1" in refused.value.describe()
        assert (tmp_path / "gridctl.lock").read_text() == content  # touched nothing
        assert StateLock.holder(tmp_path) == refused.value.holder
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its pid stays in the file, the OS lock does not.
    assert json.loads((tmp_path / "gridctl.lock").read_text())["pid"] == holder.pid
    assert StateLock.holder(tmp_path) is None
    lock = StateLock(tmp_path)
    lock.acquire()
    try:
        assert lock.previous is not None and lock.previous["pid"] == holder.pid
        assert json.loads((tmp_path / "gridctl.lock").read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert StateLock.holder(tmp_path) is None


@pytest.fixture
def own_dir() -> Iterator[Path]:
    """A scratch directory outside pytest's ``/tmp/pytest-of-<user>``: as root, PostgreSQL
    runs as ``nobody`` and needs search permission on every ancestor, which a pytest session
    starting meanwhile (another suite on the machine) takes away again (it resets its base
    directory to 0700) — seen as "could not open pg_control: Permission denied"."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="griddispatch-onebox-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg(own_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(own_dir / "pg", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _select_one(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stale_postmaster_pid_of_another_process_is_removed(pg: EmbeddedPostgres) -> None:
    pg.kill()  # a crash: postmaster.pid stays behind
    lock = pg.pgdata / "postmaster.pid"
    assert lock.exists()
    # Its pid now belongs to something else (a reboot, a long downtime): PostgreSQL alone
    # would refuse forever ("Is another postmaster (PID …) running?").
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        lines = lock.read_text().split("\n")
        lock.write_text("\n".join([str(stranger.pid), *lines[1:]]))
        pg.start()
        _select_one(pg)
        assert int(lock.read_text().split("\n")[0]) == pg.pid
    finally:
        stranger.kill()
        stranger.wait()


def test_killed_unreaped_postmaster_restarts(pg: EmbeddedPostgres) -> None:
    pid = pg.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # nobody reaps it yet: a zombie whose pid "exists"
    wait_for(lambda: _zombie(pid), 10, "the postmaster became a zombie")
    pg.start()
    _select_one(pg)
    assert pg.pid != pid


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_second_gridctl_up_is_refused_and_the_first_heals_its_postgres(
    tmp_path: Path, own_dir: Path
) -> None:
    state = own_dir / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update(
        GRID_NATS_PORT=str(free_port()), GRID_PG_PORT=str(free_port()),
        GRID_RATE_LIMITS="false", PYTHONUNBUFFERED="1",
    )
    http_port = free_port()
    cmd = [sys.executable, "-m", "gateways.cli", "up", "--state-dir", str(state), "--sample", "0"]
    with (tmp_path / "first.out").open("wb") as out:
        first = subprocess.Popen([*cmd, "--port", str(http_port)], cwd=ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        lock = state / "gridctl.lock"

        def box() -> dict[str, Any] | None:
            assert first.poll() is None, (tmp_path / "first.out").read_text()[-3000:]
            info = StateLock.holder(state)
            return info if info and info.get("database_url") else None

        info = wait_for(box, 180, "the first box is up")
        wait_for(lambda: (state / "logs" / "gateway.log").exists(), 120, "roles started")
        assert info["pid"] == first.pid
        nats_log = (state / "nats" / "nats.log").stat().st_size
        second = subprocess.run(
            [*cmd, "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=120,
        )
        assert second.returncode == 3, second.stdout + second.stderr
        said = " ".join((second.stdout + second.stderr).split())
        assert f"pid {first.pid}" in said and info["nats_url"] in said, said
        assert (state / "nats" / "nats.log").stat().st_size == nats_log  # touched nothing
        # The box still holds the lock with the same servers (its role list is refreshed
        # every few seconds, so only the identity is compared).
        held = StateLock.holder(state)
        assert held is not None
        assert {k: held.get(k) for k in ("pid", "nats_url", "database_url")} == {
            k: info[k] for k in ("pid", "nats_url", "database_url")
        }
        by_hand = subprocess.run(
            [sys.executable, "-m", "gateways.cli", "run", "worker"], cwd=ROOT,
            env={**env, "GRID_STATE_DIR": str(state)}, capture_output=True, text=True,
            timeout=120,
        )
        assert by_hand.returncode == 3, by_hand.stdout + by_hand.stderr
        assert f"NATS_URL={info['nats_url']}" in " ".join(by_hand.stderr.split())

        # SIGKILL the box's postmaster: gridctl up reaps it and starts it again by itself.
        pidfile = state / "postgres" / "pgdata" / "postmaster.pid"
        postmaster = int(pidfile.read_text().split("\n")[0])
        os.kill(postmaster, signal.SIGKILL)

        def healed() -> bool:
            try:
                pid = int(pidfile.read_text().split("\n")[0])
                with psycopg.connect(info["database_url"], connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return pid != postmaster
            except (OSError, ValueError, IndexError, psycopg.Error):
                return False

        wait_for(healed, 60, "the postmaster was restarted")
        assert not _zombie(postmaster) or not Path(f"/proc/{postmaster}").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            code = first.wait(timeout=90)
        except subprocess.TimeoutExpired:
            first.kill()
            code = first.wait()
    assert code == 0, (tmp_path / "first.out").read_text()[-3000:]
    assert StateLock.holder(state) is None
    assert lock.read_text() == ""  # a clean stop leaves no pid behind


async def test_a_server_that_cannot_come_back_stops_the_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash loop is reported and stops the box instead of spinning: the nats-server dies
    and its port is taken meanwhile, so every restart fails at once."""
    import asyncio
    import socket

    from core.embedded import EmbeddedNats
    from gateways import supervisor as sup

    monkeypatch.setattr(sup, "backoff", lambda failures, first: 0.05)
    nats = EmbeddedNats(tmp_path / "nats", port=free_port(), monitor_port=free_port())
    await asyncio.to_thread(nats.start)
    boxes = sup.Supervisor([], {}, tmp_path / "logs")
    boxes.supervise_server("nats-server", nats)
    squatter = socket.socket()
    try:
        pid = nats.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(wait_for, lambda: not nats.running, 10, "nats-server died")
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", nats.port))
        squatter.listen()
        stop = asyncio.Event()
        await asyncio.wait_for(boxes.watch(stop), timeout=120)
        assert stop.is_set()
        assert boxes.failure is not None and "nats-server is in a crash loop" in boxes.failure
        assert str(nats.log_path) in boxes.failure
        assert boxes.servers[0].failures >= sup.SERVER_CRASH_LOOP
    finally:
        squatter.close()
        await asyncio.to_thread(nats.stop)


async def test_a_role_in_a_crash_loop_stops_the_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role that exits right after every start is restarted with backoff, then reported
    and the box stopped — not restarted forever."""
    import asyncio

    from gateways import supervisor as sup

    monkeypatch.setattr(sup, "backoff", lambda failures, first: 0.05)
    boxes = sup.Supervisor(["worker"], {**os.environ}, tmp_path / "logs")
    boxes.children[0].argv = [sys.executable, "-c", "raise SystemExit(3)"]
    boxes.start()
    stop = asyncio.Event()
    await asyncio.wait_for(boxes.watch(stop), timeout=120)
    assert stop.is_set()
    assert boxes.failure is not None and "worker is in a crash loop" in boxes.failure
    assert "code 3" in boxes.failure and "worker.log" in boxes.failure
    assert boxes.children[0].restarts == sup.ROLE_CRASH_LOOP - 1
    boxes.stop()
