"""A run whose training finished but whose export did not (the chief crashed while exporting): the
driver exports again from the weights the chief saved in MODEL_DIR/final, instead of training again."""

from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Any

from . import storage
from .config import ConfigError, TrainConfig
from .export import FINAL_DIR, TRAINING_MODEL_FILE, chosen_epoch, new_run_id, staged_locally, write_export


def reexport(cfg: TrainConfig, rows: list[dict[str, Any]], stopped_early: bool, mode_inputs: Any,
             data_summary: dict[str, Any], num_workers: int) -> None:
    """The export of a finished training, from MODEL_DIR/final (the weights of the chosen epoch, restored
    when training ended). Test predictions come from the same files as the chief's (SPARK mode: the test
    images; TENSORFLOW mode: the test shards); the export is staged and published as the chief's is."""
    from .model import inference_copy
    from .modes import mode_for

    model = _trained_model(cfg)
    exported = inference_copy(model, cfg)
    with staged_locally(cfg.export_dir, new_run_id()) as folder:
        write_export(folder, exported, cfg, rows,
                     chosen_epoch(rows, _epoch_of(cfg, model, rows), cfg.keep_best_epoch, stopped_early),
                     mode_for(cfg.input_mode).test_predictions(cfg, mode_inputs, exported), data_summary,
                     {"num_workers": num_workers, "input_mode": cfg.input_mode},
                     reexported_from=storage.join(cfg.model_dir, FINAL_DIR, TRAINING_MODEL_FILE))


def _trained_model(cfg: TrainConfig) -> Any:
    """The training graph (uncompiled: the optimizer state is not needed) with final/'s weights."""
    from .model import build_model

    path = storage.join(cfg.model_dir, FINAL_DIR, TRAINING_MODEL_FILE)
    model = build_model(cfg.variant, cfg.image_size, cfg.augment, learning_rate=cfg.learning_rate,
                        l1_factor=cfg.l1_factor, l2_factor=cfg.l2_factor, dropout_rate=cfg.dropout_rate,
                        seed=cfg.seed, compile_model=False)
    with tempfile.TemporaryDirectory(prefix="facecnn-final-") as scratch:
        local = storage.local_path(path)
        if not storage.is_local(path):  # Keras knows the format by the name: keep `.keras`
            local = os.path.join(scratch, TRAINING_MODEL_FILE)
            storage.download_file(path, local)
        try:
            model.load_weights(local)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # truncated, or of another shape
            raise ConfigError(f"{path} is unreadable ({type(e).__name__}: {e}); pass --overwrite to train afresh, "
                              f"or delete {path} to train this run again") from e
    return model


def _epoch_of(cfg: TrainConfig, model: Any, rows: list[dict[str, Any]]) -> int:
    """The epoch whose weights final/ holds: with keep_best_epoch, the one kept in MODEL_DIR/best when
    the weights are those (best_epoch.py saves each new best there); else the last epoch run."""
    import numpy as np

    from .best_epoch import BEST_WEIGHTS_FILE, load_weights
    from .resume import BEST_DIR

    last = rows[-1]["epoch"] if rows else 0
    best = storage.join(cfg.model_dir, BEST_DIR, BEST_WEIGHTS_FILE)
    if not cfg.keep_best_epoch or not storage.exists(best):
        return last
    with storage.local_copy(best) as local:
        kept, epoch = load_weights(local)
    trained = model.get_weights()
    same = len(kept) == len(trained) and all(np.array_equal(a, b) for a, b in zip(kept, trained, strict=True))
    return epoch if same else last
