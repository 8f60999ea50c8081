import os
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLE
from tfos_facecnn.config import AugmentConfig
from tfos_facecnn.data.images import decode_image
from tfos_facecnn.metrics import classification_metrics, roc_auc
from tfos_facecnn.model import build_model
from tfos_facecnn.report_page import format_value
from tfos_facecnn.reports import (
    plot_augmentations,
    plot_confusion_matrix,
    plot_feature_maps,
    plot_model_comparison,
    plot_prediction_grid,
    plot_roc,
    plot_training_curves,
    roc_curve,
    write_report_page,
    wrong_predictions,
)

SIZE = 64


def assert_png(path, min_side: int = 200, min_bytes: int = 5_000) -> None:
    assert os.path.getsize(path) > min_bytes, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > min_side and image.height > min_side, image.size
        image.verify()


def sample_image(kind: str, index: int) -> np.ndarray:
    return decode_image((SAMPLE / kind / f"{index}.jpg").read_bytes(), SIZE)


def area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2.0 has only trapz, >= 2.4 only trapezoid
    return float(trapezoid(tpr, fpr))


def history(epochs: int = 5, offset: float = 0.0) -> list[dict]:
    return [{"epoch": e, "loss": 0.7 / e + offset, "accuracy": 0.5 + 0.08 * e, "val_loss": 0.8 / e + offset,
             "val_accuracy": 0.45 + 0.07 * e, "images_per_s": 120.0 + e} for e in range(1, epochs + 1)]


@pytest.fixture(scope="module")
def model():
    return build_model("base", SIZE, AugmentConfig())


def test_training_curves_png(tmp_path):
    assert_png(plot_training_curves(history(), str(tmp_path / "curves.png")))


def test_training_curves_rejects_an_empty_history(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves([], str(tmp_path / "curves.png"))


def test_roc_png_and_curve_matches_metrics_auc(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    # rounded scores make ties, the case where a naive curve and the rank AUC disagree
    scores = np.round(np.clip(labels * 0.3 + rng.normal(0.35, 0.25, 200), 0, 1), 1)
    fpr, tpr = roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert area(fpr, tpr) == pytest.approx(roc_auc(labels, scores), abs=1e-12)
    assert_png(plot_roc(labels, scores, str(tmp_path / "roc.png")))


def test_roc_perfect_and_inverted_scores():
    labels = [0, 0, 1, 1]
    fpr, tpr = roc_curve(labels, [0.1, 0.2, 0.8, 0.9])
    assert area(fpr, tpr) == pytest.approx(1.0)
    fpr, tpr = roc_curve(labels, [0.9, 0.8, 0.2, 0.1])
    assert list(tpr[:3]) == [0.0, 0.0, 0.0] and fpr[2] == 1.0 and area(fpr, tpr) == 0.0
    fpr, tpr = roc_curve(labels, [0.5, 0.5, 0.5, 0.5])  # one threshold: the diagonal
    assert list(fpr) == [0.0, 1.0] and list(tpr) == [0.0, 1.0]


def test_roc_one_class_is_a_note_not_a_crash(tmp_path):
    with pytest.raises(ValueError, match="both classes"):
        roc_curve([1, 1, 1], [0.2, 0.6, 0.9])
    assert_png(plot_roc([1, 1, 1], [0.2, 0.6, 0.9], str(tmp_path / "roc.png")), min_bytes=3_000)


def test_confusion_matrix_png(tmp_path):
    assert_png(plot_confusion_matrix([[5, 2], [1, 7]], str(tmp_path / "cm.png")))
    with pytest.raises(ValueError, match="2x2"):
        plot_confusion_matrix([[1, 2, 3]], str(tmp_path / "bad.png"))


def test_wrong_predictions_uses_the_metrics_threshold():
    # P(face) = 0.5 counts as a face, as in classification_metrics
    assert wrong_predictions([1, 0, 1, 0, 1], [0.9, 0.2, 0.3, 0.5, 0.5]) == [2, 3]
    assert wrong_predictions([], []) == []
    with pytest.raises(ValueError):
        wrong_predictions([1], [0.2, 0.3])


@pytest.mark.parametrize("count", [9, 4, 1])
def test_prediction_grid_png(tmp_path, count):
    images = [sample_image("faces", i) for i in range(5)] + [sample_image("comics", i) for i in range(5)]
    labels = [1] * 5 + [0] * 5
    probabilities = [0.9, 0.2, 0.7, 0.6, 0.1, 0.3, 0.8, 0.4, 0.05, 0.55]
    path = plot_prediction_grid(images[:count], labels[:count], probabilities[:count], str(tmp_path / "grid.png"),
                                titles=[f"img {i}" for i in range(count)])
    assert_png(path, min_side=150)


def test_prediction_grid_takes_at_most_nine(tmp_path):
    images = np.stack([sample_image("faces", i) for i in range(12)])
    path = plot_prediction_grid(images, [1] * 12, [0.7] * 12, str(tmp_path / "grid.png"))
    assert_png(path)
    with pytest.raises(ValueError):
        plot_prediction_grid(images, [1] * 11, [0.7] * 12, str(tmp_path / "bad.png"))


def test_feature_maps_png(tmp_path, model):
    path = plot_feature_maps(model, sample_image("faces", 0), str(tmp_path / "maps.png"), max_channels=6)
    assert_png(path)
    with pytest.raises(ValueError, match="does not match"):
        plot_feature_maps(model, np.zeros((32, 32, 3)), str(tmp_path / "bad.png"))


def test_feature_maps_of_the_inference_graph(tmp_path):
    inference = build_model("dropout", SIZE, None, compile_model=False)
    assert_png(plot_feature_maps(inference, sample_image("comics", 1), str(tmp_path / "maps.png")))


def test_augmentations_png(tmp_path):
    assert_png(plot_augmentations(sample_image("faces", 2), AugmentConfig(), str(tmp_path / "aug.png"), seed=1))


def test_augmentations_all_off_shows_the_original(tmp_path):
    off = AugmentConfig(flip="none", rotation=0, contrast=0, invert_probability=0, zoom_in=0, zoom_out=0,
                        translation=0)
    assert_png(plot_augmentations(sample_image("faces", 2), off, str(tmp_path / "aug.png")), min_side=150,
               min_bytes=3_000)


def test_model_comparison_png(tmp_path):
    histories = {variant: history(6, offset) for offset, variant in enumerate(("base", "l1", "l2", "dropout"))}
    assert_png(plot_model_comparison(histories, str(tmp_path / "compare.png")))
    with pytest.raises(ValueError):
        plot_model_comparison({}, str(tmp_path / "bad.png"))


def test_plots_create_missing_folders_and_leave_no_temp_files(tmp_path):
    path = plot_confusion_matrix([[1, 0], [0, 1]], str(tmp_path / "a" / "b" / "cm.png"))
    assert_png(path, min_bytes=3_000)
    assert os.listdir(tmp_path / "a" / "b") == ["cm.png"]


def test_report_page_has_the_numbers_and_links_every_figure(tmp_path, monkeypatch):
    out = tmp_path / "export"
    labels = [1, 1, 0, 0, 1, 0]
    probabilities = [0.9, 0.4, 0.2, 0.6, 0.8, 0.1]
    metrics = classification_metrics(labels, probabilities)
    hist = history(4)
    figures = {
        "Training curves": plot_training_curves(hist, str(out / "curves.png")),  # absolute
        "ROC curve": plot_roc(labels, probabilities, str(out / "roc.png")),
        "Confusion matrix": plot_confusion_matrix(metrics["confusion_matrix"], str(out / "cm.png")),
    }
    (out / "figs").mkdir()
    plot_confusion_matrix([[1, 0], [0, 1]], str(out / "figs" / "small cm.png"))
    figures["Nested, relative to out_dir"] = "figs/small cm.png"
    monkeypatch.chdir(tmp_path)
    figures["Relative to the cwd"] = plot_roc(labels, probabilities, "export/roc2.png")

    page = write_report_page(str(out), "Face vs comic: base", metrics, figures, history=hist,
                             extra_sections={"Notes": "Trained on the embedded sample."})
    assert page == str(out / "report.md")
    text = Path(page).read_text(encoding="utf-8")
    assert text.startswith("# Face vs comic: base\n")
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "loss", "count"):
        assert format_value(metrics[key]) in text, key
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    assert f"| comics | {tn} | {fp} |" in text and f"| faces | {fn} | {tp} |" in text
    last = hist[-1]
    for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert format_value(last[key]) in text, key
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    assert [caption for caption, _ in links] == list(figures)
    for _, target in links:
        assert not os.path.isabs(target)
        assert (out / unquote(target)).is_file(), target
    assert "## Notes\n\nTrained on the embedded sample." in text
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name] == []


def test_report_page_without_history_or_figures_and_one_class_metrics(tmp_path):
    metrics = classification_metrics([1, 1], [0.7, 0.8])
    page = write_report_page(str(tmp_path / "new"), "one class", metrics, {})
    text = Path(page).read_text(encoding="utf-8")
    assert "| ROC-AUC | n/a |" in text and "Final epoch" not in text and "![" not in text


def test_report_page_rejects_a_missing_figure(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        write_report_page(str(tmp_path), "t", classification_metrics([0, 1], [0.2, 0.8]), {"x": "nope.png"})
    assert not (tmp_path / "report.md").exists()
