"""Evaluation of an exported model: predictions on a labelled split, metrics.json, figures, report.md.

Predictions run on Spark (each partition loads the model once, from raw images or from prepared
shards); only (name, label, P(face)) rows come back to the driver, plus the nine images of the
prediction grid. The same `write_evaluation` serves `jobs/evaluate.py` and the training job's report.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import storage
from .config import TrainConfig, resolve_config
from .data.discover import LABEL_NAMES, discover
from .data.images import decode_image
from .data.records import assign_splits
from .data.split import SPLITS
from .export import publish, read_json, staging_dir, write_json
from .metrics import classification_metrics

GRID_SIZE = 9  # the reference study's 3x3 grid of test images


@dataclass
class Scored:
    """Predictions of one evaluation: parallel lists, errors kept apart."""

    names: list[str]
    labels: list[int]
    probabilities: list[float]
    errors: list[tuple[str, str]]


def training_config(export_dir: str) -> TrainConfig:
    return resolve_config(read_json(storage.join(export_dir, "config.json")), {})


def raw_split(data_dir: str, cfg: TrainConfig, split: str) -> list[tuple[str, int]]:
    """(path, label) of one split of a face2comics folder, by the training run's split settings."""
    found = discover(data_dir)
    records = assign_splits(found, cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val, cfg.cv_folds,
                            cfg.cv_fold)
    return [(r.path, r.label) for r in records if split == "all" or r.split == split]


def score_raw(sc, model_path: str, items: Sequence[tuple[str, int]], storage_options: dict[str, Any]) -> Scored:
    from .inference import predict_on_spark

    labels = dict(items)
    rows = predict_on_spark(sc, model_path, [path for path, _ in items], storage_options=storage_options).collect()
    good = [row for row in rows if row[3] is None]
    return Scored([r[0] for r in good], [labels[r[0]] for r in good], [r[1] for r in good],
                  [(r[0], r[3]) for r in rows if r[3] is not None])


def _shard_partition(model, image_size: int, record_format: str, storage_options: dict[str, Any]) -> Callable:
    def run(paths: Iterable[str]) -> Iterator[tuple[str, int, float]]:
        from .data.tfrecords import read_examples
        from .pipeline import predict_arrays

        storage.configure(storage_options)
        loaded = model.load()
        for path in paths:
            with storage.local_copy(path) as local:
                examples = read_examples(local, image_size, record_format)
            probabilities = predict_arrays(loaded, [pixels for pixels, _, _ in examples], 64)
            for (_, label, source), p in zip(examples, probabilities, strict=True):
                yield source, label, float(p)

    return run


def score_prepared(sc, model_path: str, prepared_dir: str, manifest: dict[str, Any], split: str,
                   storage_options: dict[str, Any]) -> Scored:
    from .inference import ship_model

    splits = SPLITS if split == "all" else (split,)
    shards = [storage.join(prepared_dir, s["file"]) for name in splits for s in manifest["shards"][name]]
    run = _shard_partition(ship_model(sc, model_path), manifest["image_size"], manifest["record_format"],
                           storage_options)
    rows = sc.parallelize(shards, max(1, len(shards))).mapPartitions(run).collect()
    return Scored([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [])


def grid_indices(scored: Scored) -> list[int]:
    """Nine images for the grid: wrong predictions first (they teach most), then the rest by name."""
    order = sorted(range(len(scored.names)), key=lambda i: scored.names[i])
    wrong = [i for i in order if (scored.probabilities[i] >= 0.5) != (scored.labels[i] == 1)]
    right = [i for i in order if i not in set(wrong)]
    return (wrong[:4] + right)[:GRID_SIZE] if len(wrong) < GRID_SIZE else wrong[:GRID_SIZE]


def images_from_files(names: Sequence[str], image_size: int) -> list[np.ndarray]:
    return [decode_image(storage.read_bytes(name), image_size) for name in names]


def images_from_shards(prepared_dir: str, manifest: dict[str, Any], split: str, names: Sequence[str]) -> list:
    from .data.tfrecords import read_examples

    wanted, found = set(names), {}
    for name in SPLITS if split == "all" else (split,):
        for shard in manifest["shards"][name]:
            with storage.local_copy(storage.join(prepared_dir, shard["file"])) as local:
                examples = read_examples(local, manifest["image_size"], manifest["record_format"])
            for pixels, _, source in examples:
                if source in wanted:
                    found[source] = pixels
            if len(found) == len(wanted):
                return [found[n] for n in names]
    return [found[n] for n in names if n in found]


def _predictions_csv(scored: Scored) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["path", "label", "p_face", "predicted", "error"])
    for name, label, p in zip(scored.names, scored.labels, scored.probabilities, strict=True):
        writer.writerow([name, LABEL_NAMES[label], f"{p:.6f}", LABEL_NAMES[int(p >= 0.5)], ""])
    for name, error in scored.errors:
        writer.writerow([name, "", "", "", error])
    return out.getvalue().encode("utf-8")


def write_evaluation(out_dir: str, model, cfg: TrainConfig, scored: Scored, grid_images: Sequence[np.ndarray],
                     history: list[dict[str, Any]] | None, title: str, extra: dict[str, Any]) -> dict[str, Any]:
    """metrics.json, predictions.csv, the PNGs and report.md, written into a staging folder and swapped
    into out_dir as a whole (an older report there is replaced)."""
    from .report_page import write_report_page
    from .reports import (
        plot_augmentations,
        plot_confusion_matrix,
        plot_feature_maps,
        plot_prediction_grid,
        plot_roc,
        plot_training_curves,
    )

    run_id = uuid.uuid4().hex[:12]
    staging = staging_dir(out_dir, run_id)
    storage.makedirs(staging)
    metrics = {**classification_metrics(scored.labels, scored.probabilities), **extra,
               "errors": [{"path": p, "reason": r} for p, r in scored.errors]}
    figures: dict[str, str] = {}
    if history:
        figures["Training curves (accuracy and loss per epoch)"] = plot_training_curves(
            history, storage.join(staging, "curves.png"))
    figures["ROC curve"] = plot_roc(scored.labels, scored.probabilities, storage.join(staging, "roc.png"))
    figures["Confusion matrix"] = plot_confusion_matrix(metrics["confusion_matrix"],
                                                        storage.join(staging, "confusion_matrix.png"))
    picks = grid_indices(scored)[:len(grid_images)]
    if grid_images:
        figures["Predictions on 3x3 images (wrong ones in red)"] = plot_prediction_grid(
            list(grid_images), [scored.labels[i] for i in picks], [scored.probabilities[i] for i in picks],
            storage.join(staging, "prediction_grid.png"))
        figures["Feature maps after each convolution and pooling layer"] = plot_feature_maps(
            model, grid_images[0], storage.join(staging, "feature_maps.png"))
        figures["One image under each augmentation"] = plot_augmentations(
            grid_images[0], cfg.augment, storage.join(staging, "augmentations.png"), seed=cfg.seed)
    write_json(storage.join(staging, "metrics.json"), metrics)
    storage.write_bytes_atomic(storage.join(staging, "predictions.csv"), _predictions_csv(scored))
    write_report_page(staging, title, metrics, figures, history=history)
    publish(staging, out_dir, run_id)
    return metrics


def check_split(split: str) -> str:
    from .config import ConfigError

    if split not in (*SPLITS, "all"):
        raise ConfigError(f"--split {split!r} is not one of {', '.join(SPLITS)}, all")
    return split
