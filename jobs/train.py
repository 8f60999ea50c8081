"""spark-submit entry: train the face-vs-comic CNN. See `--help` and the README."""

import sys

from tfos_facecnn.jobs import run_train

if __name__ == "__main__":
    sys.exit(run_train(sys.argv[1:]))
