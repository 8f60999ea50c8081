"""Every training image in every epoch on two SPARK-mode nodes, counted at a size where a node's share
is many times what its input pipeline reads ahead (at the 48 px sample's 112 images it is not: a node's
read-ahead and queue room hold more than its whole share)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import job_command, spark_env, write_image
from tfos_facecnn.modes.spark import TOP_UP_TOLERANCE

pytestmark = pytest.mark.spark

PAIRS = 1200  # 2,400 generated images: ~1,680 training images, ~840 per node per epoch
EPOCHS, BATCH = 2, 32


@pytest.mark.timeout(600)
def test_two_nodes_train_on_every_image_once_per_epoch_and_neither_runs_dry(tmp_path: Path):
    data = tmp_path / "data"
    for i in range(PAIRS):  # distinct seeds: a face and a comic with equal pixels would both be skipped
        write_image(data / "faces" / f"{i}.jpg", seed=i)
        write_image(data / "comics" / f"{i}.jpg", seed=PAIRS + i)
    model, export = tmp_path / "model", tmp_path / "export"
    command = job_command("train.py", "local-cluster[2,1,1024]", "--input-mode", "spark", "--data-dir", str(data),
                          "--epochs", str(EPOCHS), "--image-size", "40", "--batch-size", str(BATCH), "--no-report",
                          "--model-dir", str(model), "--export-dir", str(export))
    result = subprocess.run(command, env=spark_env(), capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    train = json.loads((export / "data.json").read_text())["counts"]["train"]["total"]
    steps = -(-train // BATCH)
    nodes = json.loads((model / "nodes.json").read_text())
    assert sorted(nodes) == ["chief:0", "worker:0"]
    # Spark fed each epoch in full: every training image once, plus the repeats of the last batch
    assert sum(node["items_fed"] + node["items_dropped"] for node in nodes.values()) == EPOCHS * steps * BATCH
    for name, node in nodes.items():
        assert node["steps_per_epoch"] == steps and node["epochs_run"] == EPOCHS, (name, node)
        needed = EPOCHS * steps * node["per_replica_batch"]
        slack = TOP_UP_TOLERANCE * needed + node["top_up_read_ahead"]
        # neither node ran dry (it would have trained on repeats beyond its read-ahead) nor was fed
        # much more than it trained on (those images were dropped at the end, never trained on)
        assert node["images_topped_up"] <= slack, (name, node, needed)
        assert node["items_dropped"] <= slack, (name, node, needed)
        assert abs(node["items_fed"] - needed) <= slack, (name, node, needed)
    assert "warning: Spark fed TF node" not in output
