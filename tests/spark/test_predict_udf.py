"""DataFrames in and out on the in-process local[2] session: predict_udf on spark.read.format("binaryFile"),
and the predict library function (jobs/predict.py) writing csv, parquet and json through Spark's writers
and json through the part writer (the storage-URI path), all with the same columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SAMPLE
from tfos_facecnn.inference import PREDICTION_COLUMNS, PredictConfig, load_model, predict, predict_paths
from tfos_facecnn.udf import NO_CONTENT

pytestmark = pytest.mark.spark
SIZE = 48  # the smallest input the reference CNN takes quickly; weights do not matter here


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """An untrained model in an export dir: predict_udf and the job only need its file and input size."""
    from tfos_facecnn.config import resolve_config
    from tfos_facecnn.model import build_from_config

    folder = tmp_path_factory.mktemp("export")
    build_from_config(resolve_config({}, {"image_size": SIZE}), training=False).save(str(folder / "model.keras"))
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Two good images (JPEG, PNG), a text file and an empty file, all named like images."""
    folder = tmp_path_factory.mktemp("images")
    shutil.copy(SAMPLE / "faces" / "2.jpg", folder / "face.jpg")
    Image.open(SAMPLE / "comics" / "2.jpg").save(folder / "comic.png")
    (folder / "text.jpg").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def local_p_face(export: Path, folder: Path) -> dict[str, float | None]:
    """What the one-process path (python -m tfos_facecnn predict) gives, by file name."""
    model = load_model(str(export / "model.keras"))
    return {Path(row.path).name: row.p_face for row in predict_paths(model, sorted(map(str, folder.iterdir())))}


@pytest.mark.timeout(300)
def test_predict_udf_on_binary_files_matches_local_predictions_and_nulls_bad_images(spark, export: Path,
                                                                                     images: Path):
    from tfos_facecnn import predict_udf

    frame = spark.read.format("binaryFile").load(str(images))
    scored = {Path(row.path).name: row.p_face
              for row in frame.withColumn("p_face", predict_udf(str(export))("content")).collect()}
    expected = local_p_face(export, images)
    del expected["empty.jpg"]  # Spark's file listing skips empty files: binaryFile has no row for it
    assert scored.keys() == expected.keys() and scored["text.jpg"] is None
    for name in ("face.jpg", "comic.png"):
        assert scored[name] == pytest.approx(expected[name], abs=1e-5)

    with_null = frame.selectExpr("path", "IF(path LIKE '%face.jpg', NULL, content) AS content")
    details = with_null.withColumn("prediction", predict_udf(str(export), details=True, batch_size=2)("content"))
    rows = {Path(r.path).name: r for r in details.select("path", "prediction.*").collect()}
    assert details.select("path", "prediction.*").columns == list(PREDICTION_COLUMNS)
    assert {name: r.error for name, r in rows.items()} == {
        "face.jpg": NO_CONTENT, "comic.png": None, "text.jpg": "not an image Pillow can identify"}
    comic = rows["comic.png"]
    assert comic.p_face == pytest.approx(expected["comic.png"], abs=1e-5)
    assert comic.predicted == ("faces" if comic.p_face >= 0.5 else "comics")
    assert all(r.p_face is None and r.predicted is None for name, r in rows.items() if name != "comic.png")


@pytest.mark.timeout(300)
def test_predict_writes_the_same_columns_in_every_format(spark, export: Path, images: Path, tmp_path: Path, s3):
    readers = {"csv": lambda path: spark.read.option("header", True).option("inferSchema", True).csv(path),
               "parquet": spark.read.parquet, "json": spark.read.json}
    results = {}
    for fmt in ("csv", "parquet", "json"):
        out = tmp_path / fmt
        config = PredictConfig(inputs=(str(images),), output_dir=str(out), model=str(export), format=fmt)
        summary = predict(spark, config)
        assert summary["rows"] == 4 and len(summary["errors"]) == 2 and (out / "_SUCCESS").exists()
        frame = readers[fmt](str(out))
        if fmt != "json":  # Spark's JSON reader orders columns by name
            assert frame.columns == list(PREDICTION_COLUMNS), fmt
        results[fmt] = {tuple(row[c] for c in PREDICTION_COLUMNS) for row in frame.collect()}
    assert results["csv"] == results["parquet"] == results["json"]
    assert all('"error":null' in line for part in (tmp_path / "json").glob("part-*.json")
               for line in part.read_text().splitlines() if '"predicted":"' in line)  # nulls are written

    # a storage URI goes through the part writer (pyspark has no s3a jars): the same rows, the same JSON lines
    server = s3.server
    options = {"s3": {"key": server.access_key, "secret": server.secret_key, "endpoint_url": server.endpoint,
                      "client_kwargs": {"region_name": server.region}}}  # the local[2] executors predate s3's env
    summary = predict(spark, PredictConfig(inputs=(str(images),), output_dir=f"{s3.url}/json", model=str(export),
                                           format="json", storage=options))
    parts = [key for key in s3.keys("json") if key.endswith(".json")]
    assert summary["rows"] == 4 and "_SUCCESS" in s3.keys("json") and parts
    lines = [line for part in parts for line in s3.fs.cat_file(f"{s3.url[5:]}/json/{part}").decode().splitlines()]
    assert {tuple(json.loads(line).values()) for line in lines} == results["json"]
    assert all(list(json.loads(line)) == list(PREDICTION_COLUMNS) for line in lines)
