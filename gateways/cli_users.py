"""``gridctl users``: users, roles and jurisdictions from a terminal (the admin API's twin).

    gridctl users add dispatcher-520102 --role dispatcher --node 520102 --name 南明区派遣员
    gridctl users add inspector-x --role inspector --grid 520102001001 --grid 520102001002
    gridctl users add handler-san --role handler --department D-520102-sanitation
    gridctl users list [--role dispatcher]
    gridctl users passwd dispatcher-520102          # asks twice; or --password-stdin
    gridctl users disable dispatcher-520102 [--enable]
    gridctl users grant dispatcher-520102 --node 520103     # change role / jurisdiction
    gridctl users revoke dispatcher-520102          # end every session and device token
    gridctl users hash 'a password'                 # argon2id hash (for users.demo.json)

Connects to ``DATABASE_URL`` (schema ``GRID_DB_SCHEMA``), or to the embedded PostgreSQL of
``gridctl up`` on 127.0.0.1:``GRID_PG_PORT`` (5433) when unset. Codes are checked against the
city (``GRID_CITY``). Changing a grant, a password, or disabling ends the user's sessions and
device tokens at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from core import passwords
from core.db import create_pool
from core.jurisdiction import Jurisdiction
from core.settings import Settings
from core.users import HUMAN_ROLES, GrantError, UserRecord, UserStore
from core.vocabulary import ROLE_LABELS

app = typer.Typer(help="Users, roles and jurisdictions (用户管理).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    port = os.environ.get("GRID_PG_PORT", "5433")
    return f"postgresql://postgres@127.0.0.1:{port}/griddispatch"


def _run(work: Callable[[UserStore, Jurisdiction], Awaitable[T]]) -> T:
    settings = Settings()  # not the cached one: the environment may have changed

    async def main() -> T:
        try:
            pool = await create_pool(_database_url(settings), settings.db_schema, max_size=2)
        except (OSError, asyncpg.PostgresError) as exc:
            err.print(f"[red]cannot reach PostgreSQL[/] at {_database_url(settings)}: {exc}")
            raise typer.Exit(2) from exc
        try:
            store = UserStore(pool)
            await store.setup()
            return await work(store, Jurisdiction.load(settings.city_dir))
        finally:
            await pool.close()

    return asyncio.run(main())


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]{message}[/]")
    return typer.Exit(code)


def _password(from_stdin: bool, confirm: bool = True) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=confirm)
    try:
        passwords.check_policy(password)
    except passwords.WeakPassword as exc:
        raise _fail(str(exc)) from exc
    return password


def _grant_failed(exc: GrantError) -> typer.Exit:
    return _fail("; ".join(f"{field}: {message}" for field, message in exc.problems))


def _show(users: list[UserRecord]) -> None:
    table = Table(title=f"{len(users)} users")
    for column in ("username", "user id", "role", "jurisdiction", "name", "scopes", "status"):
        table.add_column(column)
    for u in users:
        where = u.node or u.department or ", ".join(u.grids) or "—"
        scopes = "role default" if u.scopes is None else " ".join(u.scopes)
        table.add_row(
            u.username,
            u.user_id,
            u.role,
            where,
            u.name,
            scopes,
            "[red]disabled[/]" if u.disabled else "active",
        )
    out.print(table)


RoleOpt = Annotated[str, typer.Option(help=f"one of: {', '.join(HUMAN_ROLES)}")]
NodeOpt = Annotated[
    str | None,
    typer.Option(
        help="jurisdiction node (call_taker, shift_leader, dispatcher, "
        "supervisor): own node and everything below it"
    ),
]
DeptOpt = Annotated[str | None, typer.Option(help="department code (handler)")]
GridOpt = Annotated[list[str] | None, typer.Option("--grid", help="grid code (inspector), repeat")]
ScopeOpt = Annotated[
    list[str] | None, typer.Option("--scope", help="narrow the role's scopes, repeat")
]
StdinOpt = Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")]


@app.command()
def add(
    username: Annotated[
        str | None, typer.Argument(help="login name (default for --role admin: admin)")
    ] = None,
    role: RoleOpt = "",
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    node: NodeOpt = None,
    department: DeptOpt = None,
    grid: GridOpt = None,
    scope: ScopeOpt = None,
    user_id: Annotated[
        str | None, typer.Option(help="actor id in events (default: the username)")
    ] = None,
    password_stdin: StdinOpt = False,
) -> None:
    """Add a user with a role and its jurisdiction (asks for the password twice).

    \b
    The first admin of a new city:  gridctl users add admin --role admin --name 系统管理员
    A district dispatcher:          gridctl users add nm-disp --role dispatcher --node 520102
    A grid inspector:               gridctl users add insp-1 --role inspector --grid 520102001001
    A department handler:           gridctl users add san-1 --role handler \\
                                        --department D-520102-sanitation
    Codes: the city file (GRID_CITY, e.g. deploy/cities/guiyang/city.json) or GET
    /v1/jurisdiction and /v1/departments.
    """
    if role not in HUMAN_ROLES:
        raise _fail(f"--role: one of {', '.join(HUMAN_ROLES)} (e.g. --role admin)", 2)
    if username is None:
        if role != "admin":
            raise _fail("give the new user's login name: gridctl users add <username> "
                        f"--role {role} …", 2)
        username = "admin"
    password = _password(password_stdin)
    encoded = passwords.hash_password(password)

    async def work(store: UserStore, j: Jurisdiction) -> UserRecord:
        try:
            return await store.create(
                username,
                role,
                encoded,
                name=name,
                node=node,
                department=department,
                grids=grid or [],
                scopes=scope,
                user_id=user_id,
                jurisdiction=j,
            )
        except GrantError as exc:
            raise _grant_failed(exc) from exc
        except asyncpg.UniqueViolationError as exc:
            raise _fail(f"user {username} already exists") from exc

    user = _run(work)
    out.print(f"已添加用户 [bold]{user.username}[/]"
              f"({ROLE_LABELS.get(user.role, user.role)}), 现在可以登录")


@app.command("list")
def list_users(
    role: Annotated[str | None, typer.Option(help="only this role")] = None,
    disabled: Annotated[bool | None, typer.Option(help="only (not) disabled users")] = None,
) -> None:
    """List users with role, jurisdiction and status (never passwords)."""

    async def work(store: UserStore, _: Jurisdiction) -> list[UserRecord]:
        return await store.list_users(role, disabled)

    _show(_run(work))


@app.command()
def passwd(username: str, password_stdin: StdinOpt = False) -> None:
    """Set a new password (ends the user's sessions and device tokens)."""
    password = _password(password_stdin)
    encoded = passwords.hash_password(password)

    async def work(store: UserStore, _: Jurisdiction) -> UserRecord | None:
        return await store.set_password(username, encoded)

    if _run(work) is None:
        raise _fail(f"no user {username}")
    out.print(f"password of [bold]{username}[/] changed; their sessions ended")


@app.command()
def disable(
    username: str,
    enable: Annotated[bool, typer.Option("--enable", help="enable again instead")] = False,
) -> None:
    """Disable a user (their tokens stop working at once), or ``--enable`` them again."""

    async def work(store: UserStore, j: Jurisdiction) -> UserRecord | None:
        return await store.update(username, {"disabled": not enable}, j)

    if _run(work) is None:
        raise _fail(f"no user {username}")
    out.print(f"{username} {'enabled' if enable else 'disabled'}")


@app.command()
def grant(
    username: str,
    role: Annotated[str | None, typer.Option(help=f"new role: {', '.join(HUMAN_ROLES)}")] = None,
    node: NodeOpt = None,
    department: DeptOpt = None,
    grid: GridOpt = None,
    scope: ScopeOpt = None,
    all_scopes: Annotated[
        bool, typer.Option("--all-scopes", help="back to every scope of the role")
    ] = False,
    name: Annotated[str | None, typer.Option(help="new display name")] = None,
) -> None:
    """Change role, jurisdiction, scopes or name (ends the user's sessions)."""
    changes: dict[str, Any] = {}
    for key, value in (("role", role), ("node", node), ("department", department), ("name", name)):
        if value is not None:
            changes[key] = value
    if grid:
        changes["grids"] = list(grid)
    if scope:
        changes["scopes"] = list(scope)
    if all_scopes:
        changes["scopes"] = None
    if not changes:
        raise _fail("nothing to change: give --role, --node, --department, --grid or --scope", 2)

    async def work(store: UserStore, j: Jurisdiction) -> UserRecord | None:
        try:
            return await store.update(username, changes, j)
        except GrantError as exc:
            raise _grant_failed(exc) from exc

    user = _run(work)
    if user is None:
        raise _fail(f"no user {username}")
    _show([user])


@app.command()
def revoke(username: str) -> None:
    """End every session and device token of a user (a lost phone, a leaver)."""

    async def work(store: UserStore, _: Jurisdiction) -> UserRecord | None:
        user = await store.get(username)
        if user is not None:
            await store.revoke_all(user.user_id, "revoked by gridctl")
        return user

    if _run(work) is None:
        raise _fail(f"no user {username}")
    out.print(f"every session and device token of {username} revoked")


@app.command("hash")
def hash_cmd(password: Annotated[str | None, typer.Argument()] = None) -> None:
    """Print the argon2id hash of a password (for deploy/users.demo.json)."""
    value = password if password is not None else _password(False, confirm=False)
    typer.echo(passwords.hash_password(value))
