"""``gridctl`` help in zh-Hans, also typer's own words (issue 16: CLI output meant for people).

Every ``gridctl`` help text and option help is written in Chinese where it is declared. What
typer adds by itself — the ``--help`` option, the shell-completion options of the root
command, the panel titles (Options, Arguments, Commands), ``[required]`` and the error panel —
is English; :class:`ZhGroup` (the ``cls`` of every ``gridctl`` typer app) puts those into
Chinese when a command's help is built. ``tests/unit/test_cli_help.py`` walks every command
and fails on help without Chinese.
"""

from __future__ import annotations

from typing import Any

from typer import _click, rich_utils
from typer.core import TyperGroup

#: typer's built-in option help, English → zh-Hans.
BUILTIN_HELP = {
    "Show this message and exit.": "显示此帮助并退出。",
    "Install completion for the current shell.": "为当前 shell 安装命令补全。",
    "Show completion for the current shell, to copy it or customize the installation.":
        "显示当前 shell 的补全脚本, 便于复制或自行安装。",
    "Install completion for the specified shell.": "为指定的 shell 安装命令补全。",
    "Show completion for the specified shell, to copy it or customize the installation.":
        "显示指定 shell 的补全脚本, 便于复制或自行安装。",
}

# typer's help renderer reads these module constants each time it draws a help page.
rich_utils.ARGUMENTS_PANEL_TITLE = "参数"
rich_utils.OPTIONS_PANEL_TITLE = "选项"
rich_utils.COMMANDS_PANEL_TITLE = "命令"
rich_utils.ERRORS_PANEL_TITLE = "错误"
rich_utils.ABORTED_TEXT = "已中止。"
rich_utils.REQUIRED_LONG_STRING = "[必填]"
rich_utils.DEFAULT_STRING = "[默认: {}]"
rich_utils.ENVVAR_STRING = "[环境变量: {}]"
rich_utils.DEPRECATED_STRING = "(已弃用) "
rich_utils.RICH_HELP = "用 [blue]'{command_path} {help_option}'[/] 查看帮助。"


def localize(params: list[Any]) -> list[Any]:
    """The parameters with typer's built-in English help replaced (in place)."""
    for param in params:
        zh = BUILTIN_HELP.get(getattr(param, "help", None) or "")
        if zh is not None:
            param.help = zh
    return params


class ZhGroup(TyperGroup):
    """A typer group whose help — its own and its commands' — shows typer's words in zh-Hans.

    The ``--help`` option is made per command on first use; a group hands out its commands
    (to run them or to draw their help) through :meth:`get_command`, so that is where a
    command's options are put into Chinese."""

    def get_params(self, ctx: _click.Context) -> list[Any]:
        return localize(super().get_params(ctx))

    def get_command(self, ctx: _click.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            localize(command.get_params(ctx))
        return command
