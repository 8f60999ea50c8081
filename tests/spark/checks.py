"""Assertions shared by the training-job tests of both input modes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from tests.conftest import SAMPLE

SMALL_RUN = ["--epochs", "2", "--image-size", "48", "--batch-size", "8"]
EPOCH_LINE = re.compile(r"^epoch (\d+)/2 loss=\S+ accuracy=\S+ val_loss=\S+ val_accuracy=\S+ images/s=\S+$", re.M)


def check_export(export: Path, epochs: int, workers: int) -> dict:
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
    assert config["image_size"] == 48 and config["epochs"] == epochs

    from tfos_facecnn.data.images import decode_image
    from tfos_facecnn.kerasenv import legacy_keras

    model = legacy_keras().models.load_model(export / "model.keras")
    pixels = decode_image((SAMPLE / "faces" / "3.jpg").read_bytes(), 48)[None].astype(np.float32)
    probability = float(model.predict(pixels, verbose=0)[0, 0])
    assert 0.0 <= probability <= 1.0
    return metrics


