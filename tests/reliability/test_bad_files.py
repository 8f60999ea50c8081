"""The bad-file corpus through both input modes: each file used correctly or skipped with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_job, run_train_job
from tests.corpus import add_bad_files

pytestmark = pytest.mark.spark
SAMPLE_IMAGES = 70


def check_skips(skipped: list[dict[str, str]], expected: dict[str, str]) -> None:
    reasons = {Path(item["path"]).name: item["reason"] for item in skipped}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons[name])


@pytest.mark.timeout(600)
def test_spark_mode_training_skips_each_bad_file_with_its_reason(sample_copy: Path, tmp_path: Path):
    expected, used = add_bad_files(sample_copy)
    export = tmp_path / "export"
    result = run_train_job("local[*]", "--input-mode", "spark", "--epochs", "1", "--image-size", "48",
                           "--batch-size", "8", "--no-report", "--data-dir", str(sample_copy),
                           "--model-dir", str(tmp_path / "model"), "--export-dir", str(export), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((export / "data.json").read_text())
    check_skips(data["skipped"], expected)
    assert sum(c["total"] for c in data["counts"].values()) == SAMPLE_IMAGES + len(used)


@pytest.mark.timeout(600)
def test_prepare_skips_each_bad_file_with_its_reason(sample_copy: Path, tmp_path: Path):
    expected, used = add_bad_files(sample_copy)
    out = tmp_path / "prepared"
    result = run_job("prepare.py", "local[*]", "--data-dir", str(sample_copy), "--output-dir", str(out),
                     "--image-size", "48", "--num-shards", "2", timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    check_skips(manifest["skipped"], expected)
    assert sum(c["total"] for c in manifest["counts"].values()) == SAMPLE_IMAGES + len(used)
