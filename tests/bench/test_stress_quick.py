"""bench/stress.py --quick: a two-node run per input mode with the shipped settings (oneDNN on), the
SPARK-mode one starved on purpose; every run must succeed. No timing is asserted."""

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
    assert starved[0]["topped_up"]["worker:0"] > 0
