"""The gateway runs with the collector tuned (``core.gctune``): its start-up objects frozen,
so a full collection does not walk them while requests wait (36–48 ms per collection with
them, docs/performance.md). Checked in a child process: freezing is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

from core.gctune import THRESHOLDS

SCRIPT = """
import gc, json
from fastapi import FastAPI
from gateways.http.server import make_server
app = FastAPI()
before = gc.get_freeze_count()
make_server(app, "127.0.0.1", 0)
print(json.dumps({"before": before, "after": gc.get_freeze_count(),
                  "thresholds": gc.get_threshold()}))
"""


def test_the_gateway_server_freezes_its_start_up_objects() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, check=True, timeout=120
    )
    state = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert state["before"] == 0
    assert state["after"] > 10_000  # the modules, the app and its routes
    assert tuple(state["thresholds"]) == THRESHOLDS
