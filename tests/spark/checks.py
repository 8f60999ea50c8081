"""Assertions shared by the training-job tests of both input modes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from tests.conftest import SAMPLE

SMALL_RUN = ["--epochs", "2", "--image-size", "48", "--batch-size", "8"]
EPOCH_LINE = re.compile(r"^epoch (\d+)/2 loss=\S+ accuracy=\S+ val_loss=\S+ val_accuracy=\S+ images/s=\S+"
                        r"(?: .*)?$", re.M)  # one group: findall gives the epoch numbers


def check_export(export: Path, epochs: int, workers: int, image_size: int = 48) -> dict:
    assert (export / "_SUCCESS").exists()
    history = json.loads((export / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
    for row in history:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "images_per_s"} <= set(row)
    metrics = json.loads((export / "metrics.json").read_text())
    test = metrics["test"]
    assert {"accuracy", "loss", "precision", "recall", "f1", "roc_auc", "confusion_matrix"} <= set(test)
    assert sum(map(sum, test["confusion_matrix"])) == test["count"] == metrics["counts"]["test"]["total"] > 0
    assert metrics["cluster"]["num_workers"] == workers
    # the export holds the epoch with the lowest validation loss (the earliest of ties), and says so
    lowest = min(history, key=lambda row: (row["val_loss"], row["epoch"]))
    assert metrics["chosen_epoch"]["epoch"] == lowest["epoch"] and metrics["chosen_epoch"]["rule"] == "lowest val_loss"
    config = json.loads((export / "config.json").read_text())
    assert config["image_size"] == image_size and config["epochs"] == epochs

    from tfos_facecnn.data.images import decode_image
    from tfos_facecnn.kerasenv import legacy_keras

    model = legacy_keras().models.load_model(export / "model.keras")
    pixels = decode_image((SAMPLE / "faces" / "3.jpg").read_bytes(), image_size)[None].astype(np.float32)
    probability = float(model.predict(pixels, verbose=0)[0, 0])
    assert 0.0 <= probability <= 1.0
    return metrics




def check_every_image_fed(model: Path, export: Path, epochs: int, batch: int) -> dict:
    """SPARK mode: steps cover every training image (ceil), Spark fed each epoch in full (every image
    once, plus the padding of its last batch), every fed image reached a node (trained, or dropped at
    the end), and each node's pulled, topped-up and trained images add up. (Not asserted: that no node
    is fed short. At this size a node's read-ahead, ~116 images, exceeds its whole share, and one run
    fed 30 and 82 of 112 images to the two nodes; test_every_image.py asserts it at 2,400 images.)"""
    nodes = json.loads((model / "nodes.json").read_text())
    train = json.loads((export / "data.json").read_text())["counts"]["train"]["total"]
    steps = -(-train // batch)
    assert {node["steps_per_epoch"] for node in nodes.values()} == {steps}
    fed = sum(node["items_fed"] + node["items_dropped"] for node in nodes.values())
    assert fed == epochs * steps * batch  # each epoch: the train images once + (steps x batch - train) repeats
    for name, node in nodes.items():
        trained = steps * node["per_replica_batch"] * node["epochs_run"]
        pulled = node["items_fed"] + node["images_topped_up"]
        assert pulled - node["top_up_read_ahead"] <= trained <= pulled, (name, node)
    return nodes
