"""A table as the data, without Spark: labels, the data= argument, --data-table's checks, the row loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SAMPLE
from tfos_facecnn.config import ConfigError, TrainConfig, resolve_config
from tfos_facecnn.data.split import split_of
from tfos_facecnn.data.table import (
    NO_IMAGE,
    TableColumns,
    data_argument,
    label_value,
    row_loader,
    table_description,
    table_reads,
)


@pytest.mark.parametrize("value,label", [
    (1, 1), (0, 0), (True, 1), (False, 0), ("faces", 1), ("Comics", 0), (" FACE ", 1), ("comic", 0),
    (2, None), (-1, None), ("dog", None), ("1", None), (None, None), (1.0, None), (b"faces", None),
])
def test_labels_are_one_zero_booleans_or_class_names(value, label):
    assert label_value(value) == label


def test_the_data_argument_is_a_folder_or_a_dataframe(tmp_path: Path):
    assert data_argument(None) == (None, None)
    assert data_argument("s3://bucket/faces") == ("s3://bucket/faces", None)
    assert data_argument(tmp_path) == (str(tmp_path), None)
    with pytest.raises(ConfigError, match="data= takes a folder path or URI, or a Spark DataFrame, not a list"):
        data_argument([("a.jpg", 1)])


def test_a_table_path_is_checked_before_spark_as_far_as_it_can_be(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"--data-table '.*/none.parquet' does not exist; pass the folder"):
        table_reads(str(tmp_path / "none.parquet"))
    assert table_reads(str(tmp_path)) == {}  # local and present
    assert table_reads("s3://bucket/table") == {"--data-table": "s3://bucket/table"}  # checked with the storage layer
    assert table_reads("dbfs:/tables/faces") == {}  # a file system only Spark knows: Spark opens it
    assert table_description("/d/t", "delta") == "/d/t (delta table)" and table_description(None, "x") == "DataFrame"


def test_the_column_keys_default_to_binary_files_and_one_source_is_allowed():
    cfg = resolve_config({"key_column": "pair", "data_table": "/t"}, {})
    assert TableColumns.of(cfg) == TableColumns("content", "label", "path", "pair")
    assert (cfg.data_table, cfg.data_format) == ("/t", "parquet")
    with pytest.raises(ConfigError, match="'data_dir' and 'data_table' are both set; give one of them"):
        resolve_config({"data_dir": "/d"}, {"data_table": "/t"})
    with pytest.raises(ConfigError, match="'image_column': expected a non-empty string"):
        resolve_config({"image_column": ""}, {})


def test_rows_become_named_labelled_split_images():
    """Rows as the executors see them (anything indexable by column name): bytes or a path, the split
    from the key column's hash, null cells skipped with their reason."""
    cfg = TrainConfig(image_size=48)
    face = (SAMPLE / "faces" / "3.jpg").read_bytes()
    rows = [
        {"content": face, "label": "faces", "path": "f/3.jpg", "pair": "3.jpg"},
        {"content": None, "label": 0, "path": "c/3.jpg", "pair": "3.jpg"},
        {"content": face, "label": True, "path": "f/4.jpg", "pair": None},
    ]
    load = row_loader(TableColumns(key="pair"), "content", "path", cfg)
    (name, label, split, image), (_, _, split_2, null_image), (_, _, _, no_key) = list(load(iter(rows)))
    assert (name, label, image.pixels.shape, image.reason) == ("f/3.jpg", 1, (48, 48, 3), None)
    assert split == split_2 == split_of("3.jpg", cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val)
    assert null_image.reason == NO_IMAGE
    assert no_key.reason == "null key column 'pair'"
    by_path = row_loader(TableColumns(), None, "path", cfg)
    [(name, label, split, image)] = by_path(iter([{"path": str(SAMPLE / "comics" / "3.jpg"), "label": "comic"}]))
    assert label == 0 and image.pixels.shape == (48, 48, 3) and name == str(SAMPLE / "comics" / "3.jpg")
    assert split == split_of(name, cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val)
