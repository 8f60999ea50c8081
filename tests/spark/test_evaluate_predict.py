"""Batch inference, single-image prediction, evaluation reports and the variant comparison."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO, SAMPLE, run_job, run_train_job, spark_env
from tests.spark.checks import SMALL_RUN
from tfos_facecnn.metrics import classification_metrics

pytestmark = pytest.mark.spark
FIGURES = ["curves.png", "roc.png", "confusion_matrix.png", "prediction_grid.png", "feature_maps.png",
           "augmentations.png"]


def assert_report(folder: Path) -> None:
    assert (folder / "_SUCCESS").exists()
    page = (folder / "report.md").read_text()
    for name in FIGURES:
        image = Image.open(folder / name)
        assert image.format == "PNG" and min(image.size) >= 200, name
        assert (folder / name).stat().st_size > 5_000, name
        assert f"]({name})" in page, name


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    result = run_train_job("local[*]", "--input-mode", "spark", *SMALL_RUN, "--model-dir", str(root / "model"),
                           "--export-dir", str(root / "export"), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "report: " in result.stdout
    return root / "export"


@pytest.mark.timeout(600)
def test_training_writes_its_report_and_tensorboard_logs(trained: Path):
    assert_report(trained / "report")
    assert list((trained.parent / "model" / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.timeout(600)
def test_batch_predict_on_local_cluster_keeps_going_past_bad_inputs(trained: Path, tmp_path: Path):
    shutil.copy(SAMPLE / "faces" / "2.jpg", tmp_path / "face.jpg")
    Image.open(SAMPLE / "comics" / "2.jpg").save(tmp_path / "comic.png")  # a PNG too
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "folder.jpg").mkdir()
    # relative --input/--output on purpose: local-cluster executors run in other working directories
    (tmp_path / "list.txt").write_text("face.jpg\ncomic.png\nmissing.jpg\nfolder.jpg\ntext.jpg\n")
    result = run_job("predict.py", "local-cluster[2,1,1024]", "--model", str(trained),
                     "--input", "list.txt", "--input", str(SAMPLE / "faces"), "--output-dir", "preds",
                     timeout=540, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [row for part in sorted((tmp_path / "preds").glob("part-*.csv")) for row in csv.DictReader(part.open())]
    assert len(rows) == 5 + 35
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert errors == {"missing.jpg": "no such file", "folder.jpg": "is a directory, not an image",
                      "text.jpg": "not an image Pillow can identify"}
    good = [r for r in rows if not r["error"]]
    assert all(0.0 <= float(r["p_face"]) <= 1.0 for r in good)
    assert list(rows[0]) == ["path", "p_face", "predicted", "error"]
    assert all(r["predicted"] == ("faces" if float(r["p_face"]) >= 0.5 else "comics") for r in good)
    assert "predicted 37 of 40 images" in result.stdout
    # --output: the option's name before 0.2, still accepted
    again = run_job("predict.py", "local[*]", "--model", str(trained), "--input", "list.txt", "--output", "preds",
                    timeout=240, cwd=tmp_path)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stdout + again.stderr


@pytest.mark.timeout(300)
def test_predict_cli_prints_a_line_per_image(trained: Path, tmp_path: Path):
    (tmp_path / "bad.jpg").write_bytes(b"")
    images = [str(SAMPLE / "faces" / "0.jpg"), str(SAMPLE / "comics" / "1.jpg"), str(tmp_path / "bad.jpg")]
    out = subprocess.run([sys.executable, "-m", "tfos_facecnn", "predict", "--model", str(trained), *images],
                         env=spark_env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    header, *lines = out.stdout.strip("\n").splitlines()
    assert header == "path\tp_face\tpredicted\terror"  # jobs/predict.py's columns
    assert len(lines) == 3 and out.returncode == 1  # one image failed
    for line, image in zip(lines[:2], images[:2], strict=True):
        path, probability, predicted, error = line.split("\t")
        assert path == image and predicted in ("faces", "comics") and 0 <= float(probability) <= 1 and error == ""
    assert lines[2] == f"{images[2]}\t\t\tempty file"
    missing = subprocess.run([sys.executable, "-m", "tfos_facecnn", "predict", "--model", str(tmp_path), images[0]],
                             env=spark_env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert missing.returncode == 2 and "holds no model.keras" in missing.stderr


@pytest.mark.timeout(600)
def test_evaluate_writes_every_file_and_metrics_match_the_predictions(trained: Path, tmp_path: Path):
    out = tmp_path / "eval"
    result = run_job("evaluate.py", "local[*]", "--model", str(trained), "--split", "all",
                     "--output-dir", str(out), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_report(out)
    metrics = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == metrics["count"] == 70
    direct = classification_metrics([1 if r["label"] == "faces" else 0 for r in rows],
                                    [float(r["p_face"]) for r in rows])
    for key in ("accuracy", "precision", "recall", "f1", "confusion_matrix"):
        assert direct[key] == metrics[key], key
    assert direct["roc_auc"] == pytest.approx(metrics["roc_auc"], abs=1e-4)
    # --export-dir: the option's name before 0.2, still accepted
    again = run_job("evaluate.py", "local[*]", "--export-dir", str(trained), "--output-dir", str(out), timeout=240)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stdout + again.stderr
    no_model = run_job("evaluate.py", "local[*]", "--model", str(tmp_path), timeout=240)
    assert no_model.returncode == 2 and "holds no model.keras" in no_model.stdout + no_model.stderr


@pytest.mark.timeout(900)
def test_variant_all_compares_four_models(tmp_path: Path):
    result = run_train_job("local[*]", "--variant", "all", "--epochs", "1", "--image-size", "40", "--batch-size", "8",
                           "--no-report", "--model-dir", str(tmp_path / "m"), "--export-dir", str(tmp_path / "e"),
                           timeout=840)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((tmp_path / "e" / "comparison" / "comparison.json").read_text())
    assert [row["variant"] for row in rows] == ["base", "l1", "l2", "dropout"]
    assert all(row["test_accuracy"] is not None and row["val_accuracy"] is not None for row in rows)
    assert Image.open(tmp_path / "e" / "comparison" / "curves.png").format == "PNG"
    for variant in ("base", "l1", "l2", "dropout"):
        assert (tmp_path / "e" / variant / "model.keras").exists()
