"""Every job's command-line options, in one place: argv -> the job's frozen config and the master URL."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from . import __version__, sample_data_dir
from .config import ALL_VARIANTS, INPUT_MODES, VARIANTS, ConfigError, TrainConfig, load_yaml, resolve_config
from .data.tfrecords import RECORD_FORMATS
from .evaluation import EvaluateConfig
from .inference import BATCH, DEFAULT_MODEL, OUTPUT_FORMATS, PredictConfig
from .preparation import PrepareConfig

# Relative to the working directory, as spark-submit's own paths are: the repository's conf/ when run from
# the checkout (Makefile, README), a copy of it beside the job elsewhere (the Docker image's WORKDIR).
DEFAULT_CONFIG = os.path.join("conf", "train.yaml")
_DEFAULTS = TrainConfig()


def _versioned(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--version", action="version", version=f"tfos-facecnn {__version__}")
    return p


def train_parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog="spark-submit jobs/train.py",
        description="Train the face-vs-comic CNN on Spark with TensorFlowOnSpark (one TF node per executor). "
        "Settings: built-in defaults < --config YAML < these options.",
        epilog="Masters: --master local[*] runs one TF node with all cores (TFoS cannot put two nodes in one "
        "local executor, so --cluster-size > 1 is refused there); --master 'local-cluster[2,1,1024]' runs two "
        "nodes in two executors; spark://, yarn and k8s:// run one node per executor. Logs of every process: "
        "MODEL_DIR/logs/RUN/.",
    )
    p.add_argument("--config", default=None,
                   help=f"YAML file of settings (default: {DEFAULT_CONFIG} in the working directory, if present)")
    p.add_argument("--master", default=None, help="Spark master URL, when not given to spark-submit (default local[*])")
    p.add_argument("--input-mode", choices=INPUT_MODES, dest="input_mode",
                   help="spark: executors decode images and feed TF through TFoS queues; "
                   f"tensorflow: TF nodes read prepared TFRecord shards from storage (default {d.input_mode})")
    p.add_argument("--data-dir", dest="data_dir", help="face2comics folder (faces/ and comics/, may be nested up to "
                   "2 levels), a local path or a URI; default: the embedded 35-pair sample")
    _table_options(p)
    p.add_argument("--model-dir", dest="model_dir", help=f"checkpoints and logs (default {d.model_dir})")
    p.add_argument("--export-dir", dest="export_dir",
                   help=f"exported model.keras + JSON reports (default {d.export_dir})")
    p.add_argument("--variant", choices=(*VARIANTS, ALL_VARIANTS),
                   help="base, l1 / l2 (regularised kernels), dropout, or all: train the four with the same data "
                   f"and seed into EXPORT_DIR/VARIANT and write EXPORT_DIR/comparison (default {d.variant})")
    p.add_argument("--epochs", type=int, help=f"training epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, dest="batch_size",
                   help=f"global batch over all TF nodes (default {d.batch_size})")
    p.add_argument("--image-size", type=int, dest="image_size",
                   help=f"square input size in pixels (default {d.image_size})")
    p.add_argument("--learning-rate", type=float, dest="learning_rate",
                   help=f"Adam learning rate (default {d.learning_rate:g})")
    p.add_argument("--cluster-size", type=int, dest="cluster_size",
                   help="TF nodes, one per executor (default: the executors Spark will give)")
    p.add_argument("--bind-address", dest="bind_address",
                   help="address of every TFoS/TF socket: 'auto' = 127.0.0.1 on local masters, else TFoS's choice "
                   f"(default {d.bind_address})")
    p.add_argument("--seed", type=int, help=f"seed of weights, shuffling and augmentation (default {d.seed})")
    p.add_argument("--patience", type=int,
                   help=f"early stopping: epochs without a lower val_loss (default {d.patience}: off)")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="train afresh even when MODEL_DIR holds a finished run or one with other settings "
                   "(without it, a crashed run resumes at its last finished epoch and a finished one is kept)")
    p.add_argument("--no-report", action="store_false", dest="report", default=None,
                   help="skip the figures and report.md written into EXPORT_DIR/report after training")
    p.add_argument("--verbose", action="store_true", default=None,
                   help="show every process's log lines live too (they are always in MODEL_DIR/logs/RUN/)")
    p.add_argument("--mlflow-uri", dest="tracking.mlflow_uri",
                   help="log the run to MLflow at this tracking URI (needs the [mlflow] extra; default: no tracking)")
    p.add_argument("--mlflow-experiment", dest="tracking.experiment",
                   help=f"MLflow experiment of the run (default {d.tracking.experiment})")
    return _versioned(p)


def _table_options(p: argparse.ArgumentParser) -> None:
    """The data as a Spark table, instead of --data-dir (its columns: the config's *_column keys)."""
    p.add_argument("--data-table", dest="data_table",
                   help="a table to read the data from instead of --data-dir, with Spark's own reader: an image "
                   "column (binary) or a path column, a label column (1/0, true/false or faces/comics) and a key "
                   "column (the split's hash key); names from the config's image_column, path_column, label_column, "
                   "key_column")
    p.add_argument("--data-format", dest="data_format",
                   help=f"the Spark data source that reads --data-table: parquet, delta, orc, json... "
                   f"(default {_DEFAULTS.data_format})")


def _train_config(args: argparse.Namespace, not_config: tuple[str, ...] = ("config", "master")) -> TrainConfig:
    config_path = args.config or (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None)
    yaml_values = load_yaml(config_path) if config_path else {}
    overrides: dict[str, Any] = {
        key: value for key, value in vars(args).items() if key not in not_config and value is not None
    }
    return resolve_config(yaml_values, overrides)


def parse_train_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, str | None]:
    """argv -> (resolved config, master URL or None). Raises ConfigError for bad values."""
    args = train_parser().parse_args(argv)
    return _train_config(args), args.master


def crossval_parser() -> argparse.ArgumentParser:
    p = train_parser()
    p.prog = "spark-submit jobs/crossval.py"
    p.description = ("K-fold cross-validation by face/comic pair: K trainings with jobs/train.py's settings, "
                     "each tested on the pairs of one fold, into MODEL_DIR/fold-k and EXPORT_DIR/fold-k; "
                     "the mean, spread and pooled accuracy go to EXPORT_DIR/crossval.json.")
    p.add_argument("--folds", type=int, default=5, help="folds, each one run's test set (default 5)")
    return p  # --version: train_parser's


def parse_crossval_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, int, str | None]:
    """argv -> (resolved config, folds, master URL or None)."""
    args = crossval_parser().parse_args(argv)
    return _train_config(args, ("config", "master", "folds")), args.folds, args.master


def prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark-submit jobs/prepare.py",
        description="Turn a face2comics folder (or a Spark table: --data-table) into TFRecord shards (train/ val/ "
        "test/ + manifest.json) for --input-mode tensorflow, with the same split as --input-mode spark.",
    )
    p.add_argument("--data-dir", dest="data_dir", help="face2comics folder (default: the embedded sample)")
    _table_options(p)
    p.add_argument("--output-dir", dest="output_dir", required=True, help="where the shards and manifest go")
    p.add_argument("--image-size", type=int, dest="image_size",
                   help=f"square size of the stored images (default {_DEFAULTS.image_size})")
    p.add_argument("--num-shards", type=int, dest="num_shards",
                   help="train shards (val/test get proportionally fewer); default: twice Spark's parallelism. "
                   "Use a multiple of the TF node count you will train with")
    p.add_argument("--record-format", choices=RECORD_FORMATS, default="jpeg", dest="record_format",
                   help="jpeg (quality 95, ~11x smaller) or raw uint8 pixels (no decode when training) "
                   "(default jpeg)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dir (atomically)")
    _job_options(p, "YAML with split settings, image_size and bind_address")
    return _versioned(p)


def parse_prepare_args(argv: Sequence[str] | None = None) -> tuple[PrepareConfig, str | None]:
    """argv -> (PrepareConfig, master URL or None)."""
    args = prepare_parser().parse_args(argv)
    config_path = args.config or (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None)
    overrides = {k: v for k, v in (("data_dir", args.data_dir), ("image_size", args.image_size),
                                   ("bind_address", args.bind_address), ("data_table", args.data_table),
                                   ("data_format", args.data_format)) if v is not None}
    cfg = resolve_config(load_yaml(config_path) if config_path else {}, overrides)
    if args.num_shards is not None and args.num_shards < 1:
        raise ConfigError(f"--num-shards {args.num_shards} must be at least 1")
    pcfg = PrepareConfig.from_train_config(
        cfg if cfg.data_dir or cfg.data_table else dataclasses.replace(cfg, data_dir=sample_data_dir()),
        args.output_dir, num_shards=args.num_shards, record_format=args.record_format, overwrite=args.overwrite,
    )
    return pcfg, args.master


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark-submit jobs/evaluate.py",
        description="Evaluate an exported model on a labelled split with Spark and write metrics.json, "
        "predictions.csv, figures (curves, ROC, confusion matrix, 3x3 grid, feature maps, augmentations) "
        "and report.md.",
    )
    p.add_argument("--model", default=EvaluateConfig.model, dest="model",
                   help="the training run's export dir (model.keras, config.json, history.json) "
                   f"(default {EvaluateConfig.model})")
    p.add_argument("--export-dir", dest="model", help=argparse.SUPPRESS)  # the name before 0.2: --model now
    p.add_argument("--data-dir", dest="data_dir", default=None,
                   help="a face2comics folder or a prepared dir (default: the data the model was trained on)")
    p.add_argument("--split", default=EvaluateConfig.split,
                   help="train, val, test (default) or all: which files to score")
    p.add_argument("--output-dir", dest="output_dir", default=None,
                   help="where the report goes (default MODEL/evaluation-SPLIT)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dir")
    _job_options(p, "YAML whose storage: section holds fsspec options and bind_address")
    return _versioned(p)


def parse_evaluate_args(argv: Sequence[str] | None = None) -> tuple[EvaluateConfig, str | None]:
    args = evaluate_parser().parse_args(argv)
    settings = _settings(args.config, args.bind_address)
    return EvaluateConfig(model=args.model, data_dir=args.data_dir, split=args.split,
                          output_dir=args.output_dir, overwrite=args.overwrite, bind_address=settings.bind_address,
                          storage=settings.storage), args.master


def predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark-submit jobs/predict.py",
        description="Predict face vs comic for many images with Spark: each partition loads the exported "
        "model once and predicts in batches. Output columns: path, p_face, predicted (faces or comics), error.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"export dir or model.keras (default {DEFAULT_MODEL})")
    p.add_argument("--input", action="append", required=True, dest="inputs",
                   help="a folder (its .jpg/.jpeg/.png files), a glob, a .txt file of paths/URIs, or an image; "
                   "repeatable")
    p.add_argument("--output-dir", dest="output_dir",
                   help="output folder, required (Spark writes part files and _SUCCESS)")
    p.add_argument("--output", dest="output_dir", help=argparse.SUPPRESS)  # the name before 0.2
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="csv",
                   help="csv (with header), parquet, or json (one object per line, nulls included) (default csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    p.add_argument("--inference-batch", type=int, default=BATCH, dest="inference_batch",
                   help=f"images per predict call on an executor (default {BATCH})")
    p.add_argument("--batch-size", type=int, dest="inference_batch", help=argparse.SUPPRESS)  # the name before 0.2
    _job_options(p, "YAML whose storage: section holds fsspec options and bind_address")
    return _versioned(p)


def parse_predict_args(argv: Sequence[str] | None = None) -> tuple[PredictConfig, str | None]:
    parser = predict_parser()
    args = parser.parse_args(argv)
    if args.output_dir is None:
        parser.error("the following arguments are required: --output-dir")
    settings = _settings(args.config, args.bind_address)
    return PredictConfig(inputs=tuple(args.inputs), output_dir=args.output_dir, model=args.model, format=args.format,
                         overwrite=args.overwrite, inference_batch=args.inference_batch,
                         bind_address=settings.bind_address, storage=settings.storage), args.master


def configure_local_predict(p: argparse.ArgumentParser) -> None:
    """`python -m tfos_facecnn predict`: a few images at a terminal, no Spark."""
    p.add_argument("images", nargs="+", help="image files, folders, globs or .txt lists of paths")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"export dir or model.keras (default {DEFAULT_MODEL})")


def _job_options(p: argparse.ArgumentParser, config_help: str) -> None:
    """The options every Spark job shares after its own."""
    p.add_argument("--bind-address", dest="bind_address", default=None,
                   help="address of the job's sockets: 'auto' = 127.0.0.1 on local masters (default auto)")
    p.add_argument("--config", default=None,
                   help=f"{config_help} (default: {DEFAULT_CONFIG} in the working directory, if present)")
    p.add_argument("--master", default=None, help="Spark master URL, when not given to spark-submit")


def _settings(config_path: str | None, bind_address: str | None) -> TrainConfig:
    """The training settings file (--config, default conf/train.yaml when present) with --bind-address:
    what the jobs that use no training options take of them (storage options, the bind address)."""
    path = config_path or (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None)
    overrides = {"bind_address": bind_address} if bind_address is not None else {}
    return resolve_config(load_yaml(path) if path else {}, overrides)
