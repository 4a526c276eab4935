"""``gridctl up`` refuses an embedded server's port that another process holds, clearly and
before starting anything (a second box on another state directory is the usual cause; the
server itself would only fail to bind, after a wait). Run as its own process: ``up``
configures the process's logging, which must not leak into the other tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def test_a_taken_nats_port_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
        result = subprocess.run(
            [sys.executable, "-m", "gateways.cli", "up", "--state-dir", str(tmp_path / "box"),
             "--port", "0", "--sample", "0"],
            env={**env, "GRID_NATS_PORT": str(port), "COLUMNS": "200"},
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 3, result.stdout + result.stderr
    text = " ".join((result.stdout + result.stderr).split())
    assert f"端口 {port} 已被其他进程占用" in text and "GRID_NATS_PORT=0" in text
    assert not (tmp_path / "box" / "nats").exists()  # nothing was started
