"""Training from a table in SPARK mode: train(spark, cfg, data=DataFrame) from a notebook-style script on
local[*], and spark-submit jobs/train.py --data-table on local-cluster[2,1,1024], each fed straight from
the table's rows, validated and tested from the held-out shards in MODEL_DIR/heldout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_train_job, spark_env
from tests.spark.checks import EPOCH_LINE, SMALL_RUN, check_every_image_fed, check_export
from tests.spark.frames import SAMPLE_COUNTS, sample_frame
from tfos_facecnn.data.split import SPLITS, split_of

pytestmark = pytest.mark.spark


def check_table_run(model: Path, export: Path, source: str, val_shards: int) -> None:
    """The counts of the sample split by pair, the held-out shards the nodes read, and test predictions
    named by the table's paths, in the split of their pair."""
    data = json.loads((export / "data.json").read_text())
    assert data["root"] == source and data["prepared_dir"] == str(model / "heldout")
    assert {split: data["counts"][split]["total"] for split in SPLITS} == SAMPLE_COUNTS
    heldout = json.loads((model / "heldout" / "manifest.json").read_text())
    assert heldout["source"] == source and heldout["shards"]["train"] == []
    assert len(heldout["shards"]["val"]) == val_shards
    assert {split: heldout["counts"][split]["total"] for split in ("val", "test")} == {"val": 16, "test": 4}
    predictions = json.loads((export / "test_predictions.json").read_text())
    assert len(predictions) == 4
    for row in predictions:
        assert row["path"].startswith("file:") and split_of(row["path"].rsplit("/", 1)[1], 17, 0.3, 0.2) == "test"
        assert row["label"] == int("/faces/" in row["path"])


@pytest.mark.timeout(420)
def test_python_api_trains_from_a_binary_file_dataframe_on_local_star(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "tests.spark.frames", str(tmp_path), "spark"], env=spark_env(),
                            cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "decoding the table's images on the executors (DataFrame" in result.stdout
    assert [int(n) for n in EPOCH_LINE.findall(result.stdout)] == [1, 2]
    model, export = tmp_path / "model", tmp_path / "export"
    check_export(export, epochs=2, workers=1)
    check_table_run(model, export, "DataFrame", val_shards=1)
    check_every_image_fed(model, export, epochs=2, batch=8)


@pytest.mark.timeout(480)
def test_data_table_trains_two_nodes_on_local_cluster(spark, tmp_path: Path):
    from pyspark.sql import functions as F

    table = tmp_path / "faces.parquet"
    # labels as 1/0 this time; the key column is the pair's file name, named in the config
    sample_frame(spark).withColumn("label", (F.col("label") == "faces").cast("int")).write.parquet(str(table))
    config = tmp_path / "table.yaml"
    config.write_text("key_column: pair\n")
    model, export = tmp_path / "model", tmp_path / "export"
    result = run_train_job("local-cluster[2,1,1024]", "--input-mode", "spark", *SMALL_RUN, "--config", str(config),
                           "--data-table", str(table), "--model-dir", str(model), "--export-dir", str(export),
                           timeout=450)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [int(n) for n in EPOCH_LINE.findall(result.stdout)] == [1, 2]
    check_export(export, epochs=2, workers=2)
    check_table_run(model, export, f"{table} (parquet table)", val_shards=2)
    # Spark fed each epoch in full: the 50 training rows once + the repeats filling 7 steps x 8. (Not the
    # per-node accounting of check_every_image_fed: at this size a node's read-ahead exceeds its share, and
    # one run pulled 2 images beyond it.)
    nodes = json.loads((model / "nodes.json").read_text())
    assert {node["steps_per_epoch"] for node in nodes.values()} == {7}
    assert sum(node["items_fed"] + node["items_dropped"] for node in nodes.values()) == 2 * 7 * 8


@pytest.mark.timeout(240)
def test_a_missing_data_table_stops_before_spark(tmp_path: Path):
    result = run_train_job("local[*]", "--data-table", str(tmp_path / "none.parquet"), timeout=200)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert f"--data-table '{tmp_path / 'none.parquet'}' does not exist; pass the folder (or file)" in output
    assert "Traceback" not in output and "SparkContext: Running Spark version" not in output
