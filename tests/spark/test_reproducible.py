"""One node on local[*]: two runs of one seed train on the same batches and give the same history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_train_job

pytestmark = pytest.mark.spark
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def _history(tmp_path: Path, name: str, mode: str) -> list[dict]:
    export = tmp_path / name / "export"
    result = run_train_job("local[*]", "--input-mode", mode, "--epochs", "3", "--image-size", "48", "--batch-size",
                           "8", "--seed", "5", "--no-report", "--model-dir", str(tmp_path / name / "model"),
                           "--export-dir", str(export), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((export / "history.json").read_text())


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["spark", "tensorflow"])
def test_two_runs_of_one_seed_give_the_same_history(tmp_path: Path, mode: str):
    first, second = _history(tmp_path, "a", mode), _history(tmp_path, "b", mode)
    assert len(first) == len(second) == 3
    for one, other in zip(first, second, strict=True):
        for key in KEYS:
            assert one[key] == pytest.approx(other[key], abs=1e-5), (key, first, second)
