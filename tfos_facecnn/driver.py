"""The Spark driver: checks, the TFoS cluster, progress lines, and the completion check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from . import sample_data_dir, storage
from .cluster_run import preload_tfos, run_cluster
from .config import ALL_VARIANTS, VARIANTS, ConfigError, TrainConfig
from .data.split import SPLITS
from .driver_inputs import TOP_UP_TOLERANCE, ModeInputs, check_data, spark_mode_inputs, tensorflow_mode_inputs
from .events import EventServer
from .export import MODEL_FILE, is_complete, read_json, write_json
from .resume import RunState, fingerprint, run_state
from .spark_env import Master, bind_address, expected_nodes, node_threads, spark_conf, start_session, wait_for_executors


@dataclass(frozen=True)
class TrainResult:
    export_dir: str
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    nodes: dict[str, dict[str, Any]]


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
    from .storage.access import prepare_storage

    # Storage first: an unreachable endpoint, bad credentials or a missing bucket stop here, in seconds.
    env = prepare_storage(cfg.storage, {"--data-dir": cfg.data_dir},
                          {"--model-dir": cfg.model_dir, "--export-dir": cfg.export_dir})
    data = check_data(cfg)
    states = {run.variant: run_state(run) for run in runs}  # before Spark: a foreign MODEL_DIR stops here
    if all(state.finished for state in states.values()):
        results = {run.variant: _already_finished(run, states[run.variant]) for run in runs}
        return _finish(cfg, results)
    master, user_conf = spark_conf(master_url)
    nodes = expected_nodes(cfg, master, user_conf)
    if cfg.batch_size % nodes:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not split evenly over {nodes} TF nodes; "
            f"use a multiple of {nodes}"
        )
    address = bind_address(cfg, master)
    preload_tfos()
    spark = start_session("tfos-facecnn-train", master, address, user_conf, env)
    try:
        sc = spark.sparkContext
        have = wait_for_executors(sc, nodes)
        if have < nodes:
            raise RuntimeError(
                f"Spark gave {have} executors but {nodes} TF nodes were asked for (one per executor); "
                "lower --cluster-size or give Spark more executors (--num-executors, spark.cores.max)"
            )
        if cfg.input_mode == "spark":
            epochs_to_feed = min(cfg.epochs - state.epochs_done for state in states.values() if not state.finished)
            inputs = spark_mode_inputs(sc, cfg, data, nodes, epochs_to_feed)
        else:
            inputs = tensorflow_mode_inputs(sc, cfg, data, nodes)
        try:
            results = {}
            for run in runs:
                if len(runs) > 1:
                    print(f"=== variant {run.variant} ===", flush=True)
                results[run.variant] = _train(sc, run, states[run.variant], master, nodes, address, inputs)
        finally:
            inputs.release()
    finally:
        spark.stop()
    return _finish(cfg, results)


def _finish(cfg: TrainConfig, results: dict[str, TrainResult]) -> TrainResult | dict[str, TrainResult]:
    if cfg.variant != ALL_VARIANTS:
        return results[cfg.variant]
    from .compare import write_comparison

    print(f"comparison: {write_comparison(cfg.export_dir, results)}", flush=True)
    return results


def _train(sc, cfg: TrainConfig, state: RunState, master: Master, nodes: int, address: str | None,
           inputs: ModeInputs) -> TrainResult:
    if state.finished:
        return _already_finished(cfg, state)
    if state.message:
        print(state.message, flush=True)
    _log_counts(inputs.summary)
    events = EventServer(address or sc.getConf().get("spark.driver.host"))
    args = {
        **inputs.node_args,
        "config": cfg.to_dict(),
        "input_mode": cfg.input_mode,
        "run_id": uuid.uuid4().hex[:12],
        "steps_per_epoch": inputs.steps_per_epoch,
        "threads": node_threads(master, dict(sc.getConf().getAll())),
        "node_timeout": cfg.node_timeout,
        "fingerprint": fingerprint(cfg),
        "history": state.history,
        "data_summary": inputs.summary,
        "events_address": list(events.address),
        "events_token": events.token,
    }
    print(f"starting {nodes} TF node(s) on {master.url} in {cfg.input_mode.upper()} mode: "
          f"{inputs.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, global batch {cfg.batch_size}, "
          f"image size {cfg.image_size}", flush=True)
    try:
        # SPARK mode feeds exactly the epochs still to run.
        feed = inputs.feed_epochs(state.epochs_done, cfg.epochs - state.epochs_done) if inputs.feed_epochs else None
        run_cluster(sc, cfg, nodes, address, args, feed, events)
    finally:
        events.stop()
    if not is_complete(cfg.export_dir):
        raise RuntimeError(
            f"training ended but {cfg.export_dir!r} holds no complete export ({MODEL_FILE} + _SUCCESS); "
            "see the TF node logs in the executor stderr"
        )
    write_json(storage.join(cfg.model_dir, "nodes.json"), dict(events.state.done))
    _warn_short_feeds(events.state.done)
    result = _result(cfg, dict(events.state.done))  # reads metrics.json once, for the line below too
    chosen = result.metrics.get("chosen_epoch") or {}
    which = f" (weights of epoch {chosen['epoch']}: {chosen['rule']})" if chosen else ""
    print(f"exported model to {storage.join(cfg.export_dir, MODEL_FILE)}{which}", flush=True)
    if cfg.report:
        from .evaluate_job import report_after_training

        print(f"report: {report_after_training(cfg.export_dir, cfg, inputs.summary)}", flush=True)
    return result


def _warn_short_feeds(records: dict[str, dict[str, Any]]) -> None:
    """SPARK mode: every node tops up its last batches with repeats while its pipeline reads ahead of
    the model; a node that Spark fed less than its share also trained on repeats of images it held
    (node_inputs._FeedCounter) while a peer's surplus was dropped. Past TOP_UP_TOLERANCE, say so."""
    for node, record in sorted(records.items()):
        repeated = record.get("images_topped_up", 0) - record.get("top_up_read_ahead", 0)
        trained = record.get("steps_per_epoch", 0) * record.get("per_replica_batch", 0) * record.get("epochs_run", 0)
        if repeated > TOP_UP_TOLERANCE * trained:
            print(f"warning: Spark fed TF node {node} {record.get('items_fed')} images, fewer than its steps "
                  f"needed; it trained on up to {repeated} repeats of images it already held, while peers "
                  f"dropped {sum(r.get('items_dropped', 0) for r in records.values())} (the executors took "
                  "feeding tasks unevenly, e.g. one started late or ran other tasks: see nodes.json)", flush=True)


def _already_finished(cfg: TrainConfig, state: RunState) -> TrainResult:
    print(state.message, flush=True)
    return _result(cfg, {})


def _result(cfg: TrainConfig, nodes_record: dict[str, Any]) -> TrainResult:
    return TrainResult(
        cfg.export_dir,
        read_json(storage.join(cfg.export_dir, "history.json")),
        read_json(storage.join(cfg.export_dir, "metrics.json")),
        nodes_record,
    )


def _log_counts(summary: dict[str, Any]) -> None:
    for split in SPLITS:
        counts = summary["counts"][split]
        print(f"data {split}: {counts['faces']} faces, {counts['comics']} comics", flush=True)
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable file(s), e.g. "
              f"{summary['skipped'][0]['path']}: {summary['skipped'][0]['reason']}", flush=True)
