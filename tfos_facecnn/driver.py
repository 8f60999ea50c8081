"""The Spark driver: discovery, the decode stage, the TFoS cluster, progress, and the completion check."""

from __future__ import annotations

import logging
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import sample_data_dir, storage
from .config import ConfigError, TrainConfig
from .data.discover import discover
from .data.images import ImageDecodeError, decode_image
from .data.records import Record, assign_splits, check_splits_usable, data_summary
from .data.split import TEST, TRAIN, VAL
from .events import EventServer
from .export import MODEL_FILE, is_complete, read_json
from .pipeline import train_steps_per_epoch
from .spark_env import Master, bind_address, expected_nodes, parse_master, session_settings, wait_for_executors

logger = logging.getLogger(__name__)
ITEMS_PER_PARTITION = 64  # small partitions spread the feed evenly over the TF nodes
PARTITIONS_PER_NODE = 4
COLLECTIVE_TIMEOUT_S = 600  # a collective op waiting longer than this means a peer is gone


@dataclass(frozen=True)
class TrainResult:
    export_dir: str
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    nodes: dict[str, dict[str, Any]]


def decode_partition(image_size: int) -> Callable:
    """Executor side of the decode stage: keeps training pixels, only validates val/test files."""

    def decode(records):
        for path, label, split in records:
            try:
                pixels = decode_image(storage.read_bytes(path), image_size)
            except (OSError, ImageDecodeError) as e:
                yield split, path, label, None, str(e) or type(e).__name__
                continue
            yield split, path, label, (pixels.tobytes() if split == TRAIN else None), None

    return decode


def print_progress(event: dict[str, Any]) -> None:
    """The driver's console line for each node event."""
    kind, node = event.get("kind"), event.get("node")
    if kind == "epoch":
        m = event["metrics"]
        print(
            f"epoch {event['epoch']}/{event['epochs']} loss={m.get('loss', float('nan')):.4f} "
            f"accuracy={m.get('accuracy', float('nan')):.4f} val_loss={m.get('val_loss', float('nan')):.4f} "
            f"val_accuracy={m.get('val_accuracy', float('nan')):.4f} images/s={event['images_per_s']:.1f}",
            flush=True,
        )
    elif kind == "started":
        print(f"TF node {node} started on {event.get('host')} (pid {event.get('pid')}, "
              f"TF server {event.get('tf_address')})", flush=True)
    elif kind == "failed":
        print(f"TF node {node} FAILED: {event.get('error')}", file=sys.stderr, flush=True)


def run_training(cfg: TrainConfig, master_url: str | None = None) -> TrainResult:
    """Trains per cfg on Spark with TFoS; raises ConfigError before Spark starts for bad settings."""
    from pyspark import SparkConf, SparkContext

    if cfg.data_dir is None:
        cfg = replace(cfg, data_dir=sample_data_dir())
    if cfg.input_mode != "spark":
        raise ConfigError(f"input mode {cfg.input_mode!r} is not available yet; use --input-mode spark")
    found = discover(cfg.data_dir)
    records = assign_splits(found, cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val)
    check_splits_usable(data_summary(found.root, records, [], found.ignored)["counts"])

    SparkContext._ensure_initialized()  # joins spark-submit's JVM, so SparkConf sees its --master/--conf
    conf = SparkConf()
    if master_url:
        conf.setMaster(master_url)
    user_conf = dict(conf.getAll())
    master = parse_master(user_conf.get("spark.master", "local[*]"))
    nodes = expected_nodes(cfg, master, user_conf)
    if cfg.batch_size % nodes:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not split evenly over {nodes} TF nodes; "
            f"use a multiple of {nodes}"
        )
    address = bind_address(cfg, master)
    spark = _start_spark(master, address, user_conf)
    try:
        return _train_on_spark(spark.sparkContext, cfg, master, nodes, address, found, records)
    finally:
        spark.stop()


def _start_spark(master: Master, address: str | None, user_conf: dict[str, str]):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("tfos-facecnn").master(master.url)
    for key, value in session_settings(master, address, user_conf).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _train_on_spark(sc, cfg: TrainConfig, master: Master, nodes: int, address: str | None,
                    found, records: list[Record]) -> TrainResult:
    from pyspark import StorageLevel

    have = wait_for_executors(sc, nodes)
    if have < nodes:
        raise RuntimeError(
            f"Spark gave {have} executors but {nodes} TF nodes were asked for (one per executor); "
            "lower --cluster-size or give Spark more executors (--num-executors, spark.cores.max)"
        )
    partitions = max(nodes * PARTITIONS_PER_NODE, -(-len(records) // ITEMS_PER_PARTITION))
    decoded = sc.parallelize([tuple(r) for r in records], partitions).mapPartitions(
        decode_partition(cfg.image_size)
    ).persist(StorageLevel.MEMORY_AND_DISK)
    skipped = decoded.filter(lambda r: r[4] is not None).map(lambda r: (r[1], r[4])).collect()
    summary = data_summary(found.root, records, skipped, found.ignored)
    _log_counts(summary)
    check_splits_usable(summary["counts"])
    bad = {path for path, _ in skipped}
    train_count = summary["counts"][TRAIN]["total"]
    steps = train_steps_per_epoch(train_count, cfg.batch_size, cfg.steps_safety)
    feed = decoded.filter(lambda r: r[0] == TRAIN and r[3] is not None).map(lambda r: (r[3], r[2]))

    events = EventServer(address or sc.getConf().get("spark.driver.host"), on_event=print_progress)
    run_id = uuid.uuid4().hex[:12]
    args = {
        "config": cfg.to_dict(),
        "input_mode": cfg.input_mode,
        "run_id": run_id,
        "steps_per_epoch": steps,
        "threads": master.cores_per_executor or 0,
        "collective_timeout": COLLECTIVE_TIMEOUT_S,
        "val": [(r.path, r.label) for r in records if r.split == VAL and r.path not in bad],
        "test": [(r.path, r.label) for r in records if r.split == TEST and r.path not in bad],
        "data_summary": summary,
        "events_address": list(events.address),
        "events_token": events.token,
    }
    print(f"starting {nodes} TF node(s) on {master.url}: {steps} steps/epoch x {cfg.epochs} epochs, "
          f"global batch {cfg.batch_size}, image size {cfg.image_size}", flush=True)
    try:
        _run_cluster(sc, cfg, nodes, address, args, feed, events)
    finally:
        events.stop()
        decoded.unpersist()
    if not is_complete(cfg.export_dir):
        raise RuntimeError(
            f"training ended but {cfg.export_dir!r} holds no complete export ({MODEL_FILE} + _SUCCESS); "
            "see the TF node logs in the executor stderr"
        )
    print(f"exported model to {storage.join(cfg.export_dir, MODEL_FILE)}", flush=True)
    return TrainResult(
        cfg.export_dir,
        read_json(storage.join(cfg.export_dir, "history.json")),
        read_json(storage.join(cfg.export_dir, "metrics.json")),
        dict(events.state.done),
    )


def _run_cluster(
    sc, cfg: TrainConfig, nodes: int, address: str | None, args: dict[str, Any], feed, events: EventServer
) -> None:
    from tensorflowonspark import TFCluster

    from .node import main_fun
    from .tfos_compat import pinned_address

    def cancel_on_failure(event: dict[str, Any]) -> None:
        print_progress(event)
        if event.get("kind") == "failed":
            sc.cancelAllJobs()

    events._on_event = cancel_on_failure
    TFCluster.tf_status.clear()  # TFoS keeps errors in a module global across runs
    try:
        with pinned_address(address):
            cluster = TFCluster.run(
                sc, main_fun, args, nodes, num_ps=0, tensorboard=False,
                input_mode=TFCluster.InputMode.SPARK, master_node="chief",
                reservation_timeout=cfg.reservation_timeout,
            )
            cluster.train(feed, num_epochs=cfg.epochs, feed_timeout=cfg.feed_timeout)
            cluster.shutdown(timeout=cfg.finish_timeout)
            signal.alarm(0)  # TFoS arms SIGALRM for its shutdown timeout and never disarms it
    except (Exception, SystemExit) as e:  # TFoS calls sys.exit(1) when a node fails
        signal.alarm(0)
        raise _node_failure(events, e) from e
    if not events.wait_for(lambda s: len(s.done) >= nodes, cfg.finish_timeout):
        raise _node_failure(events, None)


def _node_failure(events: EventServer, cause: BaseException | None) -> RuntimeError:
    failures = events.state.failures
    if failures:
        first = failures[0]
        tail = "\n".join(f"    {line}" for line in first.get("log_tail", [])[-15:])
        return RuntimeError(f"TF node {first['node']} failed: {first['error']}\n  last log lines:\n{tail}")
    missing = sorted(set(events.state.started) - set(events.state.done)) or ["(none started)"]
    if cause is not None:
        return RuntimeError(f"the TFoS cluster failed ({type(cause).__name__}: {cause}); nodes not done: {missing}")
    return RuntimeError(f"TF node(s) {', '.join(missing)} did not finish within finish_timeout; see executor logs")


def _log_counts(summary: dict[str, Any]) -> None:
    for split, counts in summary["counts"].items():
        print(f"data {split}: {counts['faces']} faces, {counts['comics']} comics", flush=True)
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable file(s), e.g. "
              f"{summary['skipped'][0]['path']}: {summary['skipped'][0]['reason']}", flush=True)
