"""Entry points of the jobs/ scripts: parse, run one package function, turn errors into exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .config import ConfigError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def run_prepare(argv: Sequence[str]) -> int:
    from .cli import parse_prepare_args

    _logging()
    try:
        pcfg, master, bind = parse_prepare_args(argv)
        from .prepare import run_prepare_job

        manifest = run_prepare_job(pcfg, master, bind)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    counts = manifest["counts"]
    print(f"prepared {pcfg.output_dir}: " + ", ".join(f"{s} {counts[s]['total']}" for s in counts)
          + f" records ({manifest['record_format']}, {manifest['image_size']} px); "
          f"{len(manifest['skipped'])} skipped")
    return 0


def run_train(argv: Sequence[str]) -> int:
    from .cli import parse_train_args

    _logging()
    try:
        cfg, master = parse_train_args(argv)
        from .driver import run_training

        result = run_training(cfg, master)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    for variant_result in result.values() if isinstance(result, dict) else [result]:
        test = variant_result.metrics.get("test", {})
        print(f"done: test accuracy={test.get('accuracy')} on {test.get('count')} images; "
              f"outputs in {variant_result.export_dir}")
    return 0


def run_predict(argv: Sequence[str]) -> int:
    from .predict_job import run_batch_predict

    _logging()
    try:
        summary = run_batch_predict(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    for path, reason in summary["errors"]:
        print(f"could not predict {path}: {reason}")
    print(f"predicted {summary['rows'] - len(summary['errors'])} of {summary['rows']} images into "
          f"{summary['output']} ({summary['format']}); {len(summary['errors'])} error row(s)")
    return 0


def run_evaluate(argv: Sequence[str]) -> int:
    from .evaluate_job import run_evaluate as evaluate

    _logging()
    try:
        result = evaluate(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    m = result["metrics"]
    print(f"evaluated {m['count']} images: accuracy={m['accuracy']:.4f} f1={m['f1']:.4f} roc_auc={m['roc_auc']}; "
          f"{len(m['errors'])} unreadable; report in {result['output_dir']}/report.md")
    return 0
