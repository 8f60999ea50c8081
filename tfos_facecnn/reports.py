"""Figures of a training run: curves, ROC, confusion matrix, predictions, feature maps, augmentations.

Every figure is drawn on a matplotlib `Figure` with an Agg canvas, never through pyplot: nothing needs
a display and no global figure state leaks into the caller (the driver, a notebook, a test). Each
function writes one PNG atomically (storage URIs work too) and returns its path. matplotlib is
imported lazily so that importing this module costs nothing on Spark executors.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import storage
from .config import AugmentConfig
from .metrics import THRESHOLD, roc_auc
from .report_page import write_report_page

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CLASS_NAMES", "roc_curve", "wrong_predictions", "plot_training_curves", "plot_roc", "plot_confusion_matrix",
    "plot_prediction_grid", "plot_feature_maps", "plot_augmentations", "plot_model_comparison",
    "write_report_page",
]

CLASS_NAMES = ("comics", "faces")  # label 0, label 1
WRONG_COLOUR, RIGHT_COLOUR = "red", "black"
GRID_MAX = 9  # a 3x3 grid
AUGMENT_TRIES = 8  # flip and invert act with p=0.5: redraw so the panel shows what the layer does


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    parent = os.path.dirname(storage.local_path(path)) if storage.is_local(path) else path.rsplit("/", 1)[0]
    if parent:
        storage.makedirs(parent)
    storage.write_bytes_atomic(path, buffer.getvalue())
    return path


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, wrap=True)


def _pixels(image: Any) -> np.ndarray:
    """Raw 0..255 pixels (uint8 or float, augmented values may overshoot) as displayable uint8."""
    return np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    rows = [(int(row.get("epoch", i + 1)), row.get(key)) for i, row in enumerate(history)]
    kept = [(epoch, float(value)) for epoch, value in rows if value is not None]
    return [e for e, _ in kept], [v for _, v in kept]


def _epoch_axis(ax: Any, title: str, metric: str, legend_size: float | None = None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size)


def roc_curve(labels: Sequence[int], probabilities: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) from (0, 0) to (1, 1), one point per distinct P(face) threshold (face = positive).

    Tied scores form one step, so the trapezoid area equals the rank-statistic AUC of metrics.roc_auc.
    Raises ValueError when labels and probabilities differ in length or one class is missing.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    n_pos, n_neg = int((y == 1).sum()), int((y != 1).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both classes (faces and comics) in the labels")
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order]
    # last index of each run of equal scores: thresholds step through every distinct score at once
    ends = np.r_[np.nonzero(np.diff(p))[0], len(p) - 1]
    tps = np.cumsum(y == 1)[ends]
    fps = (ends + 1) - tps
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def _area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # trapz is gone in numpy 2.4, trapezoid new in 2.0
    return float(trapezoid(tpr, fpr))


def wrong_predictions(labels: Sequence[int], probabilities: Sequence[float], threshold: float = THRESHOLD) -> list[int]:
    """Indices whose predicted class (P(face) >= threshold is a face, as in metrics) is not the true one."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    return [int(i) for i in np.nonzero((p >= threshold).astype(np.int64) != y)[0]]


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: str) -> str:
    """Accuracy and loss per epoch, train vs validation, side by side (history.json rows)."""
    if not history:
        raise ValueError("history is empty: no epoch to plot")
    fig = _figure(11, 4.2)
    for ax, metric in zip(fig.subplots(1, 2), ("accuracy", "loss"), strict=True):
        for key, label, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "-s")):
            epochs, values = _series(history, key)
            if values:
                ax.plot(epochs, values, style, markersize=3, label=label)
        _epoch_axis(ax, f"{metric} per epoch", metric)
    return _save(fig, path)


def plot_roc(labels: Sequence[int], probabilities: Sequence[float], path: str) -> str:
    """ROC curve with its AUC in the legend and the chance diagonal; a note instead when a class is absent."""
    fig = _figure(5.5, 5.5)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance (AUC = 0.5)")
    y = np.asarray(labels, dtype=np.int64)
    if len(np.unique(y)) < 2:
        # a tiny test split can hold one class only: the report should still render, saying why
        present = ", ".join(CLASS_NAMES[int(c)] for c in np.unique(y) if c in (0, 1)) or "none"
        _note(ax, f"ROC undefined: test labels hold one class only\n(present: {present})")
    else:
        fpr, tpr = roc_curve(y, probabilities)
        auc = roc_auc(y, np.asarray(probabilities, dtype=np.float64))
        ax.plot(fpr, tpr, "-", color="tab:blue", linewidth=2, label=f"model (AUC = {auc:.3f})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate (comics called faces)")
    ax.set_ylabel("true positive rate (faces found)")
    ax.set_title("ROC curve (face = positive)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_confusion_matrix(confusion: Sequence[Sequence[int]], path: str) -> str:
    """2x2 heat map of [[tn, fp], [fn, tp]] (rows true comics/faces, columns predicted) with counts."""
    matrix = np.asarray(confusion, dtype=np.int64)
    if matrix.shape != (2, 2) or (matrix < 0).any():
        raise ValueError(f"confusion matrix must be 2x2 non-negative counts, got {confusion!r}")
    total = int(matrix.sum())
    fig = _figure(5, 4.5)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for (row, col), count in np.ndenumerate(matrix):
        share = f"\n{count / total:.0%}" if total else ""
        dark = count > matrix.max() / 2
        ax.text(col, row, f"{count}{share}", ha="center", va="center", fontsize=14,
                color="white" if dark else "black")
    ax.set_xticks([0, 1], [f"predicted {name}" for name in CLASS_NAMES])
    ax.set_yticks([0, 1], [f"true {name}" for name in CLASS_NAMES])
    ax.set_title(f"confusion matrix ({total} images)")
    return _save(fig, path)


def plot_prediction_grid(images: Sequence[Any], labels: Sequence[int], probabilities: Sequence[float], path: str,
                         titles: Sequence[str] | None = None) -> str:
    """Up to 3x3 test images titled with true/predicted class and P(face); wrong ones in red with a red frame."""
    if not (len(images) == len(labels) == len(probabilities)):
        raise ValueError(f"{len(images)} images, {len(labels)} labels, {len(probabilities)} probabilities")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    count = min(len(images), GRID_MAX)
    cols = min(3, max(count, 1))
    rows = max(math.ceil(count / cols), 1)
    wrong = set(wrong_predictions(labels, probabilities))
    fig = _figure(3.2 * cols, 3.5 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    if count == 0:
        _note(axes[0], "no images")
        axes[0].set_axis_off()
    for i, ax in enumerate(axes):
        if i >= count:
            ax.set_axis_off()
            continue
        ax.imshow(_pixels(images[i]))
        ax.set_xticks([])
        ax.set_yticks([])
        p_face = float(probabilities[i])
        colour = WRONG_COLOUR if i in wrong else RIGHT_COLOUR
        head = f"{titles[i]}\n" if titles is not None else ""
        ax.set_title(f"{head}true {CLASS_NAMES[int(labels[i])]}, predicted {CLASS_NAMES[int(p_face >= THRESHOLD)]}"
                     f"\nP(face) = {p_face:.3f}", color=colour, fontsize=9)
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(4 if i in wrong else 0.5)
    return _save(fig, path)


def plot_feature_maps(model: Any, image: Any, path: str, max_channels: int = 8) -> str:
    """One row per conv/pool layer: the first `max_channels` channels of that layer's output for one image."""
    from .kerasenv import legacy_keras

    if max_channels < 1:
        raise ValueError(f"max_channels must be at least 1, got {max_channels}")
    names = [layer.name for layer in model.layers if layer.name.startswith(("conv", "pool"))]
    if not names:
        raise ValueError(f"model {model.name!r} has no layer named conv*/pool*")
    if not getattr(model, "inputs", None):
        raise ValueError(f"model {model.name!r} has no defined input; build it with an Input layer first")
    pixels = np.asarray(image, dtype=np.float32)
    expected = tuple(model.inputs[0].shape[1:])
    if pixels.shape != expected:
        raise ValueError(f"image shape {pixels.shape} does not match the model input {expected}")
    probe = legacy_keras().Model(model.inputs, [model.get_layer(name).output for name in names])
    # training=False: augmentation layers ahead of conv1 pass the image through unchanged
    outputs = probe(pixels[None], training=False)
    outputs = [outputs] if len(names) == 1 else outputs
    cols = max_channels
    fig = _figure(1.5 * cols + 1, 1.5 * len(names))
    axes = np.asarray(fig.subplots(len(names), cols, squeeze=False))
    for row, (name, output) in enumerate(zip(names, outputs, strict=True)):
        maps = np.asarray(output)[0]
        for col in range(cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= maps.shape[-1]:
                ax.set_axis_off()
                continue
            ax.imshow(maps[..., col], cmap="viridis")
            if row == 0:
                ax.set_title(f"channel {col}", fontsize=8)
        axes[row, 0].set_ylabel("{}\n{}".format(name, "x".join(str(d) for d in maps.shape)), fontsize=9)
    fig.suptitle("feature maps after each conv and pool layer")
    return _save(fig, path)


def plot_augmentations(image: Any, augment_cfg: AugmentConfig, path: str, seed: int = 0) -> str:
    """The original and one draw of each switched-on augmentation layer alone (training=True)."""
    from .augment import effect_layers

    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected one (height, width, 3) image, got shape {pixels.shape}")
    panels = [("original", pixels)]
    for layer in effect_layers(augment_cfg, seed):
        for _ in range(AUGMENT_TRIES):
            out = np.asarray(layer(pixels[None], training=True))[0]
            if not np.allclose(out, pixels):
                break
        panels.append((layer.name, out))
    cols = min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    fig = _figure(3 * cols, 3.2 * rows)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (name, shown) in zip(axes, panels, strict=False):
        ax.imshow(_pixels(shown))
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    return _save(fig, path)


def plot_model_comparison(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str) -> str:
    """All variants side by side: validation (solid) and train (dashed) accuracy and loss, one colour each."""
    if not histories:
        raise ValueError("no histories to compare")
    fig = _figure(12, 4.5)
    panels = fig.subplots(1, 2)
    colours = [f"C{i}" for i in range(10)]
    for index, (variant, history) in enumerate(histories.items()):
        colour = colours[index % len(colours)]
        for ax, metric in zip(panels, ("accuracy", "loss"), strict=True):
            epochs, values = _series(history, f"val_{metric}")
            if values:
                ax.plot(epochs, values, "-", color=colour, label=f"{variant} validation")
            epochs, values = _series(history, metric)
            if values:
                ax.plot(epochs, values, "--", color=colour, alpha=0.7, label=f"{variant} train")
    for ax, metric in zip(panels, ("accuracy", "loss"), strict=True):
        _epoch_axis(ax, f"{metric}: validation (solid) vs train (dashed)", metric, legend_size=8)
    return _save(fig, path)
