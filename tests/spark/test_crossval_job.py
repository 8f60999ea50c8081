"""spark-submit jobs/crossval.py on local[*]: K trainings, each tested on one fold of pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_job

pytestmark = pytest.mark.spark


@pytest.mark.timeout(600)
def test_two_folds_test_every_sample_image_once_and_pool_the_accuracy(tmp_path: Path):
    export = tmp_path / "export"
    result = run_job("crossval.py", "local[*]", "--folds", "2", "--epochs", "1", "--image-size", "48",
                     "--batch-size", "8", "--no-report", "--model-dir", str(tmp_path / "model"),
                     "--export-dir", str(export), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((export / "crossval.json").read_text())
    folds = summary["folds"]
    assert [row["fold"] for row in folds] == [1, 2]
    tested = [{p["path"] for p in json.loads((export / f"fold-{k}" / "test_predictions.json").read_text())}
              for k in (1, 2)]
    assert not tested[0] & tested[1] and len(tested[0] | tested[1]) == 70  # every image tested once
    for paths in tested:  # a pair's face and comic are tested together
        names = {cls: {Path(p).name for p in paths if Path(p).parent.name == cls} for cls in ("faces", "comics")}
        assert names["faces"] == names["comics"] and names["faces"]
    assert summary["images_tested"] == 70
    correct = sum(row["correct"] for row in folds)
    assert summary["pooled_accuracy"] == pytest.approx(correct / 70)
    assert "done: 2-fold accuracy" in result.stdout and "pooled" in result.stdout


def test_a_prepared_dir_is_refused_before_spark(tmp_path: Path):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "manifest.json").write_text("{}")
    result = run_job("crossval.py", "local[*]", "--folds", "2", "--data-dir", str(prepared), timeout=120)
    assert result.returncode == 2
    assert "cross-validation needs the face2comics folder" in result.stdout + result.stderr
