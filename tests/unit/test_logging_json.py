"""Production log lines (GRID_LOG_JSON): one JSON object per line, Chinese text as itself
(a log search for a district's name must find it), the request's bound context on it."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import structlog
from core.logging import configure_logging, get_logger
configure_logging("INFO", json=True)
structlog.contextvars.bind_contextvars(request_id="r-1")
log = get_logger("gateway")
log.debug("hidden")
log.info("report.accepted", district="南明区", duplicate=False, at=object())
"""


def test_json_lines_keep_chinese_and_the_context() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, check=True, timeout=60
    )
    lines = done.stderr.decode("utf-8").splitlines()
    assert len(lines) == 1, lines  # the debug line is filtered at INFO
    assert "南明区" in lines[0]  # raw UTF-8, not \\u escapes
    event = json.loads(lines[0])
    assert event["event"] == "report.accepted"
    assert event["district"] == "南明区"
    assert event["request_id"] == "r-1"
    assert event["component"] == "gateway"
    assert event["level"] == "info"
    assert event["duplicate"] is False
    assert event["at"].startswith("<object object")  # unknown types as their repr
    assert event["timestamp"].endswith("Z")
