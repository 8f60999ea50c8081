"""Inference with an exported model: input listing, one-process prediction, and Spark batch inference.

Spark partitions each load the model once (shipped as a broadcast of the .keras file, so executors
need no access to the export dir) and predict in batches; unreadable inputs become rows with an
error instead of stopping the job. The driver never loads pixels.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import storage
from .config import ConfigError
from .data.discover import IMAGE_EXTENSIONS, LABEL_NAMES
from .data.images import ImageDecodeError, decode_image
from .export import MODEL_FILE

BATCH = 64  # images per predict call: amortises the call overhead, bounded memory at any image size
OUTPUT_FORMATS = ("csv", "parquet", "json")  # jobs/predict.py --format
# The output's columns, in order. `label` is kept for the true class (evaluate's predictions.csv);
# `predicted` is the model's call: the class name at P(face) >= metrics.THRESHOLD.
PREDICTION_COLUMNS = ("path", "p_face", "predicted", "error")
DEFAULT_MODEL = "output/export"  # the training job's default --export-dir: what predict and evaluate take as --model
# Spark writer options per --format: a CSV header; JSON lines with every column, nulls included (Spark
# drops null fields by default), as part_writer writes them to storage URIs.
WRITER_OPTIONS = {"csv": {"header": "true"}, "json": {"ignoreNullFields": "false"}}
LIST_SUFFIXES = (".txt", ".lst", ".list")  # a file of paths, one per line
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class PredictConfig:
    """What jobs/predict.py (and `predict` from Python) scores, with which model, into where."""

    inputs: tuple[str, ...]  # folders, globs, .txt lists of paths/URIs, image paths
    output_dir: str  # a folder: Spark's part files and _SUCCESS
    model: str = DEFAULT_MODEL  # an export dir or a model.keras
    format: str = "csv"
    overwrite: bool = False
    inference_batch: int = BATCH  # images per predict call on an executor
    bind_address: str = "auto"  # the job's sockets (TrainConfig.bind_address)
    storage: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)  # fsspec options


@dataclass(frozen=True)
class Prediction:
    path: str
    p_face: float | None
    predicted: str | None  # "faces" or "comics"; None with an error
    error: str | None


def model_file(model: str) -> str:
    """An export dir (holding model.keras) or a .keras file -> the .keras file; a clear error otherwise."""
    if model.endswith(".keras"):
        if not storage.exists(model):
            raise ConfigError(f"model file {model!r} does not exist; pass --model with an exported model.keras")
        return model
    candidate = storage.join(model, MODEL_FILE)
    if not storage.exists(candidate):
        raise ConfigError(
            f"{model!r} holds no {MODEL_FILE}; pass --model with the --export-dir of a finished training run"
        )
    return candidate


def load_model(path: str):
    """Loads a model.keras with tf-keras in safe mode (no arbitrary code from the file)."""
    from .kerasenv import legacy_keras

    keras = legacy_keras()
    if storage.is_local(path):
        return keras.models.load_model(storage.local_path(path), compile=False, safe_mode=True)
    return load_model_bytes(storage.read_bytes(path))


def load_model_bytes(data: bytes):
    from .kerasenv import legacy_keras

    with tempfile.TemporaryDirectory(prefix="facecnn-model-") as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        with open(local, "wb") as handle:
            handle.write(data)
        return legacy_keras().models.load_model(local, compile=False, safe_mode=True)


def image_size_of(model) -> int:
    return int(model.input_shape[1])


def predicted_class(p_face: float) -> str:
    from .metrics import THRESHOLD

    return LABEL_NAMES[1] if p_face >= THRESHOLD else LABEL_NAMES[0]


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Folders (their .jpg/.jpeg/.png files, recursively), globs, list files (one path per line) and
    plain paths -> the paths to predict, in order. Missing paths stay in: they get an error row."""
    paths: list[str] = []
    for item in inputs:
        if any(c in item for c in GLOB_CHARS):
            matches = storage.glob(item)
            if not matches:
                raise ConfigError(f"input glob {item!r} matches no file; check the pattern")
            paths += matches
        elif storage.isdir(item):
            found = [storage.join(item, rel) for rel in storage.walk_files(item)
                     if rel.lower().endswith(IMAGE_EXTENSIONS) and not rel.rsplit("/", 1)[-1].startswith(".")]
            if not found:
                raise ConfigError(f"input folder {item!r} holds no .jpg/.jpeg/.png file")
            paths += found
        elif item.lower().endswith(LIST_SUFFIXES) and storage.exists(item):
            lines = storage.read_bytes(item).decode("utf-8").splitlines()
            paths += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        else:
            paths.append(item)
    paths = [storage.absolute(path) for path in paths]  # executors run in other working directories
    if not paths:
        raise ConfigError("no input images given; pass folders, globs, list files or image paths")
    return paths


def _load_or_error(path: str, size: int) -> np.ndarray | str:
    try:
        if storage.isdir(path):
            return "is a directory, not an image"
        return decode_image(storage.read_bytes(path), size)
    except FileNotFoundError:
        return "no such file"
    except (OSError, ImageDecodeError) as e:
        return str(e) or type(e).__name__


def probabilities_of(model, items: Sequence[np.ndarray | str | None]) -> list[float | None]:
    """P(face) of every decoded image among `items` in one predict call; None for the others (their
    error messages). Shared by the jobs and predict_udf."""
    good = [i for i, item in enumerate(items) if isinstance(item, np.ndarray)]
    out: list[float | None] = [None] * len(items)
    if good:
        batch = np.stack([items[i] for i in good]).astype(np.float32)
        for i, p in zip(good, model.predict_on_batch(batch).reshape(-1), strict=True):
            out[i] = float(p)
    return out


def predict_paths(model, paths: Iterable[str], batch_size: int = BATCH) -> Iterator[Prediction]:
    """One Prediction per path, in order; batches of decodable images go through the model."""
    size = image_size_of(model)
    pending: list[tuple[str, np.ndarray | str]] = []

    def flush() -> Iterator[Prediction]:
        for (path, item), p in zip(pending, probabilities_of(model, [item for _, item in pending]), strict=True):
            if p is None:
                yield Prediction(path, None, None, str(item))
            else:
                yield Prediction(path, p, predicted_class(p), None)
        pending.clear()

    for path in paths:
        pending.append((path, _load_or_error(path, size)))
        if len(pending) >= batch_size:
            yield from flush()
    yield from flush()


_WORKER_MODELS: dict[str, Any] = {}  # one loaded model per Python worker and model digest


@dataclass(frozen=True)
class ShippedModel:
    """A .keras file broadcast to the executors; `load()` runs there, once per Python worker."""

    broadcast: Any
    digest: str

    def load(self):
        model = _WORKER_MODELS.get(self.digest)
        if model is None:
            model = _WORKER_MODELS[self.digest] = load_model_bytes(self.broadcast.value)
        return model


def ship_model(sc, model_path: str) -> ShippedModel:
    """Broadcasts the model file, so executors need no access to the export dir."""
    data = storage.read_bytes(model_path)
    return ShippedModel(sc.broadcast(data), hashlib.sha256(data).hexdigest())


def predict_partition(model: ShippedModel, batch_size: int, storage_options: dict[str, Any] | None = None) -> Callable:
    """Executor side: load the broadcast model once per Python worker, then predict the partition."""

    def run(paths: Iterable[str]) -> Iterator[tuple]:
        storage.configure(storage_options)
        for row in predict_paths(model.load(), paths, batch_size):
            yield row.path, row.p_face, row.predicted, row.error

    return run


def predict_on_spark(sc, model_path: str, paths: Sequence[str], batch_size: int = BATCH,
                     storage_options: dict[str, Any] | None = None):
    """RDD of (path, p_face, predicted, error) rows (PREDICTION_COLUMNS), one per input path."""
    partitions = max(sc.defaultParallelism, math.ceil(len(paths) / (4 * batch_size)))
    return sc.parallelize(list(paths), partitions).mapPartitions(
        predict_partition(ship_model(sc, model_path), batch_size, storage_options)
    )


def predict(spark: Any, pcfg: PredictConfig) -> dict[str, Any]:
    """jobs/predict.py: checks everything it can before Spark starts, then predicts and writes; returns
    counts. `spark`: a SparkSession, or None for the job's own, started once the checks pass."""
    from .part_writer import parquet_available, write_parts
    from .session import session_source
    from .storage.access import prepare_storage

    if pcfg.inference_batch < 1:
        raise ConfigError(f"--inference-batch {pcfg.inference_batch} must be at least 1")
    if pcfg.format not in OUTPUT_FORMATS:
        raise ConfigError(f"--format {pcfg.format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    options = dict(pcfg.storage)
    output, model = storage.absolute(pcfg.output_dir), storage.absolute(pcfg.model)
    env = prepare_storage(options, {"--model": model}, {"--output-dir": output})
    model_path = model_file(model)
    if storage.exists(output) and not pcfg.overwrite:
        raise ConfigError(f"--output-dir {output!r} already exists; pass --overwrite to replace it")
    paths = expand_inputs(pcfg.inputs)
    env |= storage.forwarded_env(paths)
    if not storage.is_local(output) and pcfg.format == "parquet":
        parquet_available()
    source = session_source(spark)
    with source.open("tfos-facecnn-predict", source.address(pcfg.bind_address), env) as session:
        from pyspark.sql.types import DoubleType, StringType, StructField, StructType

        schema = StructType([
            StructField("path", StringType(), False),
            StructField("p_face", DoubleType(), True),
            StructField("predicted", StringType(), True),
            StructField("error", StringType(), True),
        ])
        rows = predict_on_spark(session.sparkContext, model_path, paths, pcfg.inference_batch, options).cache()
        try:
            if storage.is_local(output):
                frame = session.createDataFrame(rows, schema)
                writer = frame.write.mode("overwrite" if pcfg.overwrite else "errorifexists").format(pcfg.format)
                writer.options(**WRITER_OPTIONS.get(pcfg.format, {})).save(output)
            else:
                write_parts(rows, output, pcfg.format, options)
            failed = rows.filter(lambda row: row[3] is not None).map(lambda row: (row[0], row[3])).collect()
        finally:
            rows.unpersist()
    return {"rows": len(paths), "errors": failed, "output": output, "format": pcfg.format}
