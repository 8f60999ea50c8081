"""The TFoS adapter: main_fun(plan, ctx) runs once per TF node on an executor.

It sets up TF (threads, MultiWorkerMirroredStrategy), asks the pure core for the model and the
pipelines, trains, and has the chief export. Every node reports to the driver (events.py): its start,
each epoch (chief), its completion, or its failure with the last log lines.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import tempfile
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backup_epochs import resumed_history, saved_epochs
from .events import EventClient
from .logs import captured, spark_executor_id
from .node_callbacks import Heartbeat, epoch_progress, inject_fault, mirror_pusher
from .resume import BACKUP_DIR, BEST_DIR

if TYPE_CHECKING:
    from .modes.base import NodePlan, NodeSetup

logger = logging.getLogger("tfos_facecnn.node")
LOG_TAIL_LINES = 40  # how much of a failed node's log travels with its error to the driver


class _TailHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def main_fun(plan: NodePlan, ctx) -> None:
    """TFoS entry point: `plan` is what the driver decided for every node (modes.base.NodePlan). All the
    node's output (Python, TF's C++ logs) goes to the driver's MODEL_DIR/logs (logs.py)."""
    node = f"{ctx.job_name}:{ctx.task_index}"
    with captured(plan.events, node, echo=plan.echo_output):
        logging.captureWarnings(True)
        _run_node(plan, ctx, node)


def _run_node(plan: NodePlan, ctx, node: str) -> None:
    reporter = plan.events.client(node)
    tail = _TailHandler()
    root = logging.getLogger()
    root.addHandler(tail)
    root.setLevel(logging.INFO)
    status = {"phase": "setup", "batches": 0}
    heartbeat = Heartbeat(reporter, plan.config.node_timeout, status)
    try:
        reporter.send("started", host=socket.gethostname(), pid=os.getpid(), executor_id=ctx.executor_id,
                      tf_address=ctx.cluster_spec[ctx.job_name][ctx.task_index],
                      spark_executor=spark_executor_id(), log_url=os.environ.get("SPARK_LOG_URL_STDERR"))
        heartbeat.start()
        record = _train_node(plan, ctx, reporter, status)
        reporter.send("done", **record)
    except BaseException as e:
        logger.error("TF node %s failed: %s", node, e)
        reporter.send(
            "failed",
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
            log_tail=list(tail.lines),
        )
        raise
    finally:
        heartbeat.stop()
        root.removeHandler(tail)


def _configure_tf(threads: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TF's C++ INFO lines: not even in the node's log
    from .kerasenv import tensorflow

    tf = tensorflow()
    if threads > 0:
        # One TF node per executor: TF's pools match the executor's cores instead of the machine's.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def visible_gpus() -> list[str] | None:
    """The GPUs this node may use, as CUDA_VISIBLE_DEVICES lists them; None when unset (all of the host's).
    TFoS (TFSparkNode._get_gpus) sets it in the node's task before main_fun runs, so before TF is imported:
    to the addresses Spark gave the task (spark.task.resource.gpu.amount; distinct per executor on a host),
    else to GPUs it picks with nvidia-smi, else to "" (none)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return None if value is None else [address.strip() for address in value.split(",") if address.strip()]


def _train_node(plan: NodePlan, ctx, reporter: EventClient, status: dict[str, Any]) -> dict[str, Any]:
    from . import storage
    from .storage.mirror import LocalMirror

    cfg = plan.config
    storage.configure(cfg.storage)
    is_chief = ctx.job_name == "chief"
    # Keras writes checkpoints and TensorBoard logs through tf.io.gfile (no s3://, hdfs:// on TF 2.21):
    # they go to local folders mirrored to MODEL_DIR. Every node restores from the chief's backup.
    backup = LocalMirror(storage.join(cfg.model_dir, BACKUP_DIR), "backup")
    best = LocalMirror(storage.join(cfg.model_dir, BEST_DIR), "best")
    board = LocalMirror(storage.join(cfg.model_dir, "tensorboard") if is_chief
                        else tempfile.mkdtemp(prefix="facecnn-tb-"), "tensorboard")
    try:
        restored = backup.pull()
        if restored:
            logger.info("restored %d backup file(s) from %s", restored, backup.target)
            best.pull()
        return _fit_and_export(plan, ctx, reporter, status, Mirrors(backup, best, board))
    finally:
        backup.cleanup()
        best.cleanup()
        board.cleanup()


@dataclass(frozen=True)
class Mirrors:
    """Local folders Keras writes into, uploaded to MODEL_DIR (storage.mirror.LocalMirror)."""

    backup: Any  # BackupAndRestore's training state, every epoch
    best: Any  # the best epoch's weights so far (best_epoch.py)
    board: Any  # TensorBoard logs


def _fit_and_export(plan: NodePlan, ctx, reporter: EventClient, status: dict[str, Any], mirrors: Mirrors
                    ) -> dict[str, Any]:
    from .best_epoch import best_epoch_keeper
    from .modes.base import NodeSetup

    cfg = plan.config
    tf = _configure_tf(plan.threads)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=cfg.collective_timeout)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    status["phase"] = "ready"  # this node's TF server listens now: the driver may probe it (blame.py)
    setup = NodeSetup(plan, ctx, strategy, cfg.batch_size // strategy.num_replicas_in_sync, _worker_index(ctx),
                      ctx.num_workers)
    logger.info("node %s of %d workers, per-replica batch %d", setup.node, setup.workers, setup.per_replica_batch)

    # Keras resumes from what the backup holds: one epoch more than progress.json records if the last
    # attempt stopped between saving an epoch's state and recording it (backup_epochs.py).
    history = resumed_history(plan.history, plan.saving, saved_epochs(mirrors.backup.local), mirrors.backup.target)
    # TENSORFLOW mode starts fetching shards from storage now, while the model is built
    inputs = plan.mode.node_inputs(setup)
    try:
        from .model import build_from_config

        if setup.is_chief:
            if len(history) > len(plan.history):
                reporter.send("phase", text=f"the last run saved epoch {len(history)} as it stopped, before "
                              f"recording it: resuming at epoch {len(history) + 1} of {cfg.epochs}")
            reporter.send("phase", text=f"TF nodes ready: building the model and tracing its first step "
                          f"({setup.workers} node(s), per-node batch {setup.per_replica_batch})")
        with strategy.scope():
            model = build_from_config(cfg, training=True)
        progress = epoch_progress(reporter, setup, status, history)
        keeper = best_epoch_keeper(cfg.keep_best_epoch, cfg.patience, history, mirrors.best, setup.is_chief)
        # TensorBoard logs: the chief's go to MODEL_DIR/tensorboard; the others' to a temporary dir, since
        # every worker must run the same callbacks under MultiWorkerMirroredStrategy.
        callbacks = [
            # The chief writes the epoch's row into progress.json as `saving` before its state is saved.
            progress.stager(),
            # Saves the training state every epoch (all workers; built for MultiWorkerMirroredStrategy) and
            # restores it when the same command runs again after a crash. Listed first: the chief uploads
            # it next, and `progress` records an epoch as done only after its state is saved.
            tf.keras.callbacks.BackupAndRestore(mirrors.backup.local, save_freq="epoch"),
            mirror_pusher(mirrors.backup if setup.is_chief else None),
            # Before `progress`: an epoch recorded as done has its weights kept if it was the best so far.
            keeper,
            progress,
            tf.keras.callbacks.TensorBoard(mirrors.board.local, update_freq="epoch", profile_batch=0),
            mirror_pusher(mirrors.board if setup.is_chief else None),
        ]
        fitted = model.fit(
            inputs.train,
            epochs=cfg.epochs,
            steps_per_epoch=plan.steps_per_epoch,
            validation_data=inputs.val,
            validation_steps=inputs.val_steps,
            callbacks=callbacks,
            verbose=0,
        )
        inputs.finish()
        expected, ran = cfg.epochs - len(history), len(fitted.history.get("loss", []))
        stopped_early = keeper.stopped_epoch > 0
        if stopped_early and setup.is_chief:
            progress.mark_stopped_early()
        if ran < expected and not stopped_early:
            # Keras stops early, with only a warning, when its input runs dry; a peer would then wait on us.
            raise RuntimeError(f"training stopped after {ran} of {expected} epochs: the input ran out of data")
        _save_final(setup, model)
        record = {
            "job_name": ctx.job_name,
            "task_index": ctx.task_index,
            "executor_id": ctx.executor_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "tf_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "gpus": visible_gpus(),  # what Spark assigned this node's task (see visible_gpus)
            "tf_gpus": len(tf.config.list_physical_devices("GPU")),  # of those, what TF could open
            "replicas": strategy.num_replicas_in_sync,  # all nodes' GPUs (or one per CPU node)
            **inputs.record,
            "steps_per_epoch": plan.steps_per_epoch,
            "per_replica_batch": setup.per_replica_batch,
            "epochs_run": ran,
            "chosen_epoch": keeper.chosen_epoch(len(history) + ran),
            "stopped_early": stopped_early,
        }
        if setup.is_chief:
            exported, test_metrics = _export(setup, model, progress.rows, inputs, record["chosen_epoch"],
                                             stopped_early)
            record["export_dir"] = cfg.export_dir
            record["test_accuracy"] = test_metrics["accuracy"]
            if cfg.report:
                record["report"] = _report(setup, exported)
        return record
    finally:
        inputs.close()


def _save_final(setup: NodeSetup, model) -> None:
    """The trained model (augmentation and optimizer included) into MODEL_DIR/final: a re-export's source
    if the export fails. Every worker saves (tf-keras runs collectives in save); only the chief keeps it."""
    from . import storage
    from .export import FINAL_DIR, TRAINING_MODEL_FILE
    from .storage.mirror import LocalMirror

    cfg = setup.plan.config
    final = LocalMirror(storage.join(cfg.model_dir, FINAL_DIR) if setup.is_chief
                        else tempfile.mkdtemp(prefix="facecnn-"), "final")
    try:
        os.makedirs(final.local, exist_ok=True)
        inject_fault(setup.node, "save")
        model.save(os.path.join(final.local, TRAINING_MODEL_FILE))
        if setup.is_chief:
            final.push()
    finally:
        final.cleanup()


def _export(setup: NodeSetup, model, rows: list[dict[str, Any]], inputs, epoch: int, stopped_early: bool
            ) -> tuple[Any, dict[str, Any]]:
    """The chief's export: the inference model and its reports, staged and published with _SUCCESS last;
    returns the inference model and its test metrics. A failed export leaves its staging folder for the
    next run to remove (resume.stale_outputs)."""
    from .export import chosen_epoch, staged_output, write_export
    from .model import inference_copy
    from .storage.mirror import LocalMirror

    plan, cfg = setup.plan, setup.plan.config
    chosen = chosen_epoch(rows, epoch, cfg.keep_best_epoch, stopped_early)
    with staged_output(cfg.export_dir, plan.run_id, remove_on_error=False) as staging:
        folder = LocalMirror(staging, "export")  # Keras saves to local paths only
        try:
            os.makedirs(folder.local, exist_ok=True)
            exported = inference_copy(model, cfg)
            test_metrics = write_export(folder.local, exported, cfg, rows, chosen, inputs.test_predictions(exported),
                                        plan.data_summary, {"num_workers": setup.workers,
                                                            "input_mode": cfg.input_mode})
            folder.push()
        finally:
            folder.cleanup()
        inject_fault(setup.node, "export")  # tests: a crash once the export is uploaded, before it is published
    return exported, test_metrics


def _report(setup: NodeSetup, exported) -> str:
    """The training report (EXPORT_DIR/report), written here rather than on the driver: this process
    holds TensorFlow and the exported model already, so the driver never imports TF (4-5 s of its CPU
    and ~500 MB of its memory per run, then a load of the model). Returns the path of its report.md."""
    from .evaluation import training_report

    plan = setup.plan
    return training_report(plan.config.export_dir, plan.config, plan.data_summary, model=exported)


def _worker_index(ctx) -> int:
    """Chief is worker 0 of MultiWorkerMirroredStrategy; TFoS 'worker:i' nodes follow it."""
    return 0 if ctx.job_name == "chief" else ctx.task_index + 1


