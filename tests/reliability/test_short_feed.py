"""A SPARK-mode node that Spark feeds short, with TF's oneDNN kernels on (the shipped setting): it tops
its batches up from images it holds instead of being handed empty batches (which oneDNN's Conv2D
mishandles: "input depth must be evenly divisible by filter depth: 3 vs 32"), and the driver says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import job_command, spark_env

pytestmark = pytest.mark.spark
# The starved node's feed ends after one 16-image chunk; 8 epochs of 48-px batches of 8 make its steps need more than
# its pipeline can read ahead (read_ahead: 116 images at 4 per replica), so it must train on top-ups.
EPOCHS = 8


@pytest.mark.timeout(600)
def test_a_starved_node_trains_to_its_last_step_on_top_ups(tmp_path: Path):
    import subprocess

    model = tmp_path / "model"
    command = job_command("train.py", "local-cluster[2,1,1024]", "--input-mode", "spark", "--epochs", str(EPOCHS),
                          "--image-size", "48", "--batch-size", "8", "--no-report", "--model-dir", str(model),
                          "--export-dir", str(tmp_path / "export"),
                          conf=("spark.executorEnv.TFOS_FACECNN_FAULT=worker:0@starve",))
    result = subprocess.run(command, env=spark_env(), capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "3 vs 32" not in output
    nodes = json.loads((model / "nodes.json").read_text())
    starved, fed = nodes["worker:0"], nodes["chief:0"]
    assert starved["epochs_run"] == fed["epochs_run"] == EPOCHS
    assert starved["images_topped_up"] > starved["top_up_read_ahead"]
    assert starved["items_fed"] < fed["items_fed"]
    assert "warning: Spark fed TF node worker:0" in output and "took feeding tasks unevenly" in output
    history = json.loads((tmp_path / "export" / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
