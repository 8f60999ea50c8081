"""Training configuration: built-in defaults < YAML file < command line, validated before Spark starts.

Every setting lives in one frozen dataclass so that the driver, the TF nodes and the outputs agree
on one resolved value. Errors name the key and the fix; nothing here imports Spark or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from .modes import INPUT_MODES  # the registry of input modes; it imports nothing of the package

VARIANTS = ("base", "l1", "l2", "dropout")
FEED_CACHES = ("memory_and_disk", "disk_only")  # modes.spark.FEED_STORAGE_LEVELS maps them to Spark's levels
ALL_VARIANTS = "all"  # train every variant with the same data and seed, then compare them
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical", "none")


class ConfigError(ValueError):
    """A setting is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class AugmentConfig:
    """The reference study's augmentation block; every entry can be switched off (0 / "none")."""

    flip: str = "horizontal"  # faces are left-right symmetric; upside-down faces never occur
    rotation: float = 0.3  # reference: RandomRotation(0.3), a fraction of 2*pi
    contrast: float = 0.1  # reference: RandomContrast(0.1)
    # The reference inverts colours with p=0.5; off by default: measured on the sample (BENCHMARKS.md,
    # "Quality"), it pulled P(face) on faces to 0.82-0.94 where 0.97-0.99 without it.
    invert_probability: float = 0.0
    zoom_in: float = 0.3  # reference: zoom in up to 30%
    zoom_out: float = 0.2  # reference: zoom out up to 20%
    translation: float = 0.1  # reference names random translation without a factor: 10% of each side


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment tracking (tracking.py): off unless an MLflow tracking URI is given."""

    mlflow_uri: str | None = None  # e.g. http://mlflow:5000, databricks, file:///abs/mlruns; None: no tracking
    experiment: str = "tfos-facecnn"  # the MLflow experiment the runs go into


# Sections of the config that are dataclasses of their own: YAML mappings, "section.key" on the command line.
SECTIONS: dict[str, type] = {"augment": AugmentConfig, "tracking": TrackingConfig}


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run. Paths may be local paths or URIs (hdfs://, s3://, gs://, file://)."""

    data_dir: str | None = None  # None: the embedded 35-pair face2comics sample
    # A Spark table as the data instead (jobs' --data-table), read once the session is open with
    # spark.read.format(data_format).load(data_table); from Python, train(spark, cfg, data=DataFrame).
    data_table: str | None = None
    data_format: str = "parquet"  # the Spark data source that reads data_table: parquet, delta, orc, json...
    image_column: str = "content"  # a table's image bytes (binary): spark.read.format("binaryFile")'s column
    label_column: str = "label"  # a table's labels: 1/0 or true/false (1 = face), or faces/comics (face/comic)
    path_column: str = "path"  # a table's image paths or URIs: read from there when it has no image column
    # A table's split key: a row's split is a hash of it (the folder source hashes the path inside the class
    # folder); a column naming the face/comic pair keeps each pair in one split.
    key_column: str = "path"
    model_dir: str = "output/model"  # checkpoints, TensorBoard logs, per-node logs
    export_dir: str = "output/export"  # the trained model and its JSON reports
    input_mode: str = "spark"  # spark: executors feed TF through TFoS queues; tensorflow: TF reads storage
    variant: str = "base"
    epochs: int = 50  # the reference study trained 50 epochs
    batch_size: int = 32  # global batch (all workers together); the reference used 32
    image_size: int = 350  # the reference CNN's input is 350x350x3 (425,665 parameters)
    learning_rate: float = 1e-3  # Adam's default, as in the reference
    l1_factor: float = 1e-5  # small enough not to swamp the BCE loss at 410k dense weights
    l2_factor: float = 1e-4  # the usual Keras-example weight decay strength
    dropout_rate: float = 0.5  # the classic rate before dense layers (Srivastava et al.)
    val_fraction: float = 0.3  # reference: 70% train / 30% validation
    test_fraction_of_val: float = 0.2  # reference: the test set is 20% carved out of validation
    # Salt of the split hash; 17 gives the 35-pair sample a 25/8/2-pair split, the closest to 70/30 and 20%.
    split_seed: int = 17
    seed: int = 42  # weight init, shuffling and augmentation
    # Cross-validation (set by jobs/crossval.py): with cv_folds > 0 the pairs of fold cv_fold (from 0)
    # are the test set, the others train + validation by val_fraction.
    cv_folds: int = 0
    cv_fold: int = 0
    cluster_size: int | None = None  # None: as many TF nodes as Spark gives executors
    bind_address: str = "auto"  # auto: 127.0.0.1 on local masters, TFoS's routing choice elsewhere
    # s the driver waits for Spark to give one executor per TF node: on local-cluster and standalone they
    # register within seconds; this bounds executors that never come (a worker that cannot reach the driver)
    executor_timeout: int = 60
    reservation_timeout: int = 120  # s for all TF nodes to register (TFoS default: 600)
    feed_timeout: int = 300  # s a Spark feeder waits for its TF node to drain a partition
    finish_timeout: int = 600  # s the driver waits, after the feed ends, for every node's export and exit
    node_timeout: int = 120  # s without a heartbeat before the driver declares a TF node dead and stops the job
    collective_timeout: int = 300  # s a collective op may wait for its peers (longer than any step + validation)
    overwrite: bool = False  # train again even when MODEL_DIR holds a finished or different run
    # SPARK mode: cache a node's decoded validation images in its memory when they fit in this many MB.
    # 0 (default): decode them every epoch, so a node's memory does not grow with the data set.
    cache_limit_mb: int = 0
    # SPARK mode: where executors keep the encoded training images between epochs (Spark storage levels).
    # memory_and_disk: in the executors' heap, spilling to local disk past it, so an executor JVM grows
    # with the data set up to its memory; disk_only: Spark's local dir (read back through the OS page
    # cache): at 20,000 images the JVM's peak grew 53% instead of 269% (BENCHMARKS.md).
    feed_cache: str = "memory_and_disk"
    # TENSORFLOW mode: a node decodes its training images once and keeps them in memory (uint8, 367 KB an
    # image at 350 px) when its share fits in this many MB, instead of decoding them every epoch: ~10%
    # more images/s on 2 cores (BENCHMARKS.md). 512 MB holds ~1,400 images at 350 px; above it memory
    # stays flat in the data set's size. 0: decode every epoch.
    train_cache_mb: int = 512
    # TENSORFLOW mode with shards on storage: the most disk (MB) a node's local shard cache may take;
    # 0: no limit but the free space of Spark's local dir. A node caches only its own share.
    shard_cache_mb: int = 0
    # Export the weights of the epoch with the lowest validation loss (false: the last epoch's).
    keep_best_epoch: bool = True
    patience: int = 0  # stop after this many epochs without a lower validation loss; 0: run every epoch
    # after training: figures + report.md in EXPORT_DIR/report, written by the chief TF node (it loads 9 images)
    report: bool = True
    # also show every process's log lines (TFoS, TF, Spark's Python workers) live, not only in MODEL_DIR/logs
    verbose: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # fsspec options per storage scheme ({"s3": {"client_kwargs": {...}}}); may hold credentials, so it
    # is never written into outputs (see public_dict) nor into a run's fingerprint.
    storage: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every setting, storage options included: what travels from the driver to the TF nodes."""
        return dataclasses.asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """The settings written into outputs (config.json): without the storage options."""
        return {k: v for k, v in self.to_dict().items() if k != "storage"}


_RANGES: dict[str, tuple[float, float]] = {
    "epochs": (1, 100_000),
    "batch_size": (1, 1_000_000),
    "image_size": (39, 4096),  # 39: the smallest input the three conv/pool blocks leave a 1x1 map for
    "learning_rate": (1e-9, 10.0),
    "l1_factor": (0.0, 1.0),
    "l2_factor": (0.0, 1.0),
    "dropout_rate": (0.0, 0.99),
    "val_fraction": (0.01, 0.99),
    "test_fraction_of_val": (0.0, 0.99),
    "cluster_size": (1, 10_000),
    "executor_timeout": (1, 86_400),
    "reservation_timeout": (1, 86_400),
    "feed_timeout": (1, 86_400),
    "finish_timeout": (1, 86_400),
    "node_timeout": (5, 86_400),
    "collective_timeout": (10, 86_400),
    "patience": (0, 100_000),
    "cv_folds": (0, 1000),
    "cv_fold": (0, 999),
    "cache_limit_mb": (0, 1_000_000),
    "train_cache_mb": (0, 1_000_000),
    "shard_cache_mb": (0, 100_000_000),
    "rotation": (0.0, 1.0),
    "contrast": (0.0, 1.0),
    "invert_probability": (0.0, 1.0),
    "zoom_in": (0.0, 0.99),
    "zoom_out": (0.0, 10.0),
    "translation": (0.0, 1.0),
}
# Keys earlier releases knew, with what replaced them.
_REMOVED: dict[str, str] = {
    "steps_safety": "every epoch now trains on every training image (steps per epoch = ceil(images / "
                    "batch_size), the last batch topped up with repeats)",
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "input_mode": INPUT_MODES,
    "variant": (*VARIANTS, ALL_VARIANTS),
    "flip": FLIP_MODES,
    "feed_cache": FEED_CACHES,
}


def _coerce(key: str, value: Any, default: Any, annotation: str) -> Any:
    """Checks one value's type against its field's; YAML ints are accepted where floats are wanted."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}': must not be empty; remove it to use the default {default!r}")
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
        return value
    if "int" in annotation and "float" not in annotation:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected a whole number, got {value!r}")
        return value
    if "float" in annotation:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if "str" in annotation:
        if not isinstance(value, str) or (not optional and not value.strip()):
            raise ConfigError(f"config key '{key}': expected a non-empty string, got {value!r}")
        return value
    return value


def _check_value(key: str, value: Any) -> None:
    if value is None:
        return
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(_CHOICES[key])}")
    if key in _RANGES:
        low, high = _RANGES[key]
        if not low <= value <= high:
            raise ConfigError(f"config key '{key}': {value!r} is out of range [{low:g}, {high:g}]")


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    known = {f.name: f for f in fields(cls)}
    removed = sorted(set(values) & set(_REMOVED))
    if removed:
        raise ConfigError(f"config key '{prefix}{removed[0]}' was removed: {_REMOVED[removed[0]]}; delete it from "
                          "the config")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; known keys: {', '.join(sorted(known))}"
        )
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        f = known[name]
        if name == "storage":
            kwargs[name] = _storage_options(value)
            continue
        if name in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{name}': expected a mapping of its settings")
            kwargs[name] = _build(SECTIONS[name], value, prefix=f"{name}.")
            continue
        value = _coerce(prefix + name, value, getattr(defaults, name), str(f.type))
        _check_value(name, value)
        kwargs[name] = value
    return dataclasses.replace(defaults, **kwargs)


def _check_folds(cfg: TrainConfig) -> TrainConfig:
    """The checks across keys: cv_fold must name one of the cv_folds folds; one data source."""
    if cfg.data_dir and cfg.data_table:
        raise ConfigError("config keys 'data_dir' and 'data_table' are both set; give one of them (--data-dir or "
                          "--data-table)")
    if cfg.cv_folds == 1:
        raise ConfigError("config key 'cv_folds': 1 fold leaves nothing to train on; use 2 or more (or 0: no folds)")
    if cfg.cv_folds and not cfg.cv_fold < cfg.cv_folds:
        raise ConfigError(f"config key 'cv_fold': {cfg.cv_fold} is not a fold of {cfg.cv_folds} (0 to "
                          f"{cfg.cv_folds - 1})")
    return cfg


def _storage_options(value: Any) -> dict[str, dict[str, Any]]:
    """The `storage:` section: one mapping of fsspec options per scheme (s3, gs, abfs, hdfs)."""
    from .storage.schemes import CONFIG_SECTIONS

    if not isinstance(value, Mapping):
        raise ConfigError("config key 'storage': expected a mapping of scheme to fsspec options, e.g. "
                          "storage: {s3: {client_kwargs: {region_name: eu-west-1}}}")
    options = {}
    for section, values in value.items():
        if section not in CONFIG_SECTIONS:
            raise ConfigError(f"config key 'storage.{section}': unknown storage scheme; known: "
                              f"{', '.join(CONFIG_SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"config key 'storage.{section}': expected a mapping of fsspec options")
        options[section] = dict(values)
    return options


def load_yaml(path: str) -> dict[str, Any]:
    """Reads a YAML config file into a mapping; a missing file or bad YAML is a ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist; pass --config with an existing YAML file")
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path!r} is not valid YAML{where}: fix the syntax") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of keys to values")
    return loaded


def resolve_config(yaml_values: Mapping[str, Any], overrides: Mapping[str, Any]) -> TrainConfig:
    """Defaults < YAML < command line. `overrides` holds only the options the user gave (no None)."""
    merged: dict[str, Any] = dict(yaml_values)
    sections = {name: dict(merged.get(name) or {}) for name in SECTIONS}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if name and section in sections:
            sections[section][name] = value
        else:
            merged[key] = value
    merged.update({name: values for name, values in sections.items() if values})
    return _check_folds(_build(TrainConfig, merged))
