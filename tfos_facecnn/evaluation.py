"""Evaluation of an exported model: predictions on a labelled split, metrics.json, figures, report.md.

Predictions run on Spark (each partition loads the model once, from raw images or from prepared
shards); only (name, label, P(face)) rows come back to the driver, plus the nine images of the
prediction grid. The same `write_evaluation` serves `jobs/evaluate.py` and the training job's report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import storage
from .config import ConfigError, TrainConfig, resolve_config
from .data.discover import LABEL_NAMES, discover
from .data.images import decode_image
from .data.records import assign_splits
from .data.split import SPLITS
from .export import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    TEST_PREDICTIONS_FILE,
    read_json,
    staged_output,
    write_json,
)
from .metrics import THRESHOLD, classification_metrics

GRID_SIZE = 9  # the reference study's 3x3 grid of test images
REPORT_DIR = "report"  # inside the export dir: the training job's own report
EVALUATION_SPLITS = (*SPLITS, "all")


@dataclass(frozen=True)
class EvaluateConfig:
    """What jobs/evaluate.py (and `evaluate` from Python) evaluates, on which data, into where."""

    model: str = "output/export"  # a training run's export dir: model.keras, config.json, history.json
    data_dir: str | None = None  # a face2comics folder or a prepared dir; None: what the model trained on
    split: str = "test"  # train, val, test or all
    output_dir: str | None = None  # None: EXPORT_DIR/evaluation-SPLIT
    overwrite: bool = False
    bind_address: str = "auto"  # the job's sockets (TrainConfig.bind_address)
    storage: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)  # fsspec options


@dataclass
class Scored:
    """Predictions of one evaluation: parallel lists, errors kept apart."""

    names: list[str]
    labels: list[int]
    probabilities: list[float]
    errors: list[tuple[str, str]]


def training_config(export_dir: str) -> TrainConfig:
    return resolve_config(read_json(storage.join(export_dir, CONFIG_FILE)), {})


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
        from .data.tfrecords import iter_examples
        from .inference import BATCH
        from .pipeline import predict_examples

        storage.configure(storage_options)
        loaded = model.load()
        for path in paths:
            with storage.local_copy(path) as local:
                sources, labels, probabilities = predict_examples(
                    loaded, iter_examples([local], image_size, record_format), BATCH)
            yield from zip(sources, labels, map(float, probabilities), strict=True)

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
    wrong = [i for i in order if (scored.probabilities[i] >= THRESHOLD) != (scored.labels[i] == 1)]
    right = [i for i in order if i not in set(wrong)]
    return (wrong[:4] + right)[:GRID_SIZE] if len(wrong) < GRID_SIZE else wrong[:GRID_SIZE]


def images_from_files(names: Sequence[str], image_size: int) -> list[np.ndarray]:
    return [decode_image(storage.read_bytes(name), image_size) for name in names]


def images_from_shards(prepared_dir: str, manifest: dict[str, Any], split: str, names: Sequence[str]) -> list:
    from .data.tfrecords import iter_examples

    wanted, found = set(names), {}
    for name in SPLITS if split == "all" else (split,):
        for shard in manifest["shards"][name]:
            with storage.local_copy(storage.join(prepared_dir, shard["file"])) as local:
                for pixels, _, source in iter_examples([local], manifest["image_size"], manifest["record_format"]):
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
        writer.writerow([name, LABEL_NAMES[label], f"{p:.6f}", LABEL_NAMES[int(p >= THRESHOLD)], ""])
    for name, error in scored.errors:
        writer.writerow([name, "", "", "", error])
    return out.getvalue().encode("utf-8")


def write_evaluation(out_dir: str, model, cfg: TrainConfig, scored: Scored, grid_images: Sequence[np.ndarray],
                     history: list[dict[str, Any]] | None, title: str, extra: dict[str, Any]) -> dict[str, Any]:
    """metrics.json, predictions.csv, the PNGs and report.md, written into a staging folder and swapped
    into out_dir as a whole (an older report there is replaced)."""
    with staged_output(out_dir) as staging:
        return _write_evaluation(staging, model, cfg, scored, grid_images, history, title, extra)


def _write_evaluation(staging: str, model, cfg: TrainConfig, scored: Scored, grid_images: Sequence[np.ndarray],
                      history: list[dict[str, Any]] | None, title: str, extra: dict[str, Any]) -> dict[str, Any]:
    from .report_page import write_report_page
    from .reports import (
        plot_augmentations,
        plot_confusion_matrix,
        plot_feature_maps,
        plot_prediction_grid,
        plot_roc,
        plot_training_curves,
    )

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
    write_json(storage.join(staging, METRICS_FILE), metrics)
    storage.write_bytes_atomic(storage.join(staging, "predictions.csv"), _predictions_csv(scored))
    write_report_page(staging, title, metrics, figures, history=history)
    return metrics


def check_split(split: str) -> str:
    if split not in EVALUATION_SPLITS:
        raise ConfigError(f"--split {split!r} is not one of {', '.join(EVALUATION_SPLITS)}")
    return split


def evaluate(spark: Any, ecfg: EvaluateConfig) -> dict[str, Any]:
    """jobs/evaluate.py: scores an export on a split with Spark and writes its report; returns the output
    dir and the metrics. `spark`: a SparkSession, or None for the job's own, started once the checks pass."""
    from .data.prepared import load_prepared, looks_prepared
    from .inference import load_model, model_file
    from .session import session_source
    from .storage.access import prepare_storage

    split = check_split(ecfg.split)
    export_dir = storage.absolute(ecfg.model)
    options = dict(ecfg.storage)
    env = prepare_storage(options, {"--model": export_dir}, {})
    model_path = model_file(export_dir)
    if not storage.exists(storage.join(export_dir, CONFIG_FILE)):
        raise ConfigError(f"{export_dir!r} has no {CONFIG_FILE}; pass --model the export dir of a training run")
    cfg = training_config(export_dir)
    if not (ecfg.data_dir or cfg.data_dir):
        raise ConfigError(f"{export_dir!r} was trained on a table ({cfg.data_table or 'a DataFrame'}); pass --data-dir "
                          "with a face2comics folder or a prepared dir (a SPARK-mode run's MODEL_DIR/heldout holds "
                          "its validation and test splits)")
    data_dir = storage.absolute(ecfg.data_dir or cfg.data_dir or "")
    output_dir = storage.absolute(ecfg.output_dir or storage.join(export_dir, f"evaluation-{split}"))
    env |= prepare_storage(options, {"--data-dir": data_dir} if data_dir else {}, {"--output-dir": output_dir})
    if storage.exists(output_dir) and not ecfg.overwrite:
        raise ConfigError(f"--output-dir {output_dir!r} already exists; pass --overwrite to replace it")
    prepared = looks_prepared(data_dir)
    manifest = load_prepared(data_dir, cfg.image_size) if prepared else None
    items = None if prepared else raw_split(data_dir, cfg, split)
    if items is not None and not items:
        raise ConfigError(f"the {split} split of {data_dir!r} holds no image; pick another --split")

    source = session_source(spark)
    with source.open("tfos-facecnn-evaluate", source.address(ecfg.bind_address), env) as session:
        if manifest is not None:
            scored = score_prepared(session.sparkContext, model_path, data_dir, manifest, split, options)
        else:
            scored = score_raw(session.sparkContext, model_path, items, options)
    if not scored.names:
        raise RuntimeError(f"no image of the {split} split could be scored; see the errors in the output")
    history = _history(export_dir)
    grid = _grid_images(scored, data_dir, manifest, split, cfg)
    metrics = write_evaluation(output_dir, load_model(model_path), cfg, scored, grid, history,
                               f"Evaluation of {export_dir} on the {split} split of {data_dir}",
                               {"split": split, "data_dir": data_dir, **_chosen_epoch(export_dir)})
    return {"output_dir": output_dir, "metrics": metrics}


def training_report(export_dir: str, cfg: TrainConfig, summary: dict[str, Any], model: Any = None) -> str:
    """The training job's report from the chief's test predictions (no second inference pass); returns
    the path of its report.md. `model`: the exported model, when the caller holds it (else loaded)."""
    from .data.prepared import load_prepared
    from .inference import load_model

    predictions = read_json(storage.join(export_dir, TEST_PREDICTIONS_FILE))
    scored = Scored([p["path"] for p in predictions], [p["label"] for p in predictions],
                    [p["p_face"] for p in predictions], [])
    prepared_dir = summary.get("prepared_dir")
    manifest = load_prepared(prepared_dir, cfg.image_size) if prepared_dir else None
    grid = _grid_images(scored, prepared_dir or cfg.data_dir or "", manifest, "test", cfg)
    out_dir = storage.join(export_dir, REPORT_DIR)
    model = model if model is not None else load_model(storage.join(export_dir, MODEL_FILE))
    write_evaluation(out_dir, model, cfg, scored, grid,
                     _history(export_dir), f"Training run {export_dir}: test split",
                     {"split": "test", **_chosen_epoch(export_dir)})
    return storage.join(out_dir, "report.md")


def _chosen_epoch(export_dir: str) -> dict[str, Any]:
    """The export's account of which epoch's weights it holds (metrics.json), for the report."""
    path = storage.join(export_dir, METRICS_FILE)
    chosen = read_json(path).get("chosen_epoch") if storage.exists(path) else None
    return {"chosen_epoch": chosen} if chosen else {}


def _history(export_dir: str) -> list[dict[str, Any]] | None:
    path = storage.join(export_dir, HISTORY_FILE)
    return read_json(path) if storage.exists(path) else None


def _grid_images(scored: Scored, data_dir: str, manifest: dict[str, Any] | None, split: str, cfg: TrainConfig):
    names = [scored.names[i] for i in grid_indices(scored)]
    if manifest is not None:
        return images_from_shards(data_dir, manifest, split, names)
    return images_from_files(names, cfg.image_size)
