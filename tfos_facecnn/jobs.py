"""Entry points of the jobs/ scripts: parse, run one package function, turn errors into exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .config import ConfigError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def run_train(argv: Sequence[str]) -> int:
    from .cli import parse_train_args

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
