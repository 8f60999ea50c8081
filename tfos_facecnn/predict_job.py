"""`jobs/predict.py` (batch inference on Spark) and `python -m tfos_facecnn predict` (one process)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from . import storage
from .config import ConfigError
from .inference import BATCH, expand_inputs, load_model, model_file, predict_on_spark, predict_paths
from .part_writer import parquet_available, write_parts

FORMATS = ("csv", "parquet")
DEFAULT_MODEL = "output/export"


def batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark-submit jobs/predict.py",
        description="Predict face vs comic for many images with Spark: each partition loads the exported "
        "model once and predicts in batches. Output columns: path, p_face, label, error.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"export dir or model.keras (default {DEFAULT_MODEL})")
    p.add_argument("--input", action="append", required=True, dest="inputs",
                   help="a folder (its .jpg/.jpeg/.png files), a glob, a .txt file of paths/URIs, or an image; "
                   "repeatable")
    p.add_argument("--output", required=True, help="output folder (Spark writes part files and _SUCCESS)")
    p.add_argument("--format", choices=FORMATS, default="csv", help="csv (with header) or parquet")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--batch-size", type=int, default=BATCH, dest="batch_size", help=f"images per batch ({BATCH})")
    p.add_argument("--config", default=None,
                   help="YAML whose storage: section holds fsspec options (default conf/train.yaml if present)")
    p.add_argument("--master", default=None, help="Spark master URL, when not given to spark-submit")
    return p


def run_batch_predict(argv: Sequence[str]) -> dict[str, Any]:
    """Checks everything it can before Spark starts, then predicts and writes; returns counts."""
    from .cli import storage_options
    from .spark_env import LOOPBACK, spark_conf, start_session
    from .storage.access import prepare_storage

    args = batch_parser().parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be at least 1")
    options = storage_options(args.config)
    args.output = storage.absolute(args.output)
    env = prepare_storage(options, {"--model": storage.absolute(args.model)}, {"--output": args.output})
    model_path = model_file(storage.absolute(args.model))
    if storage.exists(args.output) and not args.overwrite:
        raise ConfigError(f"--output {args.output!r} already exists; pass --overwrite to replace it")
    paths = expand_inputs(args.inputs)
    env |= storage.forwarded_env(paths)
    if not storage.is_local(args.output) and args.format == "parquet":
        parquet_available()
    master, user_conf = spark_conf(args.master)
    spark = start_session("tfos-facecnn-predict", master, LOOPBACK if master.is_local_machine else None, user_conf,
                          env)
    try:
        from pyspark.sql.types import DoubleType, StringType, StructField, StructType

        schema = StructType([
            StructField("path", StringType(), False),
            StructField("p_face", DoubleType(), True),
            StructField("label", StringType(), True),
            StructField("error", StringType(), True),
        ])
        rows = predict_on_spark(spark.sparkContext, model_path, paths, args.batch_size, options).cache()
        if storage.is_local(args.output):
            frame = spark.createDataFrame(rows, schema)
            writer = frame.write.mode("overwrite" if args.overwrite else "errorifexists").format(args.format)
            if args.format == "csv":
                writer = writer.option("header", True)
            writer.save(args.output)
        else:
            write_parts(rows, args.output, args.format, options)
        failed = rows.filter(lambda row: row[3] is not None).map(lambda row: (row[0], row[3])).collect()
        return {"rows": len(paths), "errors": failed, "output": args.output, "format": args.format}
    finally:
        spark.stop()


def configure_local_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files, folders, globs or .txt lists of paths")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"export dir or model.keras (default {DEFAULT_MODEL})")


def local_command(args: argparse.Namespace) -> int:
    """Prints 'path<TAB>label<TAB>p_face' per image (or the error); exit 1 if any image failed."""
    try:
        model = load_model(model_file(args.model))
        paths = expand_inputs(args.images)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for row in predict_paths(model, paths):
        if row.error is None:
            print(f"{row.path}\t{row.label}\t{row.p_face:.4f}", flush=True)
        else:
            failed += 1
            print(f"{row.path}\terror\t{row.error}", flush=True)
    return 1 if failed else 0
