"""The Spark driver: checks, the TFoS cluster, progress lines, and the completion check."""

from __future__ import annotations

import logging
import signal
import sys
import uuid
from dataclasses import dataclass, replace
from typing import Any

from . import sample_data_dir, storage
from .config import ALL_VARIANTS, VARIANTS, ConfigError, TrainConfig
from .data.split import SPLITS
from .driver_inputs import ModeInputs, check_data, spark_mode_inputs, tensorflow_mode_inputs
from .events import EventServer
from .export import MODEL_FILE, is_complete, read_json, write_json
from .spark_env import Master, bind_address, expected_nodes, spark_conf, start_session, wait_for_executors

logger = logging.getLogger(__name__)
COLLECTIVE_TIMEOUT_S = 600  # a collective op waiting longer than this means a peer is gone


@dataclass(frozen=True)
class TrainResult:
    export_dir: str
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    nodes: dict[str, dict[str, Any]]


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


def run_training(cfg: TrainConfig, master_url: str | None = None) -> TrainResult | dict[str, TrainResult]:
    """Trains per cfg on Spark with TFoS; `variant: all` trains every variant and compares them.
    Raises ConfigError before Spark starts for bad settings."""
    cfg = replace(
        cfg,
        data_dir=storage.absolute(cfg.data_dir or sample_data_dir()),
        model_dir=storage.absolute(cfg.model_dir),
        export_dir=storage.absolute(cfg.export_dir),
    )
    runs = [cfg] if cfg.variant != ALL_VARIANTS else [
        replace(cfg, variant=v, model_dir=storage.join(cfg.model_dir, v), export_dir=storage.join(cfg.export_dir, v))
        for v in VARIANTS
    ]
    data = check_data(cfg)
    master, user_conf = spark_conf(master_url)
    nodes = expected_nodes(cfg, master, user_conf)
    if cfg.batch_size % nodes:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not split evenly over {nodes} TF nodes; "
            f"use a multiple of {nodes}"
        )
    address = bind_address(cfg, master)
    spark = start_session("tfos-facecnn-train", master, address, user_conf)
    try:
        sc = spark.sparkContext
        have = wait_for_executors(sc, nodes)
        if have < nodes:
            raise RuntimeError(
                f"Spark gave {have} executors but {nodes} TF nodes were asked for (one per executor); "
                "lower --cluster-size or give Spark more executors (--num-executors, spark.cores.max)"
            )
        if cfg.input_mode == "spark":
            inputs = spark_mode_inputs(sc, cfg, data, nodes)
        else:
            inputs = tensorflow_mode_inputs(sc, cfg, data, nodes)
        try:
            results = {}
            for run in runs:
                if len(runs) > 1:
                    print(f"=== variant {run.variant} ===", flush=True)
                results[run.variant] = _train(sc, run, master, nodes, address, inputs)
        finally:
            inputs.release()
    finally:
        spark.stop()
    if cfg.variant != ALL_VARIANTS:
        return results[cfg.variant]
    from .compare import write_comparison

    print(f"comparison: {write_comparison(cfg.export_dir, results)}", flush=True)
    return results


def _train(sc, cfg: TrainConfig, master: Master, nodes: int, address: str | None, inputs: ModeInputs) -> TrainResult:
    _log_counts(inputs.summary)
    events = EventServer(address or sc.getConf().get("spark.driver.host"), on_event=print_progress)
    args = {
        **inputs.node_args,
        "config": cfg.to_dict(),
        "input_mode": cfg.input_mode,
        "run_id": uuid.uuid4().hex[:12],
        "steps_per_epoch": inputs.steps_per_epoch,
        "threads": master.cores_per_executor or 0,
        "collective_timeout": COLLECTIVE_TIMEOUT_S,
        "data_summary": inputs.summary,
        "events_address": list(events.address),
        "events_token": events.token,
    }
    print(f"starting {nodes} TF node(s) on {master.url} in {cfg.input_mode.upper()} mode: "
          f"{inputs.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, global batch {cfg.batch_size}, "
          f"image size {cfg.image_size}", flush=True)
    try:
        _run_cluster(sc, cfg, nodes, address, args, inputs.feed, events)
    finally:
        events.stop()
    if not is_complete(cfg.export_dir):
        raise RuntimeError(
            f"training ended but {cfg.export_dir!r} holds no complete export ({MODEL_FILE} + _SUCCESS); "
            "see the TF node logs in the executor stderr"
        )
    nodes_record = dict(events.state.done)
    write_json(storage.join(cfg.model_dir, "nodes.json"), nodes_record)
    print(f"exported model to {storage.join(cfg.export_dir, MODEL_FILE)}", flush=True)
    if cfg.report:
        from .evaluate_job import report_after_training

        print(f"report: {report_after_training(cfg.export_dir, cfg, inputs.summary)}", flush=True)
    return TrainResult(
        cfg.export_dir,
        read_json(storage.join(cfg.export_dir, "history.json")),
        read_json(storage.join(cfg.export_dir, "metrics.json")),
        nodes_record,
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
            mode = TFCluster.InputMode.SPARK if feed is not None else TFCluster.InputMode.TENSORFLOW
            cluster = TFCluster.run(
                sc, main_fun, args, nodes, num_ps=0, tensorboard=False, input_mode=mode, master_node="chief",
                reservation_timeout=cfg.reservation_timeout,
            )
            if feed is not None:
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
    for split in SPLITS:
        counts = summary["counts"][split]
        print(f"data {split}: {counts['faces']} faces, {counts['comics']} comics", flush=True)
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable file(s), e.g. "
              f"{summary['skipped'][0]['path']}: {summary['skipped'][0]['reason']}", flush=True)
