"""spark-submit entry: batch inference with an exported model. See `--help` and the README."""

import sys

from tfos_facecnn.jobs import run_predict

if __name__ == "__main__":
    sys.exit(run_predict(sys.argv[1:]))
