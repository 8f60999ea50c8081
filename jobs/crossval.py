"""spark-submit entry: K-fold cross-validation of the CNN by face/comic pair. See `--help` and the README."""

import sys

from tfos_facecnn.jobs import run_crossval

if __name__ == "__main__":
    sys.exit(run_crossval(sys.argv[1:]))
