"""``gridctl status`` against a running system (real NATS and PostgreSQL): servers, roles
seen pulling, consumer and read-model lag, DLQ size, users, version — in zh-Hans for people
and as JSON; and ``gridctl users add --role admin`` works with nothing but the role."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from gateways.cli import app
from gateways.cli_status import FIRST_ADMIN, render


def _env(system: dict[str, Any]) -> dict[str, str]:
    s = system["settings"]
    return {
        "NATS_URL": s.nats_url, "DATABASE_URL": s.database_url,
        "GRID_DB_SCHEMA": s.db_schema, "GRID_STREAM_PREFIX": s.stream_prefix,
        "GRID_HTTP_PORT": "9",  # no gateway listens there: the status must say so
        "COLUMNS": "120",
    }


async def test_status_and_the_first_admin(system: dict[str, Any]) -> None:
    runner = CliRunner()
    env = _env(system)

    def invoke(*args: str, stdin: str | None = None) -> Any:
        return runner.invoke(app, list(args), env=env, input=stdin)

    # The login name defaults to "admin" for the admin role; the sample city's demo users
    # already have one, which is said plainly.
    taken = await asyncio.to_thread(invoke, "users", "add", "--role", "admin",
                                    "--password-stdin", stdin="Ein-langes-Passwort-2026\n")
    assert taken.exit_code == 1 and "用户 admin 已存在" in taken.output
    added = await asyncio.to_thread(invoke, "users", "add", "chief", "--role", "admin",
                                    "--password-stdin", stdin="Ein-langes-Passwort-2026\n")
    assert added.exit_code == 0, added.output
    assert "已添加用户 chief" in added.output

    async def running() -> dict[str, Any] | None:
        result = await asyncio.to_thread(invoke, "status", "--json")
        data: dict[str, Any] = _json_in(result.output)
        consumers = {c["name"] for c in data["consumers"]}
        return data if "worker_all" in consumers and data["roles"] else None

    from tests.conftest import eventually

    data = await eventually(running, timeout=20)
    assert data["version"] and data["city"]["code"] == "520100"
    assert data["servers"]["nats"]["ok"] and data["servers"]["postgres"]["ok"]
    assert data["servers"]["gateway"]["ok"] is False  # nothing on port 9
    assert data["dlq"] == 0
    assert {p["name"] for p in data["projections"]} >= {"queue", "timeline", "map", "metrics",
                                                        "notify"}
    assert all(p["lag"] >= 0 for p in data["projections"])
    assert {r["role"] for r in data["roles"] if r["alive"]} >= {"worker", "projector"}
    assert data["users"]["admins"] >= 1 and data["users"]["total"] > 1
    human = await asyncio.to_thread(invoke, "status")
    assert human.exit_code == 1  # the gateway does not answer
    for words in ("服务器", "NATS JetStream", "正常", "角色进程", "消费者积压", "worker_all",
                  "读模型延迟", "死信队列: 0 条", "用户:", "总体: 异常"):
        assert words in human.output, words


def test_a_city_without_users_is_told_how_to_create_its_first_admin() -> None:
    console = Console(record=True, width=120)
    render({
        "version": "0.1.0", "city": {"code": "110100", "name": "北京市"}, "schema": "public",
        "stream_prefix": "GRID", "box": None, "roles": [], "consumers": [],
        "projections": [], "relay_lag": 0, "dlq": 0, "users": {"total": 0, "admins": 0},
        "servers": {"postgres": {"url": "postgresql://x", "ok": True, "version": "16.4"}},
    }, console)
    text = console.export_text()
    assert "gridctl users add admin --role admin" in text and "还没有可以登录的用户" in text
    assert FIRST_ADMIN.splitlines()[0] in text


def _json_in(output: str) -> dict[str, Any]:
    """The JSON document in the command's output. CliRunner swaps ``sys.stdout`` for the
    whole process while the command runs, so a log line of another test's system, closing
    in the background, can land in the captured text too."""
    start = output.find("\n{") + 1 if not output.startswith("{") else 0
    document, _ = json.JSONDecoder().raw_decode(output[start:])
    assert isinstance(document, dict)
    return document
