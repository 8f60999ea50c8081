"""report.md: the numbers of a run (metrics, confusion matrix, final epoch) and links to its figures.

Kept apart from reports.py so that writing the page needs neither matplotlib nor TensorFlow.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from . import storage
from .metrics import INDICATIVE_BELOW

REPORT_NAME = "report.md"
CLASS_NAMES = ("comics", "faces")
METRIC_ROWS = (  # (key in classification_metrics, label in the table)
    ("accuracy", "Accuracy"),
    ("precision", "Precision (face)"),
    ("recall", "Recall (face)"),
    ("f1", "F1 (face)"),
    ("roc_auc", "ROC-AUC"),
    ("loss", "Log loss"),
    ("count", "Images"),
)


def format_value(value: Any) -> str:
    """How a number appears in the page: 4 decimals for floats, n/a for a missing value (e.g. one-class AUC)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _escape(text: str) -> str:
    # a caption or cell holding | [ ] would break the table or the image link
    return text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def _link_target(figure: str, out_dir: str) -> str:
    """The figure's path relative to out_dir (what the page links); FileNotFoundError if it is nowhere."""
    if storage.is_local(figure) and storage.is_local(out_dir):
        base = storage.local_path(out_dir)
        local = storage.local_path(figure)
        candidates = [local] if os.path.isabs(local) else [os.path.join(base, local), local]
        for candidate in candidates:
            if os.path.exists(candidate):
                return os.path.relpath(os.path.abspath(candidate), os.path.abspath(base)).replace(os.sep, "/")
    else:
        prefix = out_dir.rstrip("/") + "/"
        relative = figure[len(prefix):] if figure.startswith(prefix) else figure
        if "://" not in relative and storage.exists(storage.join(out_dir, relative)):
            return posixpath.normpath(relative)
    raise FileNotFoundError(f"figure {figure!r} not found (relative paths are taken from {out_dir!r} or the cwd)")


def _interval(metrics: Mapping[str, Any], key: str) -> str:
    interval = (metrics.get("intervals_95") or {}).get(key)
    if not interval:
        return ""
    return f"{interval['low']:.3f} - {interval['high']:.3f} ({interval['successes']} of {interval['count']})"


def _metrics_section(metrics: Mapping[str, Any]) -> list[str]:
    lines = ["## Test metrics", ""]
    count = metrics.get("count")
    if metrics.get("indicative_only"):
        lines += [f"**Indicative only: {count} test image(s).** With fewer than {INDICATIVE_BELOW} images a "
                  "proportion's 95% interval is wide (see the interval column); only more held-out images "
                  "give a figure to rely on.", ""]
    lines += ["| Metric | Value | 95% interval (Wilson) |", "| --- | --- | --- |"]
    lines += [f"| {label} | {format_value(metrics.get(key))} | {_interval(metrics, key)} |"
              for key, label in METRIC_ROWS]
    if metrics.get("threshold") is not None:
        lines.append(f"| Decision threshold on P(face) | {format_value(metrics['threshold'])} | |")
    confusion = metrics.get("confusion_matrix")
    if confusion:
        lines += ["", "### Confusion matrix", "", "| true \\ predicted | comics | faces |", "| --- | --- | --- |"]
        lines += [f"| {name} | {row[0]} | {row[1]} |" for name, row in zip(CLASS_NAMES, confusion, strict=True)]
    return lines


def _history_section(history: Sequence[Mapping[str, Any]], chosen: Mapping[str, Any] | None) -> list[str]:
    last = history[-1]
    lines = []
    if chosen:
        stopped = ", early stopping ended the run there" if chosen.get("stopped_early") else ""
        lines += ["## Exported weights", "",
                  f"The model holds the weights of epoch {chosen['epoch']} of {len(history)} "
                  f"({chosen.get('rule', 'lowest val_loss')}{stopped}): validation loss "
                  f"{format_value(chosen.get('val_loss'))}, accuracy {format_value(chosen.get('val_accuracy'))}.", ""]
    lines += [f"## Final epoch ({last.get('epoch', len(history))} of {len(history)})", "",
             "| Split | Accuracy | Loss |", "| --- | --- | --- |",
             f"| train | {format_value(last.get('accuracy'))} | {format_value(last.get('loss'))} |",
             f"| validation | {format_value(last.get('val_accuracy'))} | {format_value(last.get('val_loss'))} |"]
    if last.get("images_per_s") is not None:
        lines += ["", f"Throughput in the final epoch: {format_value(float(last['images_per_s']))} images/s."]
    return lines


def write_report_page(out_dir: str, title: str, metrics: Mapping[str, Any], figures: Mapping[str, str],
                      history: Sequence[Mapping[str, Any]] | None = None,
                      extra_sections: Mapping[str, str] | None = None) -> str:
    """Writes out_dir/report.md atomically and returns its path.

    metrics: classification_metrics() output; figures: caption -> PNG path (absolute, relative to out_dir or
    to the cwd), linked relatively so the folder can be moved; history: history.json rows, whose last row
    gives the final train/validation numbers; extra_sections: heading -> Markdown body, appended in order.
    """
    links = [(caption, _link_target(path, out_dir)) for caption, path in figures.items()]
    lines = [f"# {title}", ""] + _metrics_section(metrics)
    if history:
        lines += [""] + _history_section(history, metrics.get("chosen_epoch"))
    if links:
        lines += ["", "## Figures"]
        for caption, target in links:
            lines += ["", f"### {caption}", "", f"![{_escape(caption)}]({quote(target)})"]
    for heading, body in (extra_sections or {}).items():
        lines += ["", f"## {heading}", "", body.rstrip()]
    storage.makedirs(out_dir)
    path = storage.join(out_dir, REPORT_NAME)
    storage.write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path
