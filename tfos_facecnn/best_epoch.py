"""The epoch whose weights are exported: the one with the lowest validation loss, and optional early stopping.

Validation loss, not accuracy: on a small validation split accuracy moves in steps of one image and ties
often (16 images on the sample: steps of 0.0625), and loss also rewards calibrated probabilities, which
an accuracy tie does not see. Keras' EarlyStopping keeps and restores the best weights; this adds what a
resumable distributed job needs: the best epoch's weights saved to MODEL_DIR (by the chief, after each new
best) so that a run resumed after a crash still knows the best epoch before the crash, and the patience
counted over the epochs of both attempts. Built on call so that importing this module never imports TF.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

from .kerasenv import legacy_keras

logger = logging.getLogger(__name__)
MONITOR = "val_loss"
BEST_WEIGHTS_FILE = "weights.npz"  # in MODEL_DIR/best/: the best epoch's weights so far (numpy arrays)
NO_PATIENCE = 10**9  # patience 0 means no early stopping: a wait that never runs out


def best_of(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The history row with the lowest validation loss (the earliest of equal ones); None without any."""
    scored = [row for row in rows if isinstance(row.get(MONITOR), (int, float)) and math.isfinite(row[MONITOR])]
    return min(scored, key=lambda row: (row[MONITOR], row["epoch"])) if scored else None


def save_weights(path: str, weights: Sequence[Any], epoch: int) -> None:
    """The weights and their 1-based epoch, replaced atomically."""
    import numpy as np

    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp.npz"
    np.savez(temporary, *weights, epoch=np.asarray(epoch))
    os.replace(temporary, path)


def load_weights(path: str) -> tuple[list[Any], int]:
    import numpy as np

    with np.load(path) as stored:
        count = sum(name.startswith("arr_") for name in stored.files)
        return [stored[f"arr_{i}"] for i in range(count)], int(stored["epoch"])


def best_epoch_keeper(keep_best: bool, patience: int, prior_rows: Sequence[dict[str, Any]], mirror,
                      is_chief: bool):
    """A Keras callback (an EarlyStopping) that, with keep_best, restores the best epoch's weights when
    training ends (without it the last epoch's stay) and, with patience > 0, stops after that many epochs
    without a new best. `mirror`: the LocalMirror of MODEL_DIR/best (pulled before fit); `prior_rows`:
    the history of the epochs a resumed run has already trained."""

    class BestEpoch(legacy_keras().callbacks.EarlyStopping):
        def __init__(self) -> None:
            super().__init__(monitor=MONITOR, mode="min", patience=patience if patience > 0 else NO_PATIENCE,
                             restore_best_weights=keep_best, verbose=0)
            self.weights_path = os.path.join(mirror.local, BEST_WEIGHTS_FILE)

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            prior = best_of(prior_rows)
            if prior is None:
                return
            weights = None
            if keep_best and os.path.exists(self.weights_path):
                weights, epoch = load_weights(self.weights_path)
                if epoch != prior["epoch"]:  # saved for an epoch the crash cut off before it was recorded
                    logger.warning("best-epoch weights in %s are of epoch %d, not of the best recorded epoch %d: "
                                   "tracking the best epoch afresh", mirror.target, epoch, prior["epoch"])
                    return
            if keep_best and weights is None:
                return
            # A resumed run: the best epoch may be one trained before the crash.
            self.best, self.best_epoch, self.best_weights = prior[MONITOR], prior["epoch"] - 1, weights
            self.wait = len(prior_rows) - prior["epoch"]

        def on_epoch_end(self, epoch, logs=None):
            previous = self.best
            super().on_epoch_end(epoch, logs)
            if keep_best and self.best != previous and is_chief:  # a new best, kept for a resumed run
                save_weights(self.weights_path, self.best_weights, self.best_epoch + 1)
                mirror.push()

        def chosen_epoch(self, last_epoch: int) -> int:
            """1-based epoch whose weights the model holds after fit (`last_epoch`: the last one run)."""
            return self.best_epoch + 1 if keep_best and self.best_weights is not None else last_epoch

    return BestEpoch()
