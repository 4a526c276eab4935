"""``gridctl households``: import and export the household register (xlsx / csv), verify
the households' hash chains.

Runs against the database of the environment (``DATABASE_URL`` / ``GRID_DB_SCHEMA``, as the
other ``gridctl`` commands). Imports act as ``system`` with the actor given (recorded in every
event); rows that cannot be taken are written to a rejected-rows report (csv) next to the
file, each with its row number and the reason. Exports are the full register (an operator's
tool; the API's export masks by role).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console

from core.db import create_pool
from core.refdata import load_reference
from core.settings import Settings
from gateways import household_files as files
from gateways.cli_users import _database_url
from gateways.households import HouseholdApp, import_rows, schedules_for
from projections import households as model

app = typer.Typer(help="households (户情) and care visits (六必访): import, export, verify",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _run(work: Callable[[HouseholdApp], Awaitable[T]]) -> T:
    settings = Settings()

    async def main() -> T:
        try:
            pool = await create_pool(_database_url(settings), settings.db_schema, max_size=2)
        except (OSError, asyncpg.PostgresError) as exc:
            err.print(f"[red]cannot reach PostgreSQL[/]: {exc}")
            raise typer.Exit(2) from exc
        try:
            async with pool.acquire() as conn:
                await model.setup(conn)
            ref = load_reference(settings)
            return await work(HouseholdApp(pool, ref, schedules_for(settings.city_dir)))
        finally:
            await pool.close()

    return asyncio.run(main())


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="an .xlsx or .csv register")],
    actor: Annotated[str, typer.Option(help="who imports (recorded in the events)")] = "import",
    rejected: Annotated[
        Path | None, typer.Option(help="where to write the rejected rows (csv)")
    ] = None,
) -> None:
    """Register the households of a spreadsheet; the same file again changes nothing."""
    data = path.read_bytes()

    async def work(hh: HouseholdApp) -> tuple[int, int, list[dict[str, Any]]]:
        parsed = files.parse_import(files.read_table(data, path.name), hh.ref.jurisdiction)
        made, existing, refused = await import_rows(
            hh, parsed.rows, actor=actor, role="system", channel="import",
            at=datetime.now(UTC))
        return made, existing, [*parsed.rejected, *refused]

    made, existing, bad = _run(work)
    out.print(f"registered {made}, already there {existing}, rejected {len(bad)}")
    if bad:
        target = rejected or path.with_name(path.stem + ".rejected.csv")
        target.write_bytes(files.rejected_report(bad))
        out.print(f"rejected rows: {target}")
        for item in bad[:10]:
            out.print(f"  row {item['line']}: {item['reason']}")
        raise typer.Exit(1)


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="the file to write (.xlsx or .csv)")],
    grid: Annotated[str | None, typer.Option(help="one grid only")] = None,
) -> None:
    """Write the register (every household, unmasked: an operator's copy)."""

    async def work(hh: HouseholdApp) -> int:
        async with hh.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM household_register WHERE NOT archived AND "
                "($1::text IS NULL OR grid = $1) ORDER BY grid, address", grid)
            await model.log_read(conn, "cli", "system", "export",
                                 [r["household_id"] for r in rows], True, str(path))
        fmt = "csv" if path.suffix.lower() == ".csv" else "xlsx"
        path.write_bytes(files.write_table(
            files.EXPORT_COLUMNS, (files.export_cells({**dict(r), "details": "full"})
                                   for r in rows), fmt))
        return len(rows)

    count = _run(work)
    out.print(f"wrote {count} households to {path}")


@app.command()
def verify() -> None:
    """Check every household's hash chain; exit 1 naming the broken ones."""

    async def work(hh: HouseholdApp) -> list[tuple[str, int]]:
        from aggregates.households import verify_chain

        broken = []
        async with hh.pool.acquire() as conn:
            ids = [r["household_id"] for r in await conn.fetch(
                "SELECT DISTINCT household_id FROM household_events")]
            for hid in ids:
                at = verify_chain(await model.load_events(conn, hid))
                if at is not None:
                    broken.append((hid, at))
        return broken

    broken = _run(work)
    for hid, version in broken:
        out.print(f"[red]broken[/] {hid} at version {version}")
    if broken:
        raise typer.Exit(1)
    out.print("every household's chain holds")
