"""``gridctl``: run, operate and inspect griddispatch from a terminal (typer + rich)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from core import aio
from core.logging import configure_logging, get_logger
from core.settings import Settings, get_settings

app = typer.Typer(
    help="griddispatch — grid management and case dispatch (網格化管理).", no_args_is_help=True
)
console = Console(stderr=True)
log = get_logger("cli")

from gateways.cli_projections import app as projections_app  # noqa: E402

app.add_typer(projections_app, name="projections")
from gateways.cli_dlq import app as dlq_app  # noqa: E402
from gateways.cli_users import app as users_app  # noqa: E402

app.add_typer(users_app, name="users")
app.add_typer(dlq_app, name="dlq")
from gateways.cli_audit import app as audit_app  # noqa: E402
from gateways.cli_audit import replay as replay_command  # noqa: E402

app.add_typer(audit_app, name="audit")
app.command("replay")(replay_command)


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
    state_dir: Annotated[Path | None, typer.Option(help="where embedded servers keep data")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port of the gateway")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP bind address")] = None,
    sample: Annotated[int, typer.Option(help="sample reports to load on an empty system")] = 12,
    single_process: Annotated[
        bool, typer.Option(help="run every role as a task of one process")
    ] = False,
) -> None:
    """Run the whole system in one process tree: embedded NATS + PostgreSQL unless NATS_URL /
    DATABASE_URL are set, then gateway, workers, relay and projections."""
    settings = _settings(state_dir, port)
    if host:
        settings = settings.model_copy(update={"http_host": host})
    configure_logging(settings.log_level, settings.log_json)
    aio.run(_up(settings, sample, single_process))


async def _up(settings: Settings, sample: int, single_process: bool) -> None:
    from core.embedded import EmbeddedNats, EmbeddedPostgres
    from gateways.runtime import Runtime

    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    nats_srv = pg_srv = None
    nats_url, database_url = settings.nats_url, settings.database_url
    try:
        if not nats_url:
            nats_srv = EmbeddedNats(state / "nats", port=_port_from_env("GRID_NATS_PORT", 4333))
            await asyncio.to_thread(nats_srv.start)
            nats_url = nats_srv.url
            console.print(
                f"[green]embedded NATS JetStream[/] at {nats_url} (data {state / 'nats'})"
            )
        if not database_url:
            pg_srv = EmbeddedPostgres(state / "postgres", port=_port_from_env("GRID_PG_PORT", 5433))
            await asyncio.to_thread(pg_srv.start)
            database_url = pg_srv.url
            console.print(f"[green]embedded PostgreSQL[/] at {database_url}")
        # Set-up (schemas, streams, tables, demo users) once, before any role starts.
        runtime = await Runtime.open(settings, nats_url, database_url)
        try:
            if single_process:
                await _serve_in_process(runtime, settings, sample)
            else:
                await _serve_supervised(runtime, settings, sample, nats_url, database_url)
        finally:
            await runtime.close()
    finally:
        if pg_srv is not None:
            await asyncio.to_thread(pg_srv.stop)
        if nats_srv is not None:
            await asyncio.to_thread(nats_srv.stop)
        console.print("stopped.")


def _banner(settings: Settings) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    console.print(
        f"[bold]command centre[/]  {base}/\n[bold]API docs[/]        {base}/docs\n"
        f"[bold]Open311[/]         {base}/open311/v2/services.json\n"
        "Ctrl-C stops everything cleanly."
    )


async def _serve_in_process(runtime: Any, settings: Settings, sample: int) -> None:
    """Every role as a task of this one process (debugging, small pilots)."""
    from gateways.http.app import create_app
    from gateways.http.server import make_server
    from gateways.runtime import ROLES
    from gateways.sample import load_sample_reports

    runtime.start(ROLES)
    server = make_server(create_app(runtime), settings.http_host, settings.http_port)
    _banner(settings)
    sample_task = asyncio.create_task(load_sample_reports(runtime, sample)) if sample else None
    try:
        await server.serve()
    finally:
        if sample_task is not None:
            sample_task.cancel()


async def _serve_supervised(
    runtime: Any, settings: Settings, sample: int, nats_url: str, database_url: str
) -> None:
    """One process per role, restarted if it dies; SIGINT/SIGTERM drains them in order."""
    import signal

    from gateways.runtime import ROLES
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
    supervisor = Supervisor(["gateway", *ROLES], env, settings.state_dir.resolve() / "logs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisor.start()
    try:
        if not await _wait_http(settings, timeout=60):
            console.print(
                "[red]the gateway did not come up[/]; see "
                f"{settings.state_dir.resolve() / 'logs' / 'gateway.log'}"
            )
        _banner(settings)
        for child in supervisor.status():
            console.print(f"  {child['role']:<10} pid {child['pid']}")
        if sample:
            await load_sample_reports(runtime, sample)
        await supervisor.watch(stop)
    finally:
        await asyncio.to_thread(supervisor.stop)


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


@app.command()
def run(
    role: Annotated[
        str, typer.Argument(help="gateway | worker | relay | projector | watcher | notifier")
    ],
    partitions: Annotated[str | None, typer.Option(help="comma-separated district codes")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (gateway)")] = None,
) -> None:
    """Run one role against external NATS_URL / DATABASE_URL (distributed mode)."""
    settings = _settings(None, port)
    configure_logging(settings.log_level, settings.log_json)
    if not settings.nats_url or not settings.database_url:
        console.print(
            "[red]gridctl run needs NATS_URL and DATABASE_URL[/] (use `gridctl up` "
            "for the embedded all-in-one mode)"
        )
        raise typer.Exit(2)
    parts = [p.strip() for p in partitions.split(",")] if partitions else None
    aio.run(_run(settings, role, parts))


async def _run(settings: Settings, role: str, partitions: list[str] | None) -> None:
    from gateways.http.app import create_app
    from gateways.http.server import make_server
    from gateways.runtime import ROLES, Runtime

    assert settings.nats_url and settings.database_url
    runtime = await Runtime.open(settings, settings.nats_url, settings.database_url)
    try:
        if role == "gateway":
            server = make_server(create_app(runtime), settings.http_host, settings.http_port)
            await server.serve()
            return
        if role not in ROLES:
            console.print(f"[red]unknown role {role!r}[/]; roles: gateway, {', '.join(ROLES)}")
            raise typer.Exit(2)
        runtime.start([role], partitions)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runtime.close()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the standard benchmarks (own embedded system) and write the numbers to docs/.

    Options: --reports N --batch B --rate R --seconds S --cases N --out FILE (see
    benchmarks/standard.py); the numbers replace the generated section of docs/performance.md.
    """
    from benchmarks.standard import main as bench_main

    bench_main(list(ctx.args))


if __name__ == "__main__":
    app()
