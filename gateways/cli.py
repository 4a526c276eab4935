"""``gridctl``: run, operate and inspect griddispatch from a terminal (typer + rich)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core.logging import configure_logging, get_logger
from core.settings import Settings, get_settings

app = typer.Typer(
    help="griddispatch — grid management and case dispatch (網格化管理).", no_args_is_help=True
)
console = Console(stderr=True)
log = get_logger("cli")


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
) -> None:
    """Run the whole system in one process tree: embedded NATS + PostgreSQL unless NATS_URL /
    DATABASE_URL are set, then gateway, workers, relay and projections."""
    settings = _settings(state_dir, port)
    if host:
        settings = settings.model_copy(update={"http_host": host})
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(_up(settings, sample))


async def _up(settings: Settings, sample: int) -> None:
    from core.embedded import EmbeddedNats, EmbeddedPostgres
    from gateways.http.app import create_app
    from gateways.http.server import make_server
    from gateways.runtime import ROLES, Runtime
    from gateways.sample import load_sample_reports

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
        runtime = await Runtime.open(settings, nats_url, database_url)
        runtime.start(ROLES)
        api = create_app(runtime)
        server = make_server(api, settings.http_host, settings.http_port)
        base = f"http://{settings.http_host}:{settings.http_port}"
        console.print(
            f"[bold]command centre[/]  {base}/\n[bold]API docs[/]        {base}/docs\n"
            f"[bold]Open311[/]         {base}/open311/v2/services.json\n"
            "Ctrl-C stops everything cleanly."
        )
        sample_task = asyncio.create_task(load_sample_reports(runtime, sample)) if sample else None
        try:
            await server.serve()
        finally:
            if sample_task is not None:
                sample_task.cancel()
            await runtime.close()
    finally:
        if pg_srv is not None:
            await asyncio.to_thread(pg_srv.stop)
        if nats_srv is not None:
            await asyncio.to_thread(nats_srv.stop)
        console.print("stopped.")


def _port_from_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@app.command()
def run(
    role: Annotated[str, typer.Argument(help="gateway | worker | relay | projector")],
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
    asyncio.run(_run(settings, role, parts))


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


if __name__ == "__main__":
    app()
