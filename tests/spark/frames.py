"""The sample as a DataFrame, as a user builds one: spark.read.format("binaryFile") with a label derived
from the class folder and a `pair` column (the file name: a face and its comic share it).

Run as `python -m tests.spark.frames OUT_DIR INPUT_MODE` (from the repository root, with
tests.conftest.spark_env()), it is a notebook's steps: its own SparkSession on local[*], then
`train(spark, cfg, data=frame)`; it prints one RESULT line of JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.conftest import SAMPLE

SIZE = 48  # the tests' small training size (checks.SMALL_RUN)
# The sample split by pair (the file name), as the folder source splits it: 25 / 8 / 2 pairs.
SAMPLE_COUNTS = {"train": 50, "val": 16, "test": 4}


def sample_frame(spark: Any, folder: str = str(SAMPLE)) -> Any:
    from pyspark.sql import functions as F

    return (spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg").option("recursiveFileLookup", "true")
            .load(folder)
            .withColumn("label", F.when(F.col("path").contains("/faces/"), "faces").otherwise("comics"))
            .withColumn("pair", F.regexp_extract("path", r"([^/]+)$", 1)))


def main(out: str, input_mode: str) -> None:
    from pyspark.sql import SparkSession

    from tfos_facecnn.config import TrainConfig
    from tfos_facecnn.driver import train

    spark = (SparkSession.builder.master("local[*]").appName("frames")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false").config("spark.pyspark.python", sys.executable)
             .config("spark.executorEnv.TF_USE_LEGACY_KERAS", "1").config("spark.task.maxFailures", "1")
             .getOrCreate())
    try:
        cfg = TrainConfig(input_mode=input_mode, epochs=2, image_size=SIZE, batch_size=8, key_column="pair",
                          model_dir=f"{out}/model", export_dir=f"{out}/export")
        result = train(spark, cfg, data=sample_frame(spark))
        print("RESULT " + json.dumps({"counts": result.metrics["counts"], "test": result.metrics["test"]["count"]}),
              flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
