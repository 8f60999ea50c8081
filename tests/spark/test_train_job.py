"""spark-submit jobs/train.py end to end, on local[*] and local-cluster, all on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, run_train_job
from tests.spark.checks import EPOCH_LINE, SMALL_RUN, check_export

pytestmark = pytest.mark.spark
SMALL = ["--input-mode", "spark", *SMALL_RUN]


@pytest.mark.timeout(600)
def test_local_star_trains_exports_and_skips_bad_files(sample_copy: Path, tmp_path: Path):
    (sample_copy / "faces" / "notes.jpg").write_text("not an image")
    truncated = (SAMPLE / "comics" / "5.jpg").read_bytes()
    (sample_copy / "comics" / "broken.jpg").write_bytes(truncated[: len(truncated) // 4])
    export = tmp_path / "export"
    result = run_train_job("local[*]", *SMALL, "--data-dir", str(sample_copy),
                           "--model-dir", str(tmp_path / "model"), "--export-dir", str(export), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [int(n) for n in EPOCH_LINE.findall(result.stdout)] == [1, 2]
    metrics = check_export(export, epochs=2, workers=1)
    data = json.loads((export / "data.json").read_text())
    skipped = {Path(item["path"]).name: item["reason"] for item in data["skipped"]}
    assert set(skipped) == {"notes.jpg", "broken.jpg"}
    assert "not an image" in skipped["notes.jpg"] and "corrupt" in skipped["broken.jpg"]
    assert metrics["skipped"] == 2
    total = sum(c["total"] for c in data["counts"].values())
    assert total == 70  # the 70 good sample images, the two bad ones left out


BAD_INPUTS = [
    (["--data-dir", "/nonexistent/faces"], 2, "does not exist"),
    (["--variant", "huge"], 2, "invalid choice: 'huge'"),
    (["--batch-size", "0"], 2, "'batch_size': 0 is out of range"),
    (["--epochs", "-1"], 2, "'epochs': -1 is out of range"),
    (["--cluster-size", "2"], 2, "has one executor"),
    (["--input-mode", "magic"], 2, "invalid choice: 'magic'"),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("args,code,message", BAD_INPUTS)
def test_bad_input_stops_before_spark_with_one_line(args, code, message, tmp_path):
    result = run_train_job("local[*]", *args, "--export-dir", str(tmp_path / "e"), timeout=240)
    output = result.stdout + result.stderr  # spark-submit merges the driver's stderr into stdout
    assert result.returncode == code, output[-2000:]
    assert message in output
    assert "Traceback" not in output
    assert "SparkContext: Running Spark version" not in output
    assert not (tmp_path / "e").exists()


@pytest.mark.timeout(300)
def test_missing_class_folder(tmp_path):
    (tmp_path / "data" / "faces").mkdir(parents=True)
    (tmp_path / "data" / "faces" / "a.jpg").write_bytes((SAMPLE / "faces" / "0.jpg").read_bytes())
    result = run_train_job("local[*]", "--data-dir", str(tmp_path / "data"), timeout=240)
    assert result.returncode == 2
    assert "class folder 'comics/' is missing" in result.stdout + result.stderr
