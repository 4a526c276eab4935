"""``gridctl bench`` end to end with tiny numbers: the standard set starts its own system,
drives every measurement and writes the generated section — so the benchmark that
docs/performance.md quotes cannot silently rot. (It measures nothing here: the sizes are far
too small; speed is never asserted in tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.standard import END, START

pytestmark = pytest.mark.slow


def test_bench_runs_the_standard_set_and_writes_its_section(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    out.write_text("# Performance\n\nhand-written analysis stays.\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "gateways.cli", "bench", "--reports", "200", "--batch", "20",
         "--rate", "40", "--seconds", "2", "--latency-rates", "20", "--cases", "200",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert "hand-written analysis stays." in text
    section = text.split(START, 1)[1].split(END, 1)[0]
    results = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    assert results["intake_single"]["reports"] == 200 and results["intake_single"]["refused"] == 0
    assert results["intake_batched"]["reports"] == 400
    assert set(results["latency"]) == {"20_per_s", "40_per_s"}
    at40 = results["latency"]["40_per_s"]
    assert at40["report_to_visible"]["n"] == 80
    assert at40["not_visible"] == at40["refused"] == 0
    assert results["mix"]["reports_visible"] == results["mix"]["reports_sent"] == 80
    assert {"gateway", "worker", "relay", "projector,notifier"} <= set(results["rss_peak_mb"])
    speed = results["machine"]
    assert speed["python_loop_ms_before"] > 0 and speed["python_loop_ms_after"] > 0
    assert 0 <= speed["cpu_steal_pct"] <= 100
    assert f"{speed['python_loop_ms_before']} ms before" in section
    store = results["store"]
    assert store["load"]["cases"] == 200
    assert set(store["rebuild"]) == {"queue", "timeline", "map", "metrics"}
    assert all(v["events"] > 200 for v in store["rebuild"].values())
    assert store["queries"]["queue_newest"]["n"] > 0
