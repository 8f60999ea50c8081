"""Writing outputs so that a crash never leaves a half-written export that looks complete."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import storage

if TYPE_CHECKING:
    from .config import TrainConfig

SUCCESS_MARKER = "_SUCCESS"  # written last into a finished export, as Hadoop output committers do
MODEL_FILE = "model.keras"


def write_json(path: str, value: Any) -> None:
    storage.write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str) -> Any:
    return json.loads(storage.read_bytes(path).decode("utf-8"))


def staging_dir(export_dir: str, run_id: str) -> str:
    return f"{export_dir.rstrip('/')}.staging-{run_id}"


def is_complete(export_dir: str) -> bool:
    return storage.exists(storage.join(export_dir, SUCCESS_MARKER)) and storage.exists(
        storage.join(export_dir, MODEL_FILE)
    )


def publish(staging: str, export_dir: str, run_id: str, marker: str | None = SUCCESS_MARKER,
            last: str | None = None) -> None:
    """Marks the staging dir complete (unless its own file `last` marks it), then makes it export_dir;
    an older export there is replaced only once the new one is whole (storage/publish.py)."""
    from .storage.publish import publish_tree

    if marker is not None:
        write_json(storage.join(staging, marker), {"run_id": run_id})
    publish_tree(staging, export_dir, marker or last or SUCCESS_MARKER, run_id)


# The chief saves the trained model (augmentation and optimizer included) here before it exports.
FINAL_DIR = "final"  # in MODEL_DIR
TRAINING_MODEL_FILE = "training_model.keras"


def export_files(folder: str, exported: Any, cfg: TrainConfig, rows: list[dict[str, Any]], chosen: dict[str, Any],
                 test: tuple[list[str], list[int], Any], data_summary: dict[str, Any],
                 cluster: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Writes an export's files into a local folder (model.keras, history, metrics, test predictions,
    data, config); returns the test metrics. The chief's export and the re-export write the same files."""
    import os

    from .metrics import classification_metrics

    exported.save(os.path.join(folder, MODEL_FILE))
    names, labels, probabilities = test
    test_metrics = classification_metrics(labels, probabilities)
    metrics = {
        "test": test_metrics,
        "final_epoch": rows[-1] if rows else None,
        "chosen_epoch": chosen,
        "counts": data_summary["counts"],
        "skipped": len(data_summary["skipped"]),
        "cluster": cluster,
        **extra,
    }
    write_json(os.path.join(folder, "history.json"), rows)
    write_json(os.path.join(folder, "metrics.json"), metrics)
    write_json(os.path.join(folder, "test_predictions.json"),
               [{"path": p, "label": y, "p_face": float(q)} for p, y, q in zip(names, labels, probabilities,
                                                                               strict=True)])
    write_json(os.path.join(folder, "data.json"), data_summary)
    write_json(os.path.join(folder, "config.json"), cfg.public_dict())
    return test_metrics


def chosen_epoch(rows: list[dict[str, Any]], epoch: int, keep_best: bool, stopped_early: bool) -> dict[str, Any]:
    """metrics.json's account of the exported weights: which epoch, by which rule, and its numbers."""
    row = next((r for r in rows if r.get("epoch") == epoch), {})
    rule = "lowest val_loss" if keep_best else "last epoch"
    return {"epoch": epoch, "rule": rule, "stopped_early": stopped_early, "epochs_run": len(rows),
            **{k: row[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in row}}


def reexport(cfg: TrainConfig, rows: list[dict[str, Any]], stopped_early: bool, node_args: dict[str, Any],
             data_summary: dict[str, Any], num_workers: int, run_id: str) -> None:
    """On the driver: the export a chief crashed in, done again from the weights it had saved in
    MODEL_DIR/final (the weights of the chosen epoch, restored when training ended), instead of training
    again. Test predictions come from the same files as the chief's (SPARK mode: the test images;
    TENSORFLOW mode: the test shards); the export is staged and published as the chief's is."""
    import os

    from .model import inference_copy
    from .storage.mirror import LocalMirror

    model = _trained_model(cfg)
    exported = inference_copy(model, cfg)
    staging = LocalMirror(staging_dir(cfg.export_dir, run_id), "export")
    try:
        os.makedirs(staging.local, exist_ok=True)
        export_files(staging.local, exported, cfg, rows,
                     chosen_epoch(rows, _epoch_of(cfg, model, rows), cfg.keep_best_epoch, stopped_early),
                     _test_predictions(cfg, node_args, exported), data_summary,
                     {"num_workers": num_workers, "input_mode": cfg.input_mode},
                     reexported_from=storage.join(cfg.model_dir, FINAL_DIR, TRAINING_MODEL_FILE))
        staging.push()
        publish(staging.target, cfg.export_dir, run_id)
    finally:
        staging.cleanup()


def _trained_model(cfg: TrainConfig) -> Any:
    """The training graph (uncompiled: the optimizer state is not needed) with final/'s weights."""
    import os
    import tempfile
    import zipfile

    from .config import ConfigError
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


def _test_predictions(cfg: TrainConfig, node_args: dict[str, Any], model: Any) -> tuple[list[str], list[int], Any]:
    """(names, labels, P(face)) of the test split, as the chief computes them (node_inputs.py)."""
    from .pipeline import predict_arrays, predict_files

    if cfg.input_mode == "spark":
        paths, labels = [p for p, _ in node_args["test"]], [y for _, y in node_args["test"]]
        return paths, labels, predict_files(model, paths, cfg.image_size, cfg.batch_size)
    from .data.tfrecords import read_examples

    examples = []
    for shard in node_args["shards"]["test"]:
        with storage.local_copy(storage.join(node_args["prepared_dir"], shard["file"])) as local:
            examples += read_examples(local, cfg.image_size, node_args["record_format"])
    probabilities = predict_arrays(model, [pixels for pixels, _, _ in examples], cfg.batch_size)
    return [source for _, _, source in examples], [label for _, label, _ in examples], probabilities
