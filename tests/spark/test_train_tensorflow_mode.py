"""spark-submit jobs/train.py --input-mode tensorflow, from prepared shards and from raw images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, run_train_job
from tests.spark.checks import EPOCH_LINE, SMALL_RUN, check_export
from tfos_facecnn.config import TrainConfig
from tfos_facecnn.data.prepared import MANIFEST
from tfos_facecnn.preparation import PrepareConfig, prepare_on_spark

pytestmark = pytest.mark.spark
TF_MODE = ["--input-mode", "tensorflow", *SMALL_RUN]


@pytest.fixture(scope="module")
def prepared_48(spark, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "sample-48"
    cfg = PrepareConfig.from_train_config(TrainConfig(data_dir=str(SAMPLE), image_size=48), str(out), num_shards=2)
    prepare_on_spark(spark.sparkContext, cfg)
    return out


@pytest.mark.timeout(600)
def test_local_star_trains_from_prepared_shards(prepared_48: Path, tmp_path: Path):
    export, config = tmp_path / "export", tmp_path / "decode-every-epoch.yaml"
    config.write_text("train_cache_mb: 0\n")  # the path for shares too large to keep decoded in memory
    result = run_train_job("local[*]", *TF_MODE, "--config", str(config), "--data-dir", str(prepared_48),
                           "--model-dir", str(tmp_path / "model"), "--export-dir", str(export), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "in TENSORFLOW mode" in result.stdout
    assert [int(n) for n in EPOCH_LINE.findall(result.stdout)] == [1, 2]
    metrics = check_export(export, epochs=2, workers=1)
    assert metrics["cluster"]["input_mode"] == "tensorflow"
    predictions = json.loads((export / "test_predictions.json").read_text())
    assert {p["path"].split("/")[0] for p in predictions} == {"faces", "comics"}
    [node] = json.loads((tmp_path / "model" / "nodes.json").read_text()).values()
    assert node["train_images_in_memory"] == 0


@pytest.mark.timeout(600)
def test_local_cluster_prepares_raw_images_and_nodes_read_disjoint_shards(tmp_path: Path):
    export, model = tmp_path / "export", tmp_path / "model"
    result = run_train_job("local-cluster[2,1,1024]", *TF_MODE, "--model-dir", str(model),
                           "--export-dir", str(export), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "preparing" in result.stdout and "for --input-mode tensorflow" in result.stdout
    check_export(export, epochs=2, workers=2)
    manifest = json.loads((model / "prepared-48px" / MANIFEST).read_text())
    nodes = json.loads((model / "nodes.json").read_text())
    read = [set(node["shards_read"]) for node in nodes.values()]
    assert len(read) == 2 and all(read) and not read[0] & read[1]
    assert read[0] | read[1] == {s["file"] for s in manifest["shards"]["train"]}
    assert [node["tf_threads"] for node in nodes.values()] == [1, 1]  # local-cluster[2,1,...]: 1 core each
    # Every record of a node's shards fits in each of its epochs: steps cover the larger share.
    shares = [sum(s["records"] for s in manifest["shards"]["train"] if s["file"] in mine) for mine in read]
    assert {node["steps_per_epoch"] for node in nodes.values()} == {-(-max(shares) // 4)}  # batch 8 over 2
    # The default train_cache_mb holds these shares: each node decodes its images once.
    assert [node["train_images_in_memory"] for node in nodes.values()] == shares


@pytest.mark.timeout(300)
def test_a_prepared_dir_without_manifest_is_refused(prepared_48: Path, tmp_path: Path):
    partial = tmp_path / "partial"
    shutil.copytree(prepared_48, partial)
    (partial / MANIFEST).unlink()
    result = run_train_job("local[*]", *TF_MODE, "--data-dir", str(partial), timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "has no manifest.json: it is not a finished prepared data set" in output


@pytest.mark.timeout(300)
def test_image_size_must_match_the_prepared_one(prepared_48: Path):
    result = run_train_job("local[*]", "--input-mode", "tensorflow", "--image-size", "64",
                           "--data-dir", str(prepared_48), timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "prepared at 48 px but --image-size is 64" in output
