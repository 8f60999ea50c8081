"""K-fold cross-validation by face/comic pair (jobs/crossval.py): with little data, one test split of a
few images says little; K trainings, each tested on a fold it never saw, test every image once.

Fold k's pairs are that run's test set; the other pairs split into train and validation as usual (the
validation split picks the exported epoch). Each fold trains with the job's usual driver into
MODEL_DIR/fold-k and EXPORT_DIR/fold-k, so a crashed fold resumes and a finished one is kept; the
summary goes to EXPORT_DIR/crossval.json."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from . import storage
from .config import ALL_VARIANTS, ConfigError, TrainConfig
from .export import write_json
from .metrics import wilson_interval

SUMMARY_FILE = "crossval.json"


def fold_config(cfg: TrainConfig, folds: int, fold: int) -> TrainConfig:
    return dataclasses.replace(cfg, cv_folds=folds, cv_fold=fold,
                               model_dir=storage.join(cfg.model_dir, f"fold-{fold + 1}"),
                               export_dir=storage.join(cfg.export_dir, f"fold-{fold + 1}"))


def check_crossval(cfg: TrainConfig, folds: int) -> None:
    from .data.prepared import looks_prepared

    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs 2 or more folds")
    if cfg.variant == ALL_VARIANTS:
        raise ConfigError("--variant all with --folds: cross-validate one variant at a time")
    if cfg.data_table:
        raise ConfigError("--data-table with --folds: cross-validation needs the face2comics folder (--data-dir)")
    if cfg.data_dir and looks_prepared(cfg.data_dir):
        raise ConfigError(f"--data-dir {cfg.data_dir!r} is a prepared dir, whose splits are fixed; cross-validation "
                          "needs the face2comics folder (faces/ and comics/)")


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread of the fold accuracies, and the accuracy pooled over every tested image (each
    image is tested once) with its 95% Wilson interval."""
    accuracies = [row["accuracy"] for row in rows]
    correct, tested = sum(row["correct"] for row in rows), sum(row["images"] for row in rows)
    return {
        "folds": rows,
        "mean_accuracy": statistics.fmean(accuracies),
        "std_accuracy": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,  # between folds (n - 1)
        "min_accuracy": min(accuracies),
        "max_accuracy": max(accuracies),
        "pooled_accuracy": correct / tested if tested else None,
        "pooled_interval_95": wilson_interval(correct, tested),
        "images_tested": tested,
    }


def crossval(spark: Any, cfg: TrainConfig, folds: int) -> dict[str, Any]:
    """K trainings, one per fold (`spark`: a SparkSession, or None for a job's own session per fold)."""
    from .driver import train

    check_crossval(cfg, folds)
    rows = []
    for fold in range(folds):
        print(f"=== fold {fold + 1}/{folds} ===", flush=True)
        result = train(spark, fold_config(cfg, folds, fold))
        test = result.metrics["test"]
        images = test["count"]
        rows.append({"fold": fold + 1, "images": images, "correct": round(test["accuracy"] * images),
                     "accuracy": test["accuracy"], "interval_95": test["intervals_95"]["accuracy"],
                     "chosen_epoch": (result.metrics.get("chosen_epoch") or {}).get("epoch"),
                     "export_dir": result.export_dir})
    summary = {"folds_asked": folds, "seed": cfg.seed, "split_seed": cfg.split_seed, **summarize(rows)}
    write_json(storage.join(cfg.export_dir, SUMMARY_FILE), summary)
    return summary
