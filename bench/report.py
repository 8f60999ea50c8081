"""Ratios against their targets, and the two outputs: results.json and the BENCHMARKS.md table."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIGURES = {  # key -> what it measures (the row title when the measurement failed)
    "a0": "the peer: a plain one-process tf.keras script",
    "a": "baseline: one-process tf-keras fit",
    "b": "InputMode.TENSORFLOW, 1 node, local[*]",
    "j": "InputMode.TENSORFLOW, 1 node, local[*], shards and outputs on s3://",
    "c": "InputMode.SPARK, 1 node, local[*], training-size images",
    "c2": "InputMode.SPARK, 1 node, local[*], raw JPEGs",
    "d": "prepare job vs naive Pillow",
    "e0": "scaling of the plain script (no Spark)",
    "e_tensorflow": "scaling, InputMode.TENSORFLOW",
    "e_spark": "scaling, InputMode.SPARK",
    "f": "start-up to the first training step",
    "g": "peak RSS at N and 4N images",
    "h": "batch inference vs one-process predict",
    "k": "2-core vs 1-core executor",
    "i": "ceiling vs fp32 matmul peak",
}
Figures = dict[str, dict[str, Any]]


def _value(figures: Figures, key: str) -> float:
    return figures[key]["value"]


def _detail(figures: Figures, key: str, *path: str) -> float:
    node: Any = figures[key]["detail"]
    for part in path:
        node = node[part]
    return node


# name -> (what, operator, target, how to compute it from the figures)
RATIOS: dict[str, tuple[str, str, float | None, Callable[[Figures], float]]] = {
    "b/a": ("TENSORFLOW mode vs one-process fit", ">=", 0.90, lambda f: _value(f, "b") / _value(f, "a")),
    "b/a0": ("TENSORFLOW mode vs the plain tf.keras script, run in turns", ">=", 1.0,
             lambda f: _value(f, "b") / _detail(f, "b", "a0_alternated_images_per_s")),
    "c/a0": ("SPARK mode vs the plain tf.keras script", None, None, lambda f: _value(f, "c") / _value(f, "a0")),
    "j/b": ("TENSORFLOW mode from s3:// vs local shards", ">=", 0.95, lambda f: _value(f, "j") / _value(f, "b")),
    "c/b": ("SPARK mode vs TENSORFLOW mode (same images)", ">=", 0.90, lambda f: _value(f, "c") / _value(f, "b")),
    "c2/c": ("SPARK mode from raw JPEGs vs from training-size images", None, None,
             lambda f: _value(f, "c2") / _value(f, "c")),
    "d": ("prepare job vs naive Pillow decode + resize, per core", ">=", 1.5,
          lambda f: _value(f, "d") / _detail(f, "d", "naive_pillow_images_per_s_per_core")),
    "e_tensorflow": ("scaling efficiency 2 nodes, TENSORFLOW mode", ">=", 0.90, lambda f: _value(f, "e_tensorflow")),
    "e_spark": ("scaling efficiency 2 nodes, SPARK mode", ">=", 0.80, lambda f: _value(f, "e_spark")),
    "e0": ("scaling efficiency of the plain script, 2 processes (no Spark)", None, None, lambda f: _value(f, "e0")),
    "e0_independent": ("2 independent processes at once vs 1 alone: the machine's ceiling for e", None, None,
                       lambda f: _detail(f, "e0", "independent_efficiency")),
    "e_tensorflow/e0": ("TENSORFLOW-mode scaling vs the plain script's", None, None,
                        lambda f: _value(f, "e_tensorflow") / _value(f, "e0")),
    "e_spark/e0": ("SPARK-mode scaling vs the plain script's", None, None,
                   lambda f: _value(f, "e_spark") / _value(f, "e0")),
    "f_tensorflow": ("start-up to first step, TENSORFLOW mode (s)", "<=", 20.0,
                     lambda f: _detail(f, "f", "tensorflow_to_first_step_s")),
    "f_spark": ("start-up to first step, SPARK mode (s)", "<=", 20.0,
                lambda f: _detail(f, "f", "spark_to_first_step_s")),
    "g_tf_node": ("peak RSS growth of the TF node at 4N", "<=", 0.10,
                  lambda f: _detail(f, "g", "growth", "tf_node")),
    "g_python_worker": ("peak RSS growth of the executor's Python worker at 4N", "<=", 0.10,
                        lambda f: _detail(f, "g", "growth", "python_worker")),
    "h": ("predict job vs one-process model.predict", ">=", 0.8,
          lambda f: _value(f, "h") / _detail(f, "h", "single_process_images_per_s")),
    "k": ("TF node on a 2-core vs a 1-core executor (speed-up)", None, None, lambda f: _value(f, "k")),
    "i": ("fraction of the fp32 matmul peak", None, None, lambda f: _value(f, "i")),
}


def ratios(figures: Figures) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (what, op, target, compute) in RATIOS.items():
        entry: dict[str, Any] = {"what": what, "target": f"{op} {target:g}" if op else None}
        try:
            value = float(compute(figures))
            if math.isnan(value):
                raise ValueError("not a number")
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            entry.update(value=None, passed=None, error=f"not computable: {type(e).__name__}: {e}")
        else:
            passed = None if op is None else (value >= target if op == ">=" else value <= target)
            entry.update(value=value, passed=passed)
        out[name] = entry
    return out


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _notes(key: str, detail: dict[str, Any]) -> str:
    picks = {
        "b": ["a0_alternated_images_per_s", "pair_ratios"],
        "c2": ["decode_image_ms_per_image"],
        "j": ["shard_bytes", "upload_s"],
        "d": ["naive_pillow_images_per_s_per_core", "whole_job_images_per_s_per_core", "fixed_overhead_s",
              "decode_image_ms_per_image", "naive_ms_per_image"],
        "e0": ["one_process_images_per_s", "two_synced_images_per_s", "two_independent_images_per_s",
               "pair_ratios"],
        "e_tensorflow": ["one_node_images_per_s", "two_nodes_images_per_s", "pair_ratios"],
        "e_spark": ["one_node_images_per_s", "two_nodes_images_per_s", "pair_ratios"],
        "f": ["tensorflow_to_tf_node_started_s", "spark_to_tf_node_started_s", "spark_to_first_step_s"],
        "g": ["growth"],
        "h": ["single_process_images_per_s", "job_span_images_per_s", "end_to_end_images_per_s"],
        "k": ["one_core_images_per_s", "two_cores_images_per_s", "tf_threads_on_two_cores"],
        "i": ["best_figure", "best_images_per_s", "achieved_gflops", "peak_gflops", "flops_train_per_image"],
    }.get(key, [])
    parts = []
    epochs = detail.get("images_per_s") or [run["images_per_s"] for run in detail.get("runs", [])]
    if key in ("a0", "a", "b", "j", "c", "c2") and epochs:
        parts.append("images/s per epoch: " + " / ".join(", ".join(f"{x:.1f}" for x in run) for run in epochs))
    for name in picks:
        if name not in detail:
            continue
        value = detail[name]
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
        parts.append(f"{name} = {_fmt(value)}")
    return "; ".join(parts)


def _error_summary(error: str) -> str:
    """The error's first line and, when that only introduces a log, the last line naming an error."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    summary = lines[0] if lines else "error"
    if summary.endswith(":"):
        named = [line for line in lines[1:] if "Error" in line or "error:" in line]
        if named:
            summary += " " + named[-1]
    return summary[:300].replace("|", "/")


def markdown(results: dict[str, Any]) -> str:
    m, s = results["machine"], results["suite"]["settings"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `python bench/run.py" + (" --quick" if s.get("quick") else "") + "` "
        f"on {results['suite']['started']} in {results['suite']['seconds']:.0f} s "
        "(`bench/results.json` has every run, epoch and process). Throughput is the median over epochs >= 2 "
        "(epoch 1 traces the graph) and over repeats; no timing here is asserted by a test.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        f"| CPU | {m.get('cpu_model')}, {m.get('cores')} cores, {m.get('memory_gb')} GB |",
        f"| load average at start | {', '.join(f'{x:.2f}' for x in m.get('load_average_at_start', []))} |",
        f"| software | Python {m.get('python')}, TF {m.get('tensorflow')}, tf-keras {m.get('tf_keras')}, "
        f"pyspark {m.get('pyspark')}, TFoS {m.get('tensorflowonspark')} |",
        f"| data | {s['images']} generated {s['raw_size']} px JPEGs; training at {s['image_size']} px, "
        f"batch {s['batch_size']} (per node in e), {s['epochs']} epochs ({s['scaling_epochs']} for e, "
        f"on {s['memory_factor']}N, "
        f"{s['memory_epochs']} for g), {s['repeats']} repeat(s) |",
        "",
        "## Figures",
        "",
        "| | measurement | value | unit | notes |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for key in FIGURES:
        fig = results["figures"].get(key, {"error": "not run"})
        if "error" in fig:
            lines.append(f"| {key} | {fig.get('title') or FIGURES[key]} | error | | {_error_summary(fig['error'])} |")
        else:
            lines.append(f"| {key} | {fig['title']} | {_fmt(fig['value'])} | {fig['unit']} | "
                         f"{_notes(key, fig['detail'])} |")
    lines += ["", "## Ratios vs targets", "", "| ratio | what | value | target | result |",
              "| --- | --- | ---: | --- | --- |"]
    for name, r in results["ratios"].items():
        verdict = "n/a" if r["passed"] is None else ("pass" if r["passed"] else "**FAIL**")
        if r.get("error"):
            verdict = "not measured"
        lines.append(f"| {name} | {r['what']} | {_fmt(r['value'])} | {r['target'] or '-'} | {verdict} |")
    lines += [
        "",
        "## What each change bought",
        "",
        "<!-- One line per change: what changed, which figure moved, from what to what (same machine). -->",
        "",
        "- (change) : (figure) (before) -> (after)",
        "- ...",
        "",
    ]
    return "\n".join(lines)
