"""The prepare job timed inside an in-process pyspark local[*] session (figure d), every socket on
127.0.0.1. The first run warms the Python workers (their imports of TF and Pillow); the later runs are
timed, so the figure is the executors' decode + resize + encode + write, without JVM or worker start-up.
The result is the last stdout line, as JSON."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
os.environ["PYSPARK_PYTHON"] = sys.executable


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--timed-runs", type=int, default=2)
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession

    from tfos_facecnn.config import TrainConfig
    from tfos_facecnn.preparation import PrepareConfig, prepare_on_spark

    spark = (
        SparkSession.builder.master("local[*]")
        .appName("tfos-facecnn-bench-prepare")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        sc = spark.sparkContext
        cores = sc.defaultParallelism
        pcfg = PrepareConfig.from_train_config(TrainConfig(data_dir=args.data, image_size=args.image_size),
                                               args.out, overwrite=True, num_shards=2 * cores)
        started = time.perf_counter()
        manifest = prepare_on_spark(sc, pcfg)
        warm_up = time.perf_counter() - started
        seconds = []
        for _ in range(args.timed_runs):
            started = time.perf_counter()
            manifest = prepare_on_spark(sc, pcfg)
            seconds.append(time.perf_counter() - started)
    finally:
        spark.stop()
    images = sum(manifest["counts"][split]["total"] for split in manifest["counts"])
    best = statistics.median(seconds)
    print(json.dumps({"images": images, "cores": cores, "warm_up_s": warm_up, "seconds": seconds,
                      "images_per_s": images / best, "images_per_s_per_core": images / best / cores,
                      "skipped": len(manifest["skipped"])}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
