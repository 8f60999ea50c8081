"""The prepare job on an in-process local[2] SparkSession."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLE
from tfos_facecnn.config import ConfigError, TrainConfig
from tfos_facecnn.data.images import decode_image
from tfos_facecnn.data.prepared import MANIFEST, load_prepared
from tfos_facecnn.data.split import split_of
from tfos_facecnn.data.tfrecords import read_examples
from tfos_facecnn.preparation import PrepareConfig, prepare_on_spark

pytestmark = [pytest.mark.spark, pytest.mark.timeout(300)]
SIZE = 64


def config(data: Path, out: Path, **kwargs) -> PrepareConfig:
    return PrepareConfig.from_train_config(TrainConfig(data_dir=str(data), image_size=SIZE), str(out), **kwargs)


def shard_digests(out: Path) -> dict[str, str]:
    shards = sorted(out.rglob("*.tfrecord"))
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in shards}


@pytest.fixture
def prepared(spark, sample_copy: Path, tmp_path: Path):
    (sample_copy / "faces" / "readme.jpg").write_text("text named .jpg")
    data = (SAMPLE / "comics" / "7.jpg").read_bytes()
    (sample_copy / "comics" / "cut.jpg").write_bytes(data[: len(data) // 3])
    out = tmp_path / "prepared"
    manifest = prepare_on_spark(spark.sparkContext, config(sample_copy, out, num_shards=4))
    return sample_copy, out, manifest


def test_manifest_counts_shards_and_skips(prepared):
    data, out, manifest = prepared
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert sum(manifest["counts"][s]["total"] for s in ("train", "val", "test")) == 70
    assert [Path(item["path"]).name for item in manifest["skipped"]] == ["cut.jpg", "readme.jpg"]
    assert len(manifest["shards"]["train"]) == 4
    for split, shards in manifest["shards"].items():
        assert sum(s["records"] for s in shards) == manifest["counts"][split]["total"]
    assert manifest["image_size"] == SIZE and manifest["record_format"] == "jpeg"
    assert not list(out.parent.glob("prepared.staging-*")), "the staging folder must be gone"


def test_splits_match_the_spark_mode_split_file_for_file(prepared):
    _, out, manifest = prepared
    seen = []
    for split, shards in manifest["shards"].items():
        for shard in shards:
            for _, label, source in read_examples(str(out / shard["file"]), SIZE, "jpeg"):
                class_dir, key = source.split("/", 1)
                assert split_of(key, 17, 0.3, 0.2) == split, source
                assert label == (1 if class_dir == "faces" else 0)
                seen.append(source)
    assert len(seen) == len(set(seen)) == 70


def test_a_record_decodes_back_to_the_resized_image(prepared):
    data, out, manifest = prepared
    pixels, _, source = read_examples(str(out / manifest["shards"]["train"][0]["file"]), SIZE, "jpeg")[0]
    expected = decode_image((data / source).read_bytes(), SIZE)
    assert pixels.shape == expected.shape == (SIZE, SIZE, 3)
    # JPEG quality 95, 4:4:4: ~1.3 levels of 255 at 350 px, ~2.6 at this tiny size
    assert np.abs(pixels.astype(int) - expected.astype(int)).mean() < 4.0


def test_rerun_refuses_then_overwrites_with_identical_shards(spark, prepared):
    data, out, _ = prepared
    before = shard_digests(out)
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        prepare_on_spark(spark.sparkContext, config(data, out, num_shards=4))
    prepare_on_spark(spark.sparkContext, config(data, out, num_shards=4, overwrite=True))
    assert shard_digests(out) == before


def test_raw_format_round_trips_exactly(spark, tmp_path):
    out = tmp_path / "raw"
    manifest = prepare_on_spark(spark.sparkContext, config(SAMPLE, out, num_shards=2, record_format="raw"))
    pixels, _, source = read_examples(str(out / manifest["shards"]["test"][0]["file"]), SIZE, "raw")[0]
    np.testing.assert_array_equal(pixels, decode_image((SAMPLE / source).read_bytes(), SIZE))


def test_incomplete_or_mismatched_prepared_dirs_are_refused(prepared):
    _, out, manifest = prepared
    with pytest.raises(ConfigError, match="prepared at 64 px but --image-size is 350"):
        load_prepared(str(out), 350)
    (out / manifest["shards"]["val"][0]["file"]).unlink()
    with pytest.raises(ConfigError, match="shard\\(s\\) listed in manifest.json are missing"):
        load_prepared(str(out), SIZE)
    (out / MANIFEST).unlink()
    with pytest.raises(ConfigError, match="has no manifest.json: it is not a finished prepared data set"):
        load_prepared(str(out), SIZE)


def test_a_file_in_both_classes_is_left_out_of_every_shard(spark, sample_copy: Path, tmp_path: Path):
    duplicate = (sample_copy / "faces" / "3.jpg").read_bytes()
    (sample_copy / "comics" / "dup.jpg").write_bytes(duplicate)
    out = tmp_path / "prepared"
    manifest = prepare_on_spark(spark.sparkContext, config(sample_copy, out, num_shards=2))
    skipped = {Path(item["path"]).relative_to(sample_copy).as_posix(): item["reason"] for item in manifest["skipped"]}
    assert set(skipped) == {"faces/3.jpg", "comics/dup.jpg"}
    assert all("identical file in faces/ and comics/" in reason for reason in skipped.values())
    sources = [source for shard in out.rglob("*.tfrecord") for _, _, source in read_examples(str(shard), SIZE, "jpeg")]
    assert len(sources) == 69 and "faces/3.jpg" not in sources and "comics/dup.jpg" not in sources
    assert sum(manifest["counts"][s]["total"] for s in ("train", "val", "test")) == 69
    assert not list(out.parent.glob("prepared.staging-*")), "the staging folder must be gone"
