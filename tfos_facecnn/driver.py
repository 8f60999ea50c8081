"""The Spark driver: checks, the TFoS cluster, progress lines, and the completion check."""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from . import sample_data_dir, storage
from .cluster_run import preload_tfos, run_cluster
from .config import ALL_VARIANTS, VARIANTS, ConfigError, TrainConfig
from .data.split import SPLITS
from .driver_inputs import TOP_UP_TOLERANCE, ModeInputs, check_data, spark_mode_inputs, tensorflow_mode_inputs
from .events import EventServer
from .export import MODEL_FILE, is_complete, read_json, reexport, write_json
from .reachability import check_executor_hosts, missing_workers
from .resume import NODES_FILE, RunState, check_foreign, fingerprint, prepare_model_dir, run_state
from .run_lock import RunLocks, export_dir_lock, model_dir_lock
from .spark_env import Master, bind_address, expected_nodes, node_threads, spark_conf, start_session, wait_for_executors


@dataclass(frozen=True)
class TrainResult:
    export_dir: str
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    nodes: dict[str, dict[str, Any]]


def run_training(cfg: TrainConfig, master_url: str | None = None) -> TrainResult | dict[str, TrainResult]:
    """Trains per cfg on Spark with TFoS; `variant: all` trains every variant and compares them.
    Raises ConfigError before Spark starts for bad settings, and before anything is deleted for any
    setting Spark's executors decide (--overwrite deletes last)."""
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
    # One run per model dir and export dir (run_lock.py): each run's, every variant's with --variant all.
    locks = RunLocks([model_dir_lock(run.model_dir) for run in runs]
                     + [export_dir_lock(run.export_dir) for run in runs])
    locks.check_free()  # a live run stops this one here, before Spark; the lock itself is taken below
    data = check_data(cfg)
    if cfg.variant == ALL_VARIANTS and not cfg.overwrite:
        check_foreign(cfg.model_dir, cfg.export_dir)
    states = _states(runs)  # reads only: a foreign or unreadable MODEL_DIR stops here
    if all(state.finished for state in states.values()):
        with locks.acquire():  # no Spark, but leftovers may be deleted and the comparison written
            _report_takeovers(locks)
            states = _states(runs, finished=True)
            return _finish(cfg, {run.variant: _already_finished(run, states[run.variant]) for run in runs})
    master, user_conf = spark_conf(master_url)
    nodes = expected_nodes(cfg, master, user_conf)
    if cfg.batch_size % nodes:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not split evenly over {nodes} TF nodes; "
            f"use a multiple of {nodes}"
        )
    address = bind_address(cfg, master)
    preload_tfos()
    # A local master may start this driver again (loopback.py) inside start_session: the lock is taken
    # after it, by the driver that trains, and before anything is written.
    spark = start_session("tfos-facecnn-train", master, address, user_conf, env)
    try:
        locks.acquire()
    except BaseException:
        spark.stop()
        raise
    with locks, _terminate_unwinds():  # released last, once Spark has stopped every TF node of this run
        try:
            _report_takeovers(locks)
            states = _states(runs)  # again under the lock: another run may have ended meanwhile
            return _finish(cfg, _train_all(spark.sparkContext, cfg, runs, states, data, master, nodes, address))
        finally:
            spark.stop()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as the interrupt Ctrl-C raises: no handler on the way treats it as a failure to
    explain (SystemExit is what TFoS raises for a failed node)."""


@contextmanager
def _terminate_unwinds() -> Iterator[None]:
    """SIGTERM (yarn application -kill, a pod's deletion, kill PID) ends the driver as Ctrl-C does: through
    the finally blocks, so Spark stops and the locks are released. Only where SIGTERM still kills outright
    (its default) and on the main thread, the one Python delivers signals to."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def unwind(signum: int, _frame: object) -> None:
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _states(runs: list[TrainConfig], finished: bool = False) -> dict[str, RunState]:
    states = {run.variant: run_state(run) for run in runs}
    if finished and not all(state.finished for state in states.values()):
        raise RuntimeError(f"another run changed {', '.join(run.model_dir for run in runs)} while this one "
                           "started; run the command again")
    return states


def _report_takeovers(locks: RunLocks) -> None:
    for path, holder in locks.taken_over():
        print(f"took over {path}: the run that held it ({holder.describe()}) is gone", flush=True)


def _train_all(sc, cfg: TrainConfig, runs: list[TrainConfig], states: dict[str, RunState], data, master: Master,
               nodes: int, address: str | None) -> dict[str, TrainResult]:
    have = wait_for_executors(sc, nodes)
    if have < nodes:
        raise RuntimeError(
            f"Spark gave {have} executors but {nodes} TF nodes were asked for (one per executor); "
            "lower --cluster-size or give Spark more executors (--num-executors, spark.cores.max)"
            + missing_workers(sc, master.url)
        )
    check_executor_hosts(sc, address, master.url)
    if cfg.input_mode == "spark":
        to_train = [cfg.epochs - state.epochs_done for state in states.values()
                    if not state.finished and not state.reexport]
        inputs = spark_mode_inputs(sc, cfg, data, nodes, min(to_train, default=1))
    else:
        inputs = tensorflow_mode_inputs(sc, cfg, data, nodes)
    try:
        results = {}
        for run in runs:
            if len(runs) > 1:
                print(f"=== variant {run.variant} ===", flush=True)
            results[run.variant] = _train(sc, run, states[run.variant], master, nodes, address, inputs)
        return results
    finally:
        inputs.release()


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
    for line in prepare_model_dir(cfg, state):  # every check has passed: only now is anything deleted
        print(line, flush=True)
    if state.message:
        print(state.message, flush=True)
    _log_counts(inputs.summary)
    if state.reexport:
        reexport(cfg, state.history, state.stopped_early, inputs.node_args, inputs.summary, nodes,
                 uuid.uuid4().hex[:12])
        return _exported(cfg, {}, inputs)
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
    write_json(storage.join(cfg.model_dir, NODES_FILE), dict(events.state.done))
    _warn_short_feeds(events.state.done)
    return _exported(cfg, dict(events.state.done), inputs)


def _exported(cfg: TrainConfig, records: dict[str, Any], inputs: ModeInputs) -> TrainResult:
    result = _result(cfg, records)  # reads metrics.json once, for the line below too
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
    for line in prepare_model_dir(cfg, state):  # the leftovers of interrupted runs only
        print(line, flush=True)
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
