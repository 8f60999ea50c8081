"""DataFrames in, on the in-process local[2] session: a table's bad columns and labels stop a run with one
line before TF starts, and the prepare job writes the same split and byte-identical shards from a
binary-image DataFrame and from a path DataFrame, undecodable rows listed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.spark.frames import SAMPLE_COUNTS, SIZE, sample_frame
from tests.spark.test_prepare import shard_digests
from tfos_facecnn.config import ConfigError, TrainConfig
from tfos_facecnn.data.split import SPLITS, split_of
from tfos_facecnn.data.table import TableColumns, open_table, table_source
from tfos_facecnn.data.tfrecords import read_examples
from tfos_facecnn.preparation import PrepareConfig, prepare

pytestmark = pytest.mark.spark


def _bad(frame, F):
    """(how the table is broken, the columns it is read by, what the error says)."""
    faces = F.col("path").contains("/faces/")
    return [
        (frame.drop("label"), TableColumns(key="pair"),
         r"the DataFrame has no label column 'label' \(its columns: path, modificationTime, length, content, pair\); "
         r"add one \(1/0 or true/false"),
        (frame.withColumn("label", F.lit(1.0)), TableColumns(), "label column 'label' is double; give 1/0"),
        (frame.withColumn("label", F.when(faces, 2).otherwise(0)), TableColumns(),
         "label column 'label' holds 2; accepted: 1/0 or true/false \\(1 = face\\), or faces/comics"),
        (frame.withColumn("label", F.when(faces, "dog").otherwise("cat")), TableColumns(),
         "label column 'label' holds '(dog|cat)', '(dog|cat)'; accepted"),
        (frame.withColumn("label", F.when(faces, 1)), TableColumns(), "label column 'label' holds None; accepted"),
        (frame.withColumn("label", F.lit("FACES")), TableColumns(),
         r"label column 'label' holds only faces; the table needs faces \(1\) and comics \(0\)"),
        (frame.withColumn("content", F.col("path")), TableColumns(),
         "image column 'content' is string, not binary; give the image bytes"),
        (frame.select("label", "pair"), TableColumns(key="pair"),
         "the DataFrame has neither the image column 'content' nor the path column 'path'"),
        (frame, TableColumns(key="pairs"), "the DataFrame has no key column 'pairs', the split's hash key"),
        (frame.withColumn("length", F.col("length").cast("double")), TableColumns(key="length"),
         "key column 'length' is double; the split's hash key must be a string or an integer"),
    ]


@pytest.mark.timeout(240)
def test_bad_columns_and_labels_are_one_line_naming_the_column_and_the_fix(spark, tmp_path: Path):
    from pyspark.sql import functions as F

    from tfos_facecnn.driver import train

    frame = sample_frame(spark)
    for broken, columns, message in _bad(frame, F):
        with pytest.raises(ConfigError, match=message) as caught:
            table_source(broken, columns)
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"could not be read as --data-format 'nosuch': \[DATA_SOURCE_NOT_FOUND\]"):
        open_table(spark, str(tmp_path), "nosuch", TableColumns())
    # train() stops there, before its locks, its logs or any TF node
    cfg = TrainConfig(image_size=SIZE, model_dir=str(tmp_path / "model"), export_dir=str(tmp_path / "export"))
    with pytest.raises(ConfigError, match="label column 'label' holds 2"):
        train(spark, cfg, data=frame.withColumn("label", F.when(F.col("path").contains("/faces/"), 2).otherwise(0)))
    with pytest.raises(ConfigError, match=r"cross-validation \(cv_folds\) reads a face2comics folder"):
        train(spark, replace(cfg, cv_folds=2, key_column="pair"), data=frame)
    assert not (tmp_path / "model").exists() and not (tmp_path / "export").exists()


@pytest.mark.timeout(300)
def test_prepare_from_image_and_path_frames_splits_by_pair_into_identical_shards(spark, tmp_path: Path):
    frame = sample_frame(spark)
    pcfg = PrepareConfig.from_train_config(TrainConfig(image_size=SIZE, key_column="pair"), str(tmp_path / "bytes"),
                                           num_shards=2)
    bad = spark.createDataFrame([("file:/nowhere/faces/bad.jpg", b"not an image", "face", "bad.jpg")],
                                "path string, content binary, label string, pair string")
    manifest = prepare(spark, pcfg, data=frame.select(*bad.columns).union(bad))
    assert manifest["source"] == "DataFrame"
    assert manifest["skipped"] == [{"path": "file:/nowhere/faces/bad.jpg",
                                    "reason": "not an image Pillow can identify"}]
    assert {split: manifest["counts"][split]["total"] for split in SPLITS} == SAMPLE_COUNTS
    for split, shards in manifest["shards"].items():
        for shard in shards:
            for _, label, source in read_examples(str(tmp_path / "bytes" / shard["file"]), SIZE, "jpeg"):
                assert source.startswith("file:") and split_of(source.rsplit("/", 1)[1], 17, 0.3, 0.2) == split
                assert label == int("/faces/" in source)
    # the same rows without their bytes, each image read from its path: byte for byte the same shards
    prepare(spark, replace(pcfg, output_dir=str(tmp_path / "paths")), data=frame.select("path", "label", "pair"))
    assert shard_digests(tmp_path / "paths") == shard_digests(tmp_path / "bytes")
