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
from gateways.cli_help import ZhGroup

app = typer.Typer(cls=ZhGroup, help="用户管理: 用户、角色与辖区。", no_args_is_help=True)
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
            err.print(f"[red]无法连接 PostgreSQL[/] {_database_url(settings)}: {exc}")
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
        password = typer.prompt("密码", hide_input=True, confirmation_prompt=confirm)
    try:
        passwords.check_policy(password)
    except passwords.WeakPassword as exc:
        raise _fail(str(exc)) from exc
    return password


def _grant_failed(exc: GrantError) -> typer.Exit:
    return _fail("; ".join(f"{field}: {message}" for field, message in exc.problems))


def _show(users: list[UserRecord]) -> None:
    table = Table(title=f"{len(users)} 个用户")
    for column in ("用户名", "用户 ID", "角色", "辖区", "姓名", "权限范围", "状态"):
        table.add_column(column)
    for u in users:
        where = u.node or u.department or ", ".join(u.grids) or "—"
        scopes = "角色默认" if u.scopes is None else " ".join(u.scopes)
        table.add_row(
            u.username,
            u.user_id,
            u.role,
            where,
            u.name,
            scopes,
            "[red]已停用[/]" if u.disabled else "启用",
        )
    out.print(table)


RoleOpt = Annotated[str, typer.Option(help=f"角色, 可选: {', '.join(HUMAN_ROLES)}")]
NodeOpt = Annotated[
    str | None,
    typer.Option(
        help="辖区节点代码 (call_taker、shift_leader、dispatcher、supervisor): "
        "管辖本节点及其下级"
    ),
]
DeptOpt = Annotated[str | None, typer.Option(help="部门代码 (handler)")]
GridOpt = Annotated[list[str] | None, typer.Option("--grid", help="网格代码 (inspector), 可重复")]
ScopeOpt = Annotated[
    list[str] | None, typer.Option("--scope", help="收窄角色的权限范围, 可重复")
]
UserArg = Annotated[str, typer.Argument(help="登录名")]
StdinOpt = Annotated[bool, typer.Option("--password-stdin", help="从标准输入读取密码")]


@app.command()
def add(
    username: Annotated[
        str | None, typer.Argument(help="登录名 (--role admin 时默认 admin)")
    ] = None,
    role: RoleOpt = "",
    name: Annotated[str | None, typer.Option(help="显示名称")] = None,
    node: NodeOpt = None,
    department: DeptOpt = None,
    grid: GridOpt = None,
    scope: ScopeOpt = None,
    user_id: Annotated[
        str | None, typer.Option(help="事件中的操作人 ID (默认为用户名)")
    ] = None,
    password_stdin: StdinOpt = False,
) -> None:
    """添加用户, 指定角色及其辖区 (密码输入两次)。

    \b
    新城市的第一个管理员:  gridctl users add admin --role admin --name 系统管理员
    区县派遣员:            gridctl users add nm-disp --role dispatcher --node 520102
    网格员:                gridctl users add insp-1 --role inspector --grid 520102001001
    部门处置人员:          gridctl users add san-1 --role handler \\
                               --department D-520102-sanitation
    代码见城市文件 (GRID_CITY, 如 deploy/cities/guiyang/city.json) 或
    GET /v1/jurisdiction 和 /v1/departments。
    """
    if role not in HUMAN_ROLES:
        raise _fail(f"--role: 可选 {', '.join(HUMAN_ROLES)} (如 --role admin)", 2)
    if username is None:
        if role != "admin":
            raise _fail("请给出新用户的登录名: gridctl users add <用户名> "
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
            raise _fail(f"用户 {username} 已存在") from exc

    user = _run(work)
    out.print(f"已添加用户 [bold]{user.username}[/]"
              f"({ROLE_LABELS.get(user.role, user.role)}), 现在可以登录")


@app.command("list")
def list_users(
    role: Annotated[str | None, typer.Option(help="只列出此角色")] = None,
    disabled: Annotated[
        bool | None, typer.Option(help="只列出已停用 (--disabled) 或启用 (--no-disabled) 的用户")
    ] = None,
) -> None:
    """列出用户: 角色、辖区和状态 (不显示密码)。"""

    async def work(store: UserStore, _: Jurisdiction) -> list[UserRecord]:
        return await store.list_users(role, disabled)

    _show(_run(work))


@app.command()
def passwd(username: UserArg, password_stdin: StdinOpt = False) -> None:
    """设置新密码 (该用户的会话和设备令牌随即失效)。"""
    password = _password(password_stdin)
    encoded = passwords.hash_password(password)

    async def work(store: UserStore, _: Jurisdiction) -> UserRecord | None:
        return await store.set_password(username, encoded)

    if _run(work) is None:
        raise _fail(f"没有用户 {username}")
    out.print(f"已修改 [bold]{username}[/] 的密码; 其会话已结束")


@app.command()
def disable(
    username: UserArg,
    enable: Annotated[bool, typer.Option("--enable", help="改为重新启用")] = False,
) -> None:
    """停用用户 (其令牌立即失效), 或用 --enable 重新启用。"""

    async def work(store: UserStore, j: Jurisdiction) -> UserRecord | None:
        return await store.update(username, {"disabled": not enable}, j)

    if _run(work) is None:
        raise _fail(f"没有用户 {username}")
    out.print(f"{username} {'已启用' if enable else '已停用'}")


@app.command()
def grant(
    username: UserArg,
    role: Annotated[str | None, typer.Option(help=f"新角色: {', '.join(HUMAN_ROLES)}")] = None,
    node: NodeOpt = None,
    department: DeptOpt = None,
    grid: GridOpt = None,
    scope: ScopeOpt = None,
    all_scopes: Annotated[
        bool, typer.Option("--all-scopes", help="恢复角色的全部权限范围")
    ] = False,
    name: Annotated[str | None, typer.Option(help="新的显示名称")] = None,
) -> None:
    """修改角色、辖区、权限范围或名称 (该用户的会话随即结束)。"""
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
        raise _fail("没有要修改的内容: 请给出 --role、--node、--department、--grid 或 --scope", 2)

    async def work(store: UserStore, j: Jurisdiction) -> UserRecord | None:
        try:
            return await store.update(username, changes, j)
        except GrantError as exc:
            raise _grant_failed(exc) from exc

    user = _run(work)
    if user is None:
        raise _fail(f"没有用户 {username}")
    _show([user])


@app.command()
def revoke(username: UserArg) -> None:
    """结束用户的全部会话和设备令牌 (手机丢失、人员离职)。"""

    async def work(store: UserStore, _: Jurisdiction) -> UserRecord | None:
        user = await store.get(username)
        if user is not None:
            await store.revoke_all(user.user_id, "revoked by gridctl")
        return user

    if _run(work) is None:
        raise _fail(f"没有用户 {username}")
    out.print(f"已撤销 {username} 的全部会话和设备令牌")


@app.command("hash")
def hash_cmd(
    password: Annotated[str | None, typer.Argument(help="密码 (不给则提示输入)")] = None,
) -> None:
    """打印密码的 argon2id 哈希 (用于 deploy/users.demo.json)。"""
    value = password if password is not None else _password(False, confirm=False)
    typer.echo(passwords.hash_password(value))
