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
    test = result.metrics.get("test", {})
    print(f"done: test accuracy={test.get('accuracy')} on {test.get('count')} images; outputs in {result.export_dir}")
    return 0
