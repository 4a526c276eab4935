"""``gridctl``: run, operate and inspect griddispatch from a terminal (typer + rich)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from core import aio
from core.logging import configure_logging, get_logger
from core.settings import Settings, get_settings
from gateways.cli_help import ZhGroup

app = typer.Typer(
    cls=ZhGroup,
    help="griddispatch 网格化管理与案件派遣: 运行、运维与查询。", no_args_is_help=True
)
console = Console(stderr=True)
log = get_logger("cli")

from gateways.cli_projections import app as projections_app  # noqa: E402

app.add_typer(projections_app, name="projections")
from gateways.cli_basemap import app as basemap_app  # noqa: E402
from gateways.cli_city import app as city_app  # noqa: E402
from gateways.cli_components import app as components_app  # noqa: E402
from gateways.cli_dlq import app as dlq_app  # noqa: E402
from gateways.cli_places import app as places_app  # noqa: E402
from gateways.cli_users import app as users_app  # noqa: E402

app.add_typer(users_app, name="users")
app.add_typer(places_app, name="places")
app.add_typer(city_app, name="city")
app.add_typer(basemap_app, name="basemap")
app.add_typer(components_app, name="components")
app.add_typer(dlq_app, name="dlq")
from gateways.cli_audit import app as audit_app  # noqa: E402
from gateways.cli_audit import replay as replay_command  # noqa: E402

app.add_typer(audit_app, name="audit")
from gateways.cli_households import app as households_app  # noqa: E402

app.add_typer(households_app, name="households")
app.command("replay")(replay_command)
from gateways.cli_documents import app as documents_app  # noqa: E402
from gateways.cli_status import status as status_command  # noqa: E402

app.command("status")(status_command)
app.add_typer(documents_app, name="documents")


def _settings(state_dir: Path | None, port: int | None) -> Settings:
    settings = get_settings()
    updates: dict[str, object] = {}
    if state_dir is not None:
        updates["state_dir"] = state_dir
    if port is not None:
        updates["http_port"] = port
    return settings.model_copy(update=updates) if updates else settings


@app.command()
def up(
    state_dir: Annotated[Path | None, typer.Option(help="内置服务器的数据目录")] = None,
    port: Annotated[int | None, typer.Option(help="网关 gateway 的 HTTP 端口")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP 监听地址")] = None,
    sample: Annotated[int, typer.Option(help="空系统时载入的示例上报条数")] = 12,
    single_process: Annotated[
        bool, typer.Option(help="所有角色作为同一进程内的任务运行")
    ] = False,
) -> None:
    """一键运行整个系统: 未设置 NATS_URL / DATABASE_URL 时启动内置 NATS 与 PostgreSQL,
    再启动 gateway、worker、relay 和投影 (projector 等)。

    一个状态目录只运行一套: 已有 gridctl up 占用时, 说明是哪个 (pid、地址), 不做任何改动,
    退出码 3。某个角色或内置服务器反复崩溃时整套停止, 退出码 1。"""
    from core.statelock import StateDirInUse, StateLock

    settings = _settings(state_dir, port)
    if host:
        settings = settings.model_copy(update={"http_host": host})
    configure_logging(settings.log_level, settings.log_json)
    lock = StateLock(settings.state_dir.resolve())
    try:
        lock.acquire(command_centre=_base_url(settings))
    except StateDirInUse as busy:
        console.print(f"[red]{busy.describe()}[/]\n未启动任何服务。请先停止那一个, "
                      "或为本次指定另一个 --state-dir。")
        raise typer.Exit(3) from None
    if lock.previous:
        console.print(f"[yellow]上一次 gridctl up (pid {lock.previous.get('pid')}) 未正常停止[/]; "
                      "照常启动 (它的锁已随进程失效)")
    try:
        failure = aio.run(_up(settings, sample, single_process, lock))
    except PortTaken as taken:
        console.print(f"[red]{taken}[/]\n未启动任何服务。")
        raise typer.Exit(3) from None
    finally:
        lock.release()
    if failure:
        console.print(f"[red]已停止: {failure}[/]")
        raise typer.Exit(1)


async def _up(settings: Settings, sample: int, single_process: bool, lock: Any) -> str | None:
    """Start what is missing, serve until stopped; the reason when a crash loop stopped it."""
    from core.embedded import EmbeddedNats, EmbeddedPostgres
    from gateways.bootstrap import Runtime

    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    nats_srv = pg_srv = None
    nats_url, database_url = settings.nats_url, settings.database_url
    try:
        if not nats_url:
            nats_port = _embedded_port("GRID_NATS_PORT", 4333, "内置 NATS")
            nats_srv = EmbeddedNats(state / "nats", port=nats_port)
            await asyncio.to_thread(nats_srv.start)
            nats_url = nats_srv.url
            console.print(
                f"[green]内置 NATS JetStream[/] {nats_url} (数据 {state / 'nats'})"
            )
        if not database_url:
            pg_port = _embedded_port("GRID_PG_PORT", 5433, "内置 PostgreSQL")
            pg_srv = EmbeddedPostgres(state / "postgres", port=pg_port)
            await asyncio.to_thread(pg_srv.start)
            database_url = pg_srv.url
            console.print(f"[green]内置 PostgreSQL[/] {database_url}")
        lock.update(nats_url=nats_url, database_url=database_url)
        servers = [(n, s) for n, s in (("nats-server", nats_srv), ("postgres", pg_srv)) if s]
        # Set-up (schemas, streams, tables, demo users) once, before any role starts.
        runtime = await Runtime.open(settings, nats_url, database_url)
        await _load_places(runtime, settings)
        await _hint_first_admin(runtime)
        try:
            if single_process:
                return await _serve_in_process(runtime, settings, sample, servers)
            return await _serve_supervised(
                runtime, settings, sample, nats_url, database_url, servers, lock
            )
        finally:
            await runtime.close()
    finally:
        if pg_srv is not None:
            await asyncio.to_thread(pg_srv.stop)
        if nats_srv is not None:
            await asyncio.to_thread(nats_srv.stop)
        console.print("已停止。")


async def _publish_roles(supervisor: Any, lock: Any, stop: asyncio.Event) -> None:
    """Keep the role processes (pid, restarts) in the state lock for ``gridctl status``."""
    if lock is None:
        return
    while not stop.is_set():
        lock.update(roles=supervisor.status())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=5)


async def _hint_first_admin(runtime: Any) -> None:
    """A city with nobody who can sign in (not the sample with its demo users): say how to
    create the first admin, where the operator is looking (not only in a log line)."""
    from gateways.cli_status import FIRST_ADMIN

    with contextlib.suppress(Exception):
        async with runtime.pool.acquire() as conn:
            if not await conn.fetchval("SELECT count(*) FROM users"):
                console.print(f"[yellow]{FIRST_ADMIN}[/]")


async def _load_places(runtime: Any, settings: Settings) -> None:
    """The city's shipped standard addresses, into an empty list (issue 17)."""
    from core import places

    async with runtime.pool.acquire() as conn:
        loaded = await places.load_city(conn, runtime.ref.jurisdiction, settings.city_dir)
    if loaded:
        console.print(f"标准地址: 从 {settings.city_dir.name} 载入 {loaded} 条")
    from core import components

    async with runtime.pool.acquire() as conn:
        loaded = await components.load_city(
            conn, runtime.ref.jurisdiction, runtime.ref.catalogue, settings.city_dir
        )
    if loaded:
        console.print(f"部件: 从 {settings.city_dir.name} 载入 {loaded} 个")


def _base_url(settings: Settings) -> str:
    return f"http://{settings.http_host}:{settings.http_port}/"


def _banner(settings: Settings) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    console.print(
        f"[bold]指挥中心[/]  {base}/\n[bold]接口文档[/]  {base}/docs\n"
        f"[bold]Open311[/]   {base}/open311/v2/services.json\n"
        "按 Ctrl-C 全部正常停止。"
    )


async def _serve_in_process(
    runtime: Any, settings: Settings, sample: int, servers: list[tuple[str, Any]]
) -> str | None:
    """Every role as a task of this one process (debugging, small pilots); the embedded
    servers are still supervised (restarted when they die)."""
    from gateways.bootstrap import ROLES
    from gateways.http.app import create_app
    from gateways.http.server import make_server
    from gateways.sample import load_sample_reports
    from gateways.supervisor import Supervisor

    runtime.start(ROLES)
    server = make_server(create_app(runtime), settings.http_host, settings.http_port)
    supervisor = Supervisor([], {}, settings.state_dir.resolve() / "logs")
    for name, srv in servers:
        supervisor.supervise_server(name, srv)
    stop = asyncio.Event()

    async def watch() -> None:
        await supervisor.watch(stop)
        server.should_exit = True  # a crash loop ends the box

    _banner(settings)
    sample_task = asyncio.create_task(load_sample_reports(runtime, sample)) if sample else None
    watch_task = asyncio.create_task(watch())
    try:
        await server.serve()
    finally:
        stop.set()
        await asyncio.gather(watch_task, return_exceptions=True)
        if sample_task is not None:
            sample_task.cancel()
    return supervisor.failure


async def _serve_supervised(
    runtime: Any,
    settings: Settings,
    sample: int,
    nats_url: str,
    database_url: str,
    servers: list[tuple[str, Any]],
    lock: Any = None,
) -> str | None:
    """One process per role and the embedded servers, each restarted if it dies;
    SIGINT/SIGTERM drains the roles in order. The reason when a crash loop stopped it."""

    from gateways.bootstrap import PROCESSES
    from gateways.sample import load_sample_reports
    from gateways.supervisor import Supervisor, child_env

    env = child_env(nats_url, database_url)
    env.update(
        {
            "GRID_HTTP_HOST": settings.http_host,
            "GRID_HTTP_PORT": str(settings.http_port),
            "GRID_STATE_DIR": str(settings.state_dir.resolve()),
        }
    )
    supervisor = Supervisor(["gateway", *PROCESSES], env, settings.state_dir.resolve() / "logs")
    for name, server in servers:
        supervisor.supervise_server(name, server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisor.start()
    try:
        if not await _wait_http(settings, timeout=60):
            console.print(
                "[red]网关 gateway 未能启动[/]; 见 "
                f"{settings.state_dir.resolve() / 'logs' / 'gateway.log'}"
            )
        _banner(settings)
        children = supervisor.status()
        width = max((len(c["role"]) for c in children), default=10)
        for child in children:
            console.print(f"  {child['role']:<{width}} pid {child['pid']}")
        publish = asyncio.create_task(_publish_roles(supervisor, lock, stop))
        if sample:
            await load_sample_reports(runtime, sample)
        await supervisor.watch(stop)
        publish.cancel()
    finally:
        await asyncio.to_thread(supervisor.stop)
    return supervisor.failure


async def _wait_http(settings: Settings, timeout: float) -> bool:
    import httpx

    deadline = asyncio.get_running_loop().time() + timeout
    url = f"http://{settings.http_host}:{settings.http_port}/healthz"
    async with httpx.AsyncClient() as client:
        while asyncio.get_running_loop().time() < deadline:
            try:
                if (await client.get(url, timeout=1)).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    return False


def _port_from_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _embedded_port(name: str, default: int, what: str) -> int | None:
    """The port an embedded server is to listen on: ``name`` (e.g. ``GRID_NATS_PORT``) or the
    default; 0 means any free port (None for ``core.embedded``). A port another process holds
    is refused here with what to do — the server itself would only fail to bind, and a
    second ``gridctl up`` on another state directory is the usual cause."""
    import socket

    port = _port_from_env(name, default)
    if port == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortTaken(
                f"{what} 的端口 {port} 已被其他进程占用（另一个 gridctl up？）：用 {name}=<端口> "
                f"指定另一个端口，或 {name}=0 任选空闲端口（{exc.strerror}）"
            ) from None
    return port


class PortTaken(RuntimeError):
    """An embedded server's port is held by another process (the message says what to do)."""


@app.command()
def run(
    role: Annotated[
        str, typer.Argument(
            help="gateway | worker | relay | projector | watcher | notifier; 多个角色用逗号"
            "连接在同一进程运行 (projector,notifier: 两者共用一个消费者)"
        )
    ],
    partitions: Annotated[str | None, typer.Option(help="区县代码, 逗号分隔")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP 端口 (gateway)")] = None,
) -> None:
    """按外部 NATS_URL / DATABASE_URL 运行单个角色 (分布式部署)。"""
    settings = _settings(None, port)
    configure_logging(settings.log_level, settings.log_json)
    if not settings.nats_url or not settings.database_url:
        from core.statelock import StateLock

        box = StateLock.holder(settings.state_dir.resolve())
        if box is not None:
            console.print(
                f"[red]{settings.state_dir.resolve()} 正被 gridctl up 使用 (pid "
                f"{box.get('pid')})[/]; 要在它旁边运行此角色, 请设置\n"
                f"  NATS_URL={box.get('nats_url', '?')} DATABASE_URL={box.get('database_url', '?')}"
            )
            raise typer.Exit(3)
        console.print(
            "[red]gridctl run 需要 NATS_URL 和 DATABASE_URL[/] (内置一体化模式请用 "
            "`gridctl up`)"
        )
        raise typer.Exit(2)
    parts = [p.strip() for p in partitions.split(",")] if partitions else None
    aio.run(_run(settings, role, parts))


async def _run(settings: Settings, role: str, partitions: list[str] | None) -> None:
    from gateways.bootstrap import ROLES, Runtime

    assert settings.nats_url and settings.database_url
    roles = [r.strip() for r in role.split(",") if r.strip()]
    unknown = [r for r in roles if r != "gateway" and r not in ROLES]
    if unknown or not roles or ("gateway" in roles and len(roles) > 1):
        console.print(
            f"[red]未知角色 {role!r}[/]; 可用角色: gateway (单独运行), 或 "
            f"{', '.join(ROLES)} 中的任意几个 (逗号分隔)"
        )
        raise typer.Exit(2)
    # Handlers first: a SIGTERM while the role is still connecting (slow on a loaded box)
    # then ends it cleanly once connected, instead of killing it half-started.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    runtime = await Runtime.open(settings, settings.nats_url, settings.database_url)
    try:
        if stop.is_set():
            return
        if role == "gateway":
            # Imported here: the other roles need neither FastAPI nor the routers (≈ 30 MB).
            from gateways.http.app import create_app
            from gateways.http.server import make_server

            for sig in signals:  # uvicorn installs its own (graceful shutdown of requests)
                loop.remove_signal_handler(sig)
            server = make_server(create_app(runtime), settings.http_host, settings.http_port)
            await server.serve()
            return
        runtime.start(roles, partitions)
        await stop.wait()
    finally:
        await runtime.close()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """运行标准基准测试 (自带内置系统), 结果写入 docs/。

    选项: --reports N --batch B --rate R --seconds S --cases N --out FILE (见
    benchmarks/standard.py); 结果替换 docs/performance.md 中自动生成的部分。
    --against-plain 改为运行 issue 19 的对照测试 (与直接 INSERT 的简单应用并排比较;
    --rounds N --seconds S --reports N --rates 20,50,100 --measures intake,batch,latency;
    见 benchmarks/against_plain.py) 并打印结果。
    """
    args = list(ctx.args)
    if "--against-plain" in args:
        from benchmarks.against_plain import main as against_plain

        against_plain([a for a in args if a != "--against-plain"])
        return
    from benchmarks.standard import main as bench_main

    bench_main(args)


if __name__ == "__main__":
    app()
