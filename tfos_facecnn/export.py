"""The export layout and how every output is published: the one owner of the files a run writes.

Every output (a training export, a report, prepared shards, prediction parts, a comparison) is written
into `TARGET.staging-RUNID` beside its target and swapped into place only when whole, with a marker
written last (`_SUCCESS`, as Hadoop output committers do, or the output's own last file, e.g. a
prepared data set's manifest): a crash never leaves a half-written output that looks finished.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import storage

if TYPE_CHECKING:
    from .config import TrainConfig

SUCCESS_MARKER = "_SUCCESS"  # written last into a finished export, as Hadoop output committers do
# An export's files (EXPORT_DIR), README "What you see and what you get"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
TEST_PREDICTIONS_FILE = "test_predictions.json"
DATA_FILE = "data.json"
CONFIG_FILE = "config.json"
# The chief saves the trained model (augmentation and optimizer included) here before it exports.
FINAL_DIR = "final"  # in MODEL_DIR
TRAINING_MODEL_FILE = "training_model.keras"


def write_json(path: str, value: Any) -> None:
    storage.write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str) -> Any:
    return json.loads(storage.read_bytes(path).decode("utf-8"))


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def staging_dir(target: str, run_id: str) -> str:
    return f"{target.rstrip('/')}.staging-{run_id}"


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


@contextmanager
def staged_output(target: str, run_id: str | None = None, *, last: str | None = None,
                  remove_on_error: bool = True) -> Iterator[str]:
    """Yields the staging folder (a path or URI beside `target`) to write the output into; on leaving
    the block, publishes it: `_SUCCESS` last, or with `last` the output's own file that marks it
    complete. On an error the staging folder is removed, unless remove_on_error is False: then the
    next run removes it (resume.stale_outputs), as it must after a killed process anyway."""
    run_id = run_id or new_run_id()
    staging = staging_dir(target, run_id)
    try:
        yield staging
        publish(staging, target, run_id, marker=None if last else SUCCESS_MARKER, last=last)
    except BaseException:
        if remove_on_error and storage.exists(staging):
            storage.remove_tree(staging)
        raise


@contextmanager
def staged_locally(target: str, run_id: str | None = None, *, remove_on_error: bool = True) -> Iterator[str]:
    """staged_output for writers that take only local paths (Keras' model.save): yields a local folder,
    uploaded into the staging folder before it is published (the same folder when target is local)."""
    from .storage.mirror import LocalMirror

    with staged_output(target, run_id, remove_on_error=remove_on_error) as staging:
        mirror = LocalMirror(staging, "export")
        try:
            os.makedirs(mirror.local, exist_ok=True)
            yield mirror.local
            mirror.push()
        finally:
            mirror.cleanup()


def chosen_epoch(rows: list[dict[str, Any]], epoch: int, keep_best: bool, stopped_early: bool) -> dict[str, Any]:
    """metrics.json's account of the exported weights: which epoch, by which rule, and its numbers."""
    row = next((r for r in rows if r.get("epoch") == epoch), {})
    rule = "lowest val_loss" if keep_best else "last epoch"
    return {"epoch": epoch, "rule": rule, "stopped_early": stopped_early, "epochs_run": len(rows),
            **{k: row[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in row}}


def write_export(folder: str, exported: Any, cfg: TrainConfig, rows: list[dict[str, Any]], chosen: dict[str, Any],
                 test: tuple[list[str], list[int], Any], data_summary: dict[str, Any],
                 cluster: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Writes an export's files into a local folder (model.keras, history, metrics, test predictions,
    data, config); returns the test metrics. The chief's export and the driver's re-export both call it."""
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
    write_json(os.path.join(folder, HISTORY_FILE), rows)
    write_json(os.path.join(folder, METRICS_FILE), metrics)
    write_json(os.path.join(folder, TEST_PREDICTIONS_FILE),
               [{"path": p, "label": y, "p_face": float(q)} for p, y, q in zip(names, labels, probabilities,
                                                                               strict=True)])
    write_json(os.path.join(folder, DATA_FILE), data_summary)
    write_json(os.path.join(folder, CONFIG_FILE), cfg.public_dict())
    return test_metrics
