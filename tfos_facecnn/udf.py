"""DataFrames in, predictions out: `predict_udf(model)` scores a binary image column of any DataFrame.

    images = spark.read.format("binaryFile").load("photos/*.jpg")
    scored = images.withColumn("p_face", predict_udf("output/export")("content"))

It is pyspark's `predict_batch_udf`: each Python worker loads the model once (its `make_predict_fn`,
cached by pyspark), then scores Arrow batches of `batch_size` rows. The driver broadcasts the model
file, so executors need no access to the export dir (as jobs/predict.py). Images are decoded with the
training's decoder (data.images.decode_image) at the model's input size; an image that does not decode
gives a null P(face), and with `details=True` a struct of the jobs' columns, the reason included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import storage
from .config import ConfigError
from .data.images import ImageDecodeError, decode_image
from .inference import (
    BATCH,
    DEFAULT_MODEL,
    PREDICTION_COLUMNS,
    ShippedModel,
    image_size_of,
    model_file,
    predicted_class,
    probabilities_of,
    ship_model,
)

NO_CONTENT = "no image bytes (null)"  # the error of a row whose image column is null
DETAIL_FIELDS = PREDICTION_COLUMNS[1:]  # p_face, predicted, error: the jobs' columns after path


def details_type():
    """The struct `predict_udf(..., details=True)` returns: p_face (double), predicted and error (strings)."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    return StructType([StructField("p_face", DoubleType(), True), StructField("predicted", StringType(), True),
                       StructField("error", StringType(), True)])


def decode_or_error(content: bytes | bytearray | None, size: int) -> np.ndarray | str:
    """One cell of the image column -> pixels at the model's size, or why not."""
    if content is None:
        return NO_CONTENT
    try:
        return decode_image(bytes(content), size)
    except ImageDecodeError as e:
        return str(e)


def score_contents(model, contents: np.ndarray, details: bool) -> np.ndarray | dict[str, np.ndarray]:
    """One batch of image bytes -> P(face) per row (NaN where none; Spark stores it as null), or with
    `details` the columns of details_type()."""
    size = image_size_of(model)
    items = [decode_or_error(content, size) for content in contents]
    probabilities = probabilities_of(model, items)
    p_face = np.array([np.nan if p is None else p for p in probabilities], dtype=np.float64)
    if not details:
        return p_face
    return {
        "p_face": p_face,
        "predicted": np.array([None if p is None else predicted_class(p) for p in probabilities], dtype=object),
        "error": np.array([item if isinstance(item, str) else None for item in items], dtype=object),
    }


def make_predict_fn(model: ShippedModel, details: bool) -> Callable[[], Callable[[np.ndarray], Any]]:
    """predict_batch_udf's contract: called once per Python worker (pyspark caches what it returns)."""

    def make() -> Callable[[np.ndarray], Any]:
        loaded = model.load()
        return lambda contents: score_contents(loaded, contents, details)

    return make


def predict_udf(model: str = DEFAULT_MODEL, *, batch_size: int = BATCH, details: bool = False) -> Callable:
    """A column function for a binary column of JPEG/PNG bytes: `predict_udf(export)("content")`.

    `model`: an export dir or a model.keras (local path or storage URI, read on the driver). The result:
    P(face) as a double, null for an image that does not decode; with `details=True`, a struct
    <p_face double, predicted string, error string> (details_type()): `select("path", "prediction.*")` gives
    jobs/predict.py's columns. Needs an active SparkSession (the model file is broadcast)."""
    from pyspark import SparkContext

    if batch_size < 1:
        raise ConfigError(f"predict_udf batch_size={batch_size} must be at least 1")
    path = model_file(storage.absolute(model))
    try:
        import pandas  # noqa: F401  (pyspark's Arrow UDFs need both, on the driver and every executor)
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"predict_udf needs pandas and pyarrow ({e}): pip install 'tfos-facecnn[udf]' on the "
                          "driver and every executor") from e
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import DoubleType

    sc = SparkContext._active_spark_context
    if sc is None:
        raise ConfigError("predict_udf needs an active SparkSession (it broadcasts the model): build the "
                          "session first, e.g. SparkSession.builder.getOrCreate()")
    return predict_batch_udf(make_predict_fn(ship_model(sc, path), details),
                             return_type=details_type() if details else DoubleType(), batch_size=batch_size)
