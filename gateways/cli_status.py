"""``gridctl status``: what an operator asks first — is it running, is it keeping up.

Prints (zh-Hans, rich tables; ``--json`` for scripts and monitoring):

* 版本 — the package version, the city, the schema and stream prefix;
* 服务器 — NATS JetStream, PostgreSQL and the HTTP gateway: reachable or not, their versions;
* 角色进程 — the role processes of ``gridctl up`` (from its state lock: pid, alive, restarts),
  else the roles seen pulling from their durable consumers;
* 消费者积压 — each durable consumer's pending and unacknowledged messages (consumer lag);
* 读模型延迟 — per read model, events stored but not yet applied (and for how long), and
  the relay's lag behind the event store;
* 死信队列 — messages in the DLQ (``gridctl dlq`` lists and replays them);
* 用户 — how many users can sign in; none: how to create the first admin.

The box is found from ``NATS_URL`` / ``DATABASE_URL``, else from the state lock of a running
``gridctl up`` in ``GRID_STATE_DIR``. Exit code 0 when every server answers and nothing is in
the DLQ, 1 otherwise (so ``gridctl status --json`` can be a health check).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings
from gateways.cli_help import ZhGroup

app = typer.Typer(cls=ZhGroup)
LAG_OK = 1000  # events a read model may trail by before the status calls it lagging


def version() -> str:
    try:
        return importlib.metadata.version("griddispatch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def locate(settings: Settings) -> dict[str, Any]:
    """Where the box answers: settings first, then the state lock of ``gridctl up``."""
    from core.statelock import StateLock

    holder = StateLock.holder(settings.state_dir.resolve()) or {}
    return {
        "nats_url": settings.nats_url or holder.get("nats_url"),
        "database_url": settings.database_url or holder.get("database_url"),
        "http_url": holder.get("command_centre")
        or f"http://{settings.http_host}:{settings.http_port}/",
        "box": {k: holder[k] for k in ("pid", "started_at") if k in holder} or None,
        "roles": holder.get("roles"),
    }


async def collect(settings: Settings, where: dict[str, Any]) -> dict[str, Any]:
    """The whole status as plain data (what ``--json`` prints)."""
    from core.refdata import load_reference

    ref = load_reference(settings)
    out: dict[str, Any] = {
        "version": version(),
        "city": {"code": ref.jurisdiction.city_code, "name": ref.jurisdiction.name_zh},
        "schema": settings.db_schema,
        "stream_prefix": settings.stream_prefix,
        "box": where["box"],
        "servers": {},
        "roles": [],
        "consumers": [],
        "projections": [],
        "relay_lag": None,
        "dlq": None,
        "users": None,
    }
    await asyncio.gather(
        _nats(settings, where, out), _postgres(settings, where, ref.partitions, out),
        _http(where, out),
    )
    roles = where.get("roles")
    if roles:
        import psutil

        out["roles"] = [
            {**r, "alive": bool(r.get("pid")) and psutil.pid_exists(int(r["pid"]))}
            for r in roles
        ]
    else:  # not a gridctl up of this state dir: the roles seen pulling
        seen: dict[str, int] = {}
        for c in out["consumers"]:
            role = _role_of(c["name"])
            seen[role] = seen.get(role, 0) + c["waiting"]
        out["roles"] = [{"role": r, "pid": None, "alive": n > 0, "restarts": None,
                         "seen_as": "pulling"} for r, n in sorted(seen.items())]
    return out


def _role_of(consumer: str) -> str:
    for prefix, role in (("worker", "worker"), ("proj", "projector"), ("notif", "notifier"),
                         ("watch", "watcher"), ("relay", "relay")):
        if consumer.startswith(prefix):
            return role
    return consumer


async def _nats(settings: Settings, where: dict[str, Any], out: dict[str, Any]) -> None:
    url = where["nats_url"]
    if not url:
        out["servers"]["nats"] = {"url": None, "ok": False, "error": "NATS_URL 未设置"}
        return
    import nats

    from core.messaging import Topology

    try:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0,
                                allow_reconnect=False)
    except Exception as exc:  # the server is down: that is the answer
        out["servers"]["nats"] = {"url": url, "ok": False, "error": str(exc) or type(exc).__name__}
        return
    try:
        v = nc.connected_server_version
        out["servers"]["nats"] = {"url": url, "ok": True,
                                  "version": f"{v.major}.{v.minor}.{v.patch}"}
        js = nc.jetstream(timeout=3)
        topo = Topology(settings.stream_prefix)
        for stream in (topo.commands_stream, topo.events_stream):
            with contextlib.suppress(Exception):
                for c in await js.consumers_info(stream):
                    if not c.config.durable_name:
                        continue
                    out["consumers"].append({
                        "stream": stream, "name": c.name, "pending": c.num_pending or 0,
                        "ack_pending": c.num_ack_pending or 0, "waiting": c.num_waiting or 0,
                        "redelivered": c.num_redelivered or 0,
                    })
        try:
            info = await js.stream_info(topo.dlq_stream)
            out["dlq"] = int(info.state.messages)
        except Exception:  # no DLQ stream yet: nothing ever failed
            out["dlq"] = 0
    finally:
        await nc.close()


async def _postgres(
    settings: Settings, where: dict[str, Any], partitions: list[str], out: dict[str, Any]
) -> None:
    url = where["database_url"]
    if not url:
        out["servers"]["postgres"] = {"url": None, "ok": False, "error": "DATABASE_URL 未设置"}
        return
    import asyncpg

    from core import eventlog
    from projections.notifications import NotifyProjection
    from projections.read_models import all_projections

    try:
        conn = await asyncpg.connect(url, timeout=3,
                                     server_settings={"search_path": settings.db_schema})
    except Exception as exc:  # unreachable or refused: that is the answer
        out["servers"]["postgres"] = {"url": _safe(url), "ok": False,
                                      "error": str(exc) or type(exc).__name__}
        return
    try:
        version = conn.get_server_version()
        out["servers"]["postgres"] = {"url": _safe(url), "ok": True,
                                      "version": f"{version.major}.{version.minor}"}
        heads = {}
        for p in partitions:
            with contextlib.suppress(Exception):
                heads[p] = await eventlog.head(conn, p)
        applied: dict[tuple[str, str], tuple[int, float]] = {}
        if await conn.fetchval("SELECT to_regclass('projection_positions')"):
            for r in await conn.fetch(
                "SELECT projection, partition, position, "
                "extract(epoch FROM now() - updated_at)::float8 AS age FROM projection_positions"
            ):
                applied[(r["projection"], r["partition"])] = (int(r["position"]), r["age"] or 0.0)
        for name in [*(p.name for p in all_projections()), NotifyProjection.name, "reporter_sms"]:
            lag = 0
            oldest = 0.0
            for p, head in heads.items():
                position, age = applied.get((name, p), (0, 0.0))
                behind = max(0, head - position)
                lag += behind
                if behind:
                    oldest = max(oldest, age)
            out["projections"].append({"name": name, "lag": lag,
                                       "lag_seconds": round(oldest, 1)})
        if await conn.fetchval("SELECT to_regclass('relay_positions')"):
            relay = {r["partition"]: int(r["position"])
                     for r in await conn.fetch("SELECT partition, position FROM relay_positions")}
            out["relay_lag"] = sum(max(0, h - relay.get(p, 0)) for p, h in heads.items())
        if await conn.fetchval("SELECT to_regclass('users')"):
            out["users"] = {
                "total": int(await conn.fetchval("SELECT count(*) FROM users")),
                "admins": int(await conn.fetchval(
                    "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled")),
            }
        else:
            out["users"] = {"total": 0, "admins": 0}
    finally:
        await conn.close()


def _safe(url: str) -> str:
    """A URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def _http(where: dict[str, Any], out: dict[str, Any]) -> None:
    import httpx

    base = where["http_url"].rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            ready = await client.get(f"{base}/readyz")
        body = ready.json() if ready.headers.get("content-type", "").startswith(
            "application/json") else {}
        out["servers"]["gateway"] = {"url": base + "/", "ok": ready.status_code == 200,
                                     "checks": body.get("checks")}
    except httpx.HTTPError as exc:
        out["servers"]["gateway"] = {"url": base + "/", "ok": False,
                                     "error": str(exc) or type(exc).__name__}


def healthy(status: dict[str, Any]) -> bool:
    """Every server answers and the DLQ is empty."""
    return all(s.get("ok") for s in status["servers"].values()) and not status["dlq"]


FIRST_ADMIN = (
    "此城市还没有可以登录的用户。创建第一个管理员:\n"
    "  gridctl users add admin --role admin --name 系统管理员\n"
    "(按提示输入两次密码; 脚本中可用 --password-stdin。其他用户: "
    "gridctl users add <用户名> --role <角色> --node <辖区代码> (示例见 gridctl users add --help), "
    "或由管理员调用 /v1/admin/users (接口文档 /docs)。)"
)


def render(status: dict[str, Any], console: Console) -> None:
    """The status for people, in zh-Hans."""
    ok, bad = "[green]正常[/]", "[red]异常[/]"
    box = status["box"]
    console.print(
        f"[bold]griddispatch {status['version']}[/] · 城市 {status['city']['name']}"
        f"({status['city']['code']}) · 数据库模式 {status['schema']} · 流前缀 "
        f"{status['stream_prefix']}"
        + (f" · gridctl up 进程 {box['pid']}" if box and box.get("pid") else "")
    )
    servers = Table(title="服务器")
    for column in ("服务", "地址", "状态", "说明"):
        servers.add_column(column)
    names = {"nats": "NATS JetStream", "postgres": "PostgreSQL", "gateway": "HTTP 网关"}
    for key, s in status["servers"].items():
        note = (s.get("version") and f"版本 {s['version']}") or s.get("error") or ""
        if key == "gateway" and s.get("checks"):
            note = "; ".join(f"{k} {'✓' if v else '✗'}" for k, v in s["checks"].items())
        servers.add_row(names.get(key, key), s.get("url") or "—", ok if s.get("ok") else bad,
                        note)
    console.print(servers)
    roles = Table(title="角色进程")
    for column in ("角色", "进程号", "状态", "重启次数"):
        roles.add_column(column)
    for r in status["roles"]:
        roles.add_row(r["role"], str(r.get("pid") or "—"),
                      ("[green]运行中[/]" if r["alive"] else "[red]未运行[/]"),
                      "—" if r.get("restarts") is None else str(r["restarts"]))
    if not status["roles"]:
        roles.add_row("—", "—", "[yellow]未发现角色进程[/]", "—")
    console.print(roles)
    consumers = Table(title="消费者积压")
    for column in ("流", "消费者", "待投递", "待确认", "拉取中"):
        consumers.add_column(column, justify="left" if column in ("流", "消费者") else "right")
    for c in status["consumers"]:
        consumers.add_row(c["stream"], c["name"], str(c["pending"]), str(c["ack_pending"]),
                          str(c["waiting"]))
    console.print(consumers)
    lag = Table(title="读模型延迟")
    for column in ("读模型", "未应用事件", "落后时长"):
        lag.add_column(column, justify="left" if column == "读模型" else "right")
    for p in status["projections"]:
        style = "red" if p["lag"] > LAG_OK else ("yellow" if p["lag"] else "green")
        lag.add_row(p["name"], f"[{style}]{p['lag']}[/]",
                    f"{p['lag_seconds']:.0f} 秒" if p["lag"] else "—")
    if status["relay_lag"] is not None:
        lag.add_row("中继 relay(事件存储 → 事件流)", str(status["relay_lag"]), "—")
    console.print(lag)
    dlq = status["dlq"]
    console.print(
        "死信队列: " + ("—(NATS 不可达)" if dlq is None else
                    f"[green]{dlq} 条[/]" if not dlq else
                    f"[red]{dlq} 条[/](gridctl dlq list 查看, gridctl dlq replay 重放)")
    )
    users = status["users"]
    if users is not None:
        console.print(f"用户: {users['total']} 个, 其中启用的管理员 {users['admins']} 个")
        if not users["total"]:
            console.print(f"[yellow]{FIRST_ADMIN}[/]")
    console.print("总体: " + (ok if healthy(status) else bad))


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="机器可读的 JSON 输出")] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="gridctl up --state-dir 的状态目录 (默认 .state)"),
    ] = None,
) -> None:
    """运行状态: 服务器、角色进程、消费者与读模型延迟、死信队列、用户、版本。"""
    settings = Settings()  # not the cached one: the environment may have changed
    if state_dir is not None:
        settings = settings.model_copy(update={"state_dir": state_dir})
    where = locate(settings)
    started = time.monotonic()
    data = asyncio.run(collect(settings, where))
    data["took_ms"] = round((time.monotonic() - started) * 1000)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        render(data, Console(width=int(os.environ.get("COLUMNS", 120))))
    if not healthy(data):
        raise typer.Exit(1)
