"""bench/stress.py --quick: a two-node run per input mode with the shipped settings (oneDNN on), the
SPARK-mode one starved on purpose; every run must succeed. The starved run is also the test of a node
that Spark feeds short: it tops its batches up from images it holds instead of being handed empty
batches (which oneDNN's Conv2D mishandles: "input depth must be evenly divisible by filter depth: 3 vs
32"), trains every epoch, and the driver says so. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, spark_env

pytestmark = pytest.mark.spark


@pytest.mark.timeout(1200)
def test_quick_stress_runs_all_succeed(tmp_path: Path):
    out = tmp_path / "stress.json"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "stress.py"), "--quick", "--out", str(out),
                             "--work-dir", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True,
                            timeout=1150, env=spark_env())  # the tests' fast-start JVMs for the drivers
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failures"] == 0 and report["runs_per_mode"] == 1 and report["starved_runs"] == 1
    assert {row["mode"] for row in report["rows"]} == {"spark", "tensorflow"}
    starved = [row for row in report["rows"] if row["starved"]]
    assert len(starved) == 1 and starved[0]["mode"] == "spark", report["rows"]
    row = starved[0]
    hungry, fed = row["nodes"]["worker:0"], row["nodes"]["chief:0"]
    assert hungry["epochs_run"] == fed["epochs_run"] == row["epochs"] == row["epochs_in_history"] == 8, row
    assert hungry["images_topped_up"] > hungry["top_up_read_ahead"], row  # trained on top-ups, not only read ahead
    assert hungry["items_fed"] < fed["items_fed"], row
    assert row["short_feed_warned"], row
