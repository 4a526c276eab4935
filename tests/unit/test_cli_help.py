"""``gridctl`` help is zh-Hans (issue 16): every command, argument and option of the typer
app — typer's own ``--help`` and completion options included — has help with Chinese in it,
so new English help cannot creep back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer import _click
from typer.testing import CliRunner

from gateways.cli import app

CJK = re.compile(r"[\u4e00-\u9fff]")


def _commands(group: Any, ctx: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, command, context) for the group and everything below it."""
    yield path, group, ctx
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = _click.Context(command, info_name=name, parent=ctx)
        if hasattr(command, "list_commands"):
            yield from _commands(command, sub, f"{path} {name}")
        else:
            yield f"{path} {name}", command, sub


def test_every_command_argument_and_option_has_chinese_help() -> None:
    root = typer.main.get_command(app)
    missing = []
    seen = 0
    for path, command, ctx in _commands(root, _click.Context(root, info_name="gridctl"), "gridctl"):
        seen += 1
        if not CJK.search(command.help or ""):
            missing.append(f"{path}: {command.help!r}")
        for param in command.get_params(ctx):
            if not CJK.search(getattr(param, "help", None) or ""):
                missing.append(f"{path} {param.opts}: {getattr(param, 'help', None)!r}")
    assert seen > 40  # every group and command was walked
    assert not missing, "\n".join(missing)


def test_help_pages_show_no_english_words_of_typer() -> None:
    runner = CliRunner()
    for args in (["--help"], ["users", "add", "--help"], ["basemap", "sample", "--help"]):
        shown = runner.invoke(app, args, env={"COLUMNS": "160"})
        assert shown.exit_code == 0, shown.output
        for english in ("Show this message", "Install completion", "Options", "Arguments",
                        "Commands", "[required]"):
            assert english not in shown.output, (args, english)
        assert "显示此帮助并退出" in shown.output
