"""spark-submit entry: evaluate an exported model and write its report. See `--help` and the README."""

import sys

from tfos_facecnn.jobs import run_evaluate

if __name__ == "__main__":
    sys.exit(run_evaluate(sys.argv[1:]))
