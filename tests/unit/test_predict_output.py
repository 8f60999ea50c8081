"""Prediction output without Spark or TF: the columns, the part files' encodings, predict_udf's batch
function (a stand-in model), and predict_udf's refusals."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLE
from tfos_facecnn.config import ConfigError
from tfos_facecnn.inference import OUTPUT_FORMATS, PREDICTION_COLUMNS, predict_paths
from tfos_facecnn.part_writer import ENCODERS
from tfos_facecnn.udf import NO_CONTENT, make_predict_fn, predict_udf, score_contents

ROWS = [("/a/face.jpg", 0.75, "faces", None), ("/a/bad.jpg", None, None, "empty file")]


class MeanModel:
    """A stand-in model: P(face) = mean pixel / 255, from images of its input size."""

    input_shape = (None, 16, 16, 3)

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape)
        return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True) / 255.0


class _Shipped:
    """ShippedModel's interface (`load()`), without a broadcast."""

    def __init__(self, model) -> None:
        self.model = model

    def load(self):
        return self.model


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(out, format="PNG")
    return out.getvalue()


def test_columns_are_path_p_face_predicted_error_in_every_format():
    assert PREDICTION_COLUMNS == ("path", "p_face", "predicted", "error")
    assert set(OUTPUT_FORMATS) == set(ENCODERS) == {"csv", "parquet", "json"}
    assert list(csv.reader(io.StringIO(ENCODERS["csv"](ROWS).decode()))) == [
        list(PREDICTION_COLUMNS), ["/a/face.jpg", "0.75", "faces", ""], ["/a/bad.jpg", "", "", "empty file"]]
    lines = ENCODERS["json"](ROWS).decode().splitlines()
    assert lines[0] == '{"path":"/a/face.jpg","p_face":0.75,"predicted":"faces","error":null}'
    assert [list(json.loads(line)) for line in lines] == [list(PREDICTION_COLUMNS)] * 2


def test_predict_paths_calls_the_prediction_predicted(tmp_path: Path):
    (tmp_path / "bad.jpg").write_bytes(b"")
    rows = list(predict_paths(MeanModel(), [str(SAMPLE / "faces" / "0.jpg"), str(tmp_path / "bad.jpg")]))
    assert rows[0].predicted in ("faces", "comics") and rows[0].error is None
    assert (rows[1].p_face, rows[1].predicted, rows[1].error) == (None, None, "empty file")


def test_udf_batch_scores_good_images_in_one_call_and_names_the_others():
    model = MeanModel()
    contents = np.array([png((255, 255, 255)), None, b"not an image", png((0, 0, 0)), b""], dtype=object)
    p_face = score_contents(model, contents, details=False)
    assert p_face.dtype == np.float64 and p_face[0] == pytest.approx(1.0) and p_face[3] == pytest.approx(0.0)
    assert np.isnan(p_face[[1, 2, 4]]).all()  # NaN: Spark stores it as null
    assert model.batches == [(2, 16, 16, 3)]  # decoded at the model's input size, one predict call
    details = make_predict_fn(_Shipped(model), details=True)()(contents)
    assert list(details) == list(PREDICTION_COLUMNS[1:])
    assert list(details["predicted"]) == ["faces", None, None, "comics", None]
    assert list(details["error"]) == [None, NO_CONTENT, "not an image Pillow can identify", None, "empty file"]


def test_predict_udf_refuses_bad_settings_before_any_spark_work(tmp_path: Path, monkeypatch):
    from pyspark import SparkContext

    monkeypatch.setattr(SparkContext, "_active_spark_context", None)  # a whole-suite run has one alive
    with pytest.raises(ConfigError, match="batch_size=0 must be at least 1"):
        predict_udf(str(tmp_path), batch_size=0)
    with pytest.raises(ConfigError, match="holds no model.keras"):
        predict_udf(str(tmp_path))
    (tmp_path / "model.keras").write_bytes(b"")
    with pytest.raises(ConfigError, match="needs an active SparkSession"):
        predict_udf(str(tmp_path))
