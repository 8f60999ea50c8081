"""The side-by-side of the four variants: one table of final metrics and one figure of their curves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import storage
from .export import staged_output, write_json

COMPARISON_DIR = "comparison"


def comparison_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per variant: the final epoch's train/val metrics and the test metrics."""
    rows = []
    for variant, result in results.items():
        last = result.history[-1] if result.history else {}
        test = result.metrics.get("test", {})
        rows.append({
            "variant": variant,
            "train_accuracy": last.get("accuracy"),
            "train_loss": last.get("loss"),
            "val_accuracy": last.get("val_accuracy"),
            "val_loss": last.get("val_loss"),
            "test_accuracy": test.get("accuracy"),
            "test_loss": test.get("loss"),
            "test_f1": test.get("f1"),
            "test_roc_auc": test.get("roc_auc"),
        })
    return rows


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["# Comparison of the model variants", "",
             "Same data, split and seed; final epoch for train/validation, the exported model for test.", "",
             "| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    lines += ["", "![Validation and training curves of every variant](curves.png)", ""]
    return "\n".join(lines)


def write_comparison(export_dir: str, results: Mapping[str, Any]) -> str:
    """EXPORT_DIR/comparison/{comparison.json, comparison.md, curves.png}; returns the markdown's path."""
    from .reports import plot_model_comparison

    target = storage.join(export_dir, COMPARISON_DIR)
    with staged_output(target) as staging:
        storage.makedirs(staging)
        rows = comparison_rows(results)
        write_json(storage.join(staging, "comparison.json"), rows)
        plot_model_comparison({v: r.history for v, r in results.items()}, storage.join(staging, "curves.png"))
        storage.write_bytes_atomic(storage.join(staging, "comparison.md"),
                                   comparison_markdown(rows).encode("utf-8"))
    return storage.join(target, "comparison.md")
