"""`jobs/evaluate.py` and the report the training job writes at its end."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from . import storage
from .config import ConfigError, TrainConfig
from .data.prepared import load_prepared, looks_prepared
from .evaluate import (
    Scored,
    check_split,
    grid_indices,
    images_from_files,
    images_from_shards,
    raw_split,
    score_prepared,
    score_raw,
    training_config,
    write_evaluation,
)
from .export import read_json
from .inference import load_model, model_file

REPORT_DIR = "report"  # inside the export dir: the training job's own report


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark-submit jobs/evaluate.py",
        description="Evaluate an exported model on a labelled split with Spark and write metrics.json, "
        "predictions.csv, figures (curves, ROC, confusion matrix, 3x3 grid, feature maps, augmentations) "
        "and report.md.",
    )
    p.add_argument("--export-dir", default="output/export", dest="export_dir",
                   help="the training run's export (model.keras, config.json, history.json)")
    p.add_argument("--data-dir", dest="data_dir", default=None,
                   help="a face2comics folder or a prepared dir (default: the data the model was trained on)")
    p.add_argument("--split", default="test", help="train, val, test (default) or all: which files to score")
    p.add_argument("--output-dir", dest="output_dir", default=None,
                   help="where the report goes (default EXPORT_DIR/evaluation-SPLIT)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dir")
    p.add_argument("--config", default=None,
                   help="YAML whose storage: section holds fsspec options (default conf/train.yaml if present)")
    p.add_argument("--master", default=None, help="Spark master URL, when not given to spark-submit")
    return p


def run_evaluate(argv: Sequence[str]) -> dict[str, Any]:
    from .cli import storage_options
    from .spark_env import LOOPBACK, spark_conf, start_session
    from .storage.access import prepare_storage

    args = evaluate_parser().parse_args(argv)
    split = check_split(args.split)
    export_dir = storage.absolute(args.export_dir)
    options = storage_options(args.config)
    env = prepare_storage(options, {"--export-dir": export_dir}, {})
    model_path = model_file(export_dir)
    if not storage.exists(storage.join(export_dir, "config.json")):
        raise ConfigError(f"{export_dir!r} has no config.json; pass the --export-dir of a training run")
    cfg = training_config(export_dir)
    data_dir = storage.absolute(args.data_dir or cfg.data_dir or "")
    output_dir = storage.absolute(args.output_dir or storage.join(export_dir, f"evaluation-{split}"))
    env |= prepare_storage(options, {"--data-dir": data_dir} if data_dir else {}, {"--output-dir": output_dir})
    if storage.exists(output_dir) and not args.overwrite:
        raise ConfigError(f"--output-dir {output_dir!r} already exists; pass --overwrite to replace it")
    prepared = looks_prepared(data_dir)
    manifest = load_prepared(data_dir, cfg.image_size) if prepared else None
    items = None if prepared else raw_split(data_dir, cfg, split)
    if items is not None and not items:
        raise ConfigError(f"the {split} split of {data_dir!r} holds no image; pick another --split")

    master, user_conf = spark_conf(args.master)
    spark = start_session("tfos-facecnn-evaluate", master, LOOPBACK if master.is_local_machine else None, user_conf,
                          env)
    try:
        if manifest is not None:
            scored = score_prepared(spark.sparkContext, model_path, data_dir, manifest, split, options)
        else:
            scored = score_raw(spark.sparkContext, model_path, items, options)
    finally:
        spark.stop()
    if not scored.names:
        raise RuntimeError(f"no image of the {split} split could be scored; see the errors in the output")
    history = _history(export_dir)
    grid = _grid_images(scored, data_dir, manifest, split, cfg)
    metrics = write_evaluation(output_dir, load_model(model_path), cfg, scored, grid, history,
                               f"Evaluation of {export_dir} on the {split} split of {data_dir}",
                               {"split": split, "data_dir": data_dir, **_chosen_epoch(export_dir)})
    return {"output_dir": output_dir, "metrics": metrics}


def _chosen_epoch(export_dir: str) -> dict[str, Any]:
    """The export's account of which epoch's weights it holds (metrics.json), for the report."""
    path = storage.join(export_dir, "metrics.json")
    chosen = read_json(path).get("chosen_epoch") if storage.exists(path) else None
    return {"chosen_epoch": chosen} if chosen else {}


def _history(export_dir: str) -> list[dict[str, Any]] | None:
    path = storage.join(export_dir, "history.json")
    return read_json(path) if storage.exists(path) else None


def _grid_images(scored: Scored, data_dir: str, manifest: dict[str, Any] | None, split: str, cfg: TrainConfig):
    names = [scored.names[i] for i in grid_indices(scored)]
    if manifest is not None:
        return images_from_shards(data_dir, manifest, split, names)
    return images_from_files(names, cfg.image_size)


def report_after_training(export_dir: str, cfg: TrainConfig, summary: dict[str, Any]) -> str:
    """The training job's report from the chief's test predictions (no second inference pass)."""
    predictions = read_json(storage.join(export_dir, "test_predictions.json"))
    scored = Scored([p["path"] for p in predictions], [p["label"] for p in predictions],
                    [p["p_face"] for p in predictions], [])
    prepared_dir = summary.get("prepared_dir")
    manifest = load_prepared(prepared_dir, cfg.image_size) if prepared_dir else None
    grid = _grid_images(scored, prepared_dir or cfg.data_dir or "", manifest, "test", cfg)
    out_dir = storage.join(export_dir, REPORT_DIR)
    write_evaluation(out_dir, load_model(storage.join(export_dir, "model.keras")), cfg, scored, grid,
                     _history(export_dir), f"Training run {export_dir}: test split",
                     {"split": "test", **_chosen_epoch(export_dir)})
    return storage.join(out_dir, "report.md")
