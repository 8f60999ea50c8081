"""Binary classification metrics from labels and P(face), in plain numpy (no sklearn needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLD = 0.5  # P(face) at or above this is called a face
CONFIDENCE_Z = 1.959964  # two-sided 95% normal quantile of the Wilson score intervals
# Below this many images a proportion's 95% interval is wider than about +-0.17 even at 90% accuracy:
# the report then says in words that the figure is indicative only.
INDICATIVE_BELOW = 30


def wilson_interval(successes: int, count: int, z: float = CONFIDENCE_Z) -> dict[str, Any] | None:
    """The Wilson score interval of a proportion (good at small counts and at 0 or 1, unlike the normal
    approximation); None without any trial."""
    if count <= 0:
        return None
    p = successes / count
    denominator = 1.0 + z * z / count
    centre = (p + z * z / (2 * count)) / denominator
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends (no rounding residue)
    high = 1.0 if successes == count else min(1.0, centre + half)
    return {"low": low, "high": high, "successes": successes, "count": count}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank statistic (ties get average ranks); None with one class."""
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(labels: Sequence[int], probabilities: Sequence[float]) -> dict[str, Any]:
    """accuracy, precision, recall, f1 (face = positive), ROC-AUC, mean log loss, confusion matrix."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    predicted = (p >= THRESHOLD).astype(np.int64)
    tp = int(((predicted == 1) & (y == 1)).sum())
    tn = int(((predicted == 0) & (y == 0)).sum())
    fp = int(((predicted == 1) & (y == 0)).sum())
    fn = int(((predicted == 0) & (y == 1)).sum())
    n = len(y)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    loss = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))) if n else None
    return {
        "count": n,
        "accuracy": (tp + tn) / n if n else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y, p),
        "loss": loss,
        "threshold": THRESHOLD,
        # rows: true label (comics, faces); columns: predicted label (comics, faces)
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "confusion_matrix_labels": ["comics", "faces"],
        # 95% Wilson intervals, each with the images it rests on (precision: those called faces;
        # recall: the true faces); indicative_only: too few images for the figures to mean much
        "intervals_95": {"accuracy": wilson_interval(tp + tn, n), "precision": wilson_interval(tp, tp + fp),
                         "recall": wilson_interval(tp, tp + fn)},
        "indicative_only": n < INDICATIVE_BELOW,
    }
