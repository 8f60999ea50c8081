"""spark-submit jobs/prepare.py: the entry script, its summary line and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_job

pytestmark = [pytest.mark.spark, pytest.mark.timeout(300)]


def test_prepare_job_writes_then_refuses_to_overwrite(tmp_path: Path):
    out = tmp_path / "prepared"
    first = run_job("prepare.py", "local[*]", "--output-dir", str(out), "--image-size", "40", "--num-shards", "2",
                    timeout=240)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"prepared {out}: train 50, val 16, test 4 records (jpeg, 40 px); 0 skipped" in first.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]["train"]] == [
        "train/part-00000-of-00002.tfrecord", "train/part-00001-of-00002.tfrecord"]
    again = run_job("prepare.py", "local[*]", "--output-dir", str(out), "--image-size", "40", timeout=240)
    assert again.returncode == 2
    assert "already exists; pass --overwrite to replace it" in again.stdout + again.stderr
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_output_inside_the_input_is_refused(sample_copy: Path):
    result = run_job("prepare.py", "local[*]", "--data-dir", str(sample_copy),
                     "--output-dir", str(sample_copy / "shards"), timeout=240)
    assert result.returncode == 2
    assert "is the data dir or inside it" in result.stdout + result.stderr
    assert not (sample_copy / "shards").exists()
