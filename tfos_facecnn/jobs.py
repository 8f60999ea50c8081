"""Entry points of the jobs/ scripts: parse, run one package function, turn errors into exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .config import ConfigError

EXIT_BAD_INPUT = 2  # the user's settings or inputs are wrong: nothing was started
EXIT_FAILED = 1  # the job ran and failed
T = TypeVar("T")


def _run(work: Callable[[], T], summarize: Callable[[T], None]) -> int:
    """Runs a job; a ConfigError or failure becomes one 'error: ...' line and an exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        result = work()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    summarize(result)
    return 0


def run_prepare(argv: Sequence[str]) -> int:
    def work() -> tuple[Any, dict[str, Any]]:
        from .cli import parse_prepare_args
        from .prepare import run_prepare_job

        pcfg, master, bind = parse_prepare_args(argv)
        return pcfg, run_prepare_job(pcfg, master, bind)

    def summarize(result: tuple[Any, dict[str, Any]]) -> None:
        pcfg, manifest = result
        counts = manifest["counts"]
        print(f"prepared {pcfg.output_dir}: " + ", ".join(f"{s} {counts[s]['total']}" for s in counts)
              + f" records ({manifest['record_format']}, {manifest['image_size']} px); "
              f"{len(manifest['skipped'])} skipped")

    return _run(work, summarize)


def run_train(argv: Sequence[str]) -> int:
    def work():
        from .cli import parse_train_args
        from .driver import run_training

        cfg, master = parse_train_args(argv)
        return run_training(cfg, master)

    def summarize(result) -> None:
        for variant_result in result.values() if isinstance(result, dict) else [result]:
            test = variant_result.metrics.get("test", {})
            print(f"done: test accuracy={test.get('accuracy')} on {test.get('count')} images; "
                  f"outputs in {variant_result.export_dir}")

    return _run(work, summarize)


def run_crossval(argv: Sequence[str]) -> int:
    def work() -> dict[str, Any]:
        from .cli import parse_crossval_args
        from .crossval import run_crossval as crossval

        cfg, folds, master = parse_crossval_args(argv)
        return crossval(cfg, folds, master)

    def summarize(summary: dict[str, Any]) -> None:
        for row in summary["folds"]:
            interval = row["interval_95"]
            print(f"fold {row['fold']}: test accuracy {row['accuracy']:.3f} on {row['images']} images "
                  f"(95% {interval['low']:.2f}-{interval['high']:.2f}), exported epoch {row['chosen_epoch']}")
        pooled = summary["pooled_interval_95"]
        print(f"done: {len(summary['folds'])}-fold accuracy {summary['mean_accuracy']:.3f} +- "
              f"{summary['std_accuracy']:.3f} (mean +- sd over folds; range {summary['min_accuracy']:.3f}-"
              f"{summary['max_accuracy']:.3f}); pooled {summary['pooled_accuracy']:.3f} on "
              f"{summary['images_tested']} images (95% {pooled['low']:.2f}-{pooled['high']:.2f})")

    return _run(work, summarize)


def run_predict(argv: Sequence[str]) -> int:
    def work() -> dict[str, Any]:
        from .predict_job import run_batch_predict

        return run_batch_predict(argv)

    def summarize(summary: dict[str, Any]) -> None:
        for path, reason in summary["errors"]:
            print(f"could not predict {path}: {reason}")
        print(f"predicted {summary['rows'] - len(summary['errors'])} of {summary['rows']} images into "
              f"{summary['output']} ({summary['format']}); {len(summary['errors'])} error row(s)")

    return _run(work, summarize)


def run_evaluate(argv: Sequence[str]) -> int:
    def work() -> dict[str, Any]:
        from .evaluate_job import run_evaluate as evaluate

        return evaluate(argv)

    def summarize(result: dict[str, Any]) -> None:
        m = result["metrics"]
        print(f"evaluated {m['count']} images: accuracy={m['accuracy']:.4f} f1={m['f1']:.4f} "
              f"roc_auc={m['roc_auc']}; {len(m['errors'])} unreadable; report in {result['output_dir']}/report.md")

    return _run(work, summarize)
