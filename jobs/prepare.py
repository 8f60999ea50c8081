"""spark-submit entry: prepare TFRecord shards for --input-mode tensorflow. See `--help` and the README."""

import sys

from tfos_facecnn.jobs import run_prepare

if __name__ == "__main__":
    sys.exit(run_prepare(sys.argv[1:]))
