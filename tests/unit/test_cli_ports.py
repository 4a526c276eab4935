"""``gridctl up`` refuses an embedded server's port that another process holds, clearly and
before starting anything (a second box on another state directory is the usual cause; the
server itself would only fail to bind, after a wait)."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from gateways.cli import app


def test_a_taken_nats_port_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(
            app, ["up", "--state-dir", str(tmp_path / "box"), "--port", "0", "--sample", "0"],
            env={"GRID_NATS_PORT": str(port), "NATS_URL": "", "DATABASE_URL": ""},
        )
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert f"端口 {port} 已被其他进程占用" in text and "GRID_NATS_PORT=0" in text
    assert not (tmp_path / "box" / "nats").exists()  # nothing was started
