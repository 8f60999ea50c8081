"""The prepare job timed inside an in-process pyspark local[*] session (figure d), every socket on
127.0.0.1. The first run warms the Python workers (their imports of TF and Pillow); the later runs are
timed, so the figure is the executors' decode + resize + encode + write, without JVM or worker start-up.
Each --data/--out pair is timed in turn in the same session (the workers warm from the first).
The result is the last stdout line, as JSON: {"runs": [one entry per pair]}."""

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
    parser.add_argument("--data", required=True, action="append")
    parser.add_argument("--out", required=True, action="append")
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--timed-runs", type=int, default=2)
    args = parser.parse_args(argv)
    if len(args.data) != len(args.out):
        parser.error(f"{len(args.data)} --data but {len(args.out)} --out: give them in pairs")

    from pyspark.sql import SparkSession

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
        runs = [time_prepare(spark.sparkContext, data, out, args.image_size, args.timed_runs, warm_up=index == 0)
                for index, (data, out) in enumerate(zip(args.data, args.out, strict=True))]
    finally:
        spark.stop()
    print(json.dumps({"runs": runs}), flush=True)
    return 0


def time_prepare(sc, data: str, out: str, image_size: int, timed_runs: int, warm_up: bool) -> dict:
    from tfos_facecnn.config import TrainConfig
    from tfos_facecnn.preparation import PrepareConfig, prepare_on_spark

    cores = sc.defaultParallelism
    pcfg = PrepareConfig.from_train_config(TrainConfig(data_dir=data, image_size=image_size), out,
                                           overwrite=True, num_shards=2 * cores)
    warm_up_s = None
    if warm_up:
        started = time.perf_counter()
        manifest = prepare_on_spark(sc, pcfg)
        warm_up_s = time.perf_counter() - started
    seconds = []
    for _ in range(timed_runs):
        started = time.perf_counter()
        manifest = prepare_on_spark(sc, pcfg)
        seconds.append(time.perf_counter() - started)
    images = sum(manifest["counts"][split]["total"] for split in manifest["counts"])
    best = statistics.median(seconds)
    return {"images": images, "cores": cores, "warm_up_s": warm_up_s, "seconds": seconds,
            "images_per_s": images / best, "images_per_s_per_core": images / best / cores,
            "skipped": len(manifest["skipped"])}


if __name__ == "__main__":
    sys.exit(main())
