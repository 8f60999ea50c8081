"""The TFoS adapter: main_fun(args, ctx) runs once per TF node on an executor.

It sets up TF (threads, MultiWorkerMirroredStrategy), asks the pure core for the model and the
pipelines, trains, and has the chief export. Every node reports to the driver (events.py): its start,
each epoch (chief), its completion, or its failure with the last log lines.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import socket
import tempfile
import traceback
from typing import Any

from .events import EventClient
from .node_callbacks import PROGRESS_FILE, Heartbeat, epoch_progress, inject_fault, mirror_pusher
from .resume import BACKUP_DIR, BEST_DIR

logger = logging.getLogger("tfos_facecnn.node")
LOG_TAIL_LINES = 40  # how much of a failed node's log travels with its error to the driver


class _TailHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def main_fun(args: dict[str, Any], ctx) -> None:
    """TFoS entry point. `args` is a plain dict built by the driver (see driver.node_args)."""
    node = f"{ctx.job_name}:{ctx.task_index}"
    reporter = EventClient(args["events_address"], args["events_token"], node)
    tail = _TailHandler()
    root = logging.getLogger()
    root.addHandler(tail)
    root.setLevel(logging.INFO)
    status = {"phase": "setup", "batches": 0}
    heartbeat = Heartbeat(reporter, args["node_timeout"], status)
    try:
        reporter.send("started", host=socket.gethostname(), pid=os.getpid(), executor_id=ctx.executor_id,
                      tf_address=ctx.cluster_spec[ctx.job_name][ctx.task_index],
                      spark_executor=spark_executor_id(), log_url=os.environ.get("SPARK_LOG_URL_STDERR"))
        heartbeat.start()
        record = _train_node(args, ctx, reporter, status)
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


def spark_executor_id() -> str | None:
    """The id of the Spark executor running this node, for the driver to match Spark's executor losses
    to TF nodes: from the executor's log URL (standalone), SPARK_EXECUTOR_ID (Kubernetes), or the
    executor JVM's `--executor-id` a few processes up (YARN and standalone on Linux)."""
    found = re.search(r"[?&]executorId=([^&]+)", os.environ.get("SPARK_LOG_URL_STDERR", ""))
    if found:
        return found.group(1)
    if os.environ.get("SPARK_EXECUTOR_ID"):
        return os.environ["SPARK_EXECUTOR_ID"]
    pid = os.getppid()
    for _ in range(4):  # TF process (SPARK mode) -> Python worker -> pyspark.daemon -> executor JVM
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError) as e:
            logger.info("no Spark executor id for this node (%s)", e)
            return None
        if b"--executor-id" in argv[:-1]:
            return argv[argv.index(b"--executor-id") + 1].decode(errors="replace")
        if parent <= 1:
            return None
        pid = parent
    return None


def _configure_tf(threads: int):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import tensorflow as tf

    if threads > 0:
        # One TF node per executor: TF's pools match the executor's cores instead of the machine's.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def _train_node(args: dict[str, Any], ctx, reporter: EventClient, status: dict[str, Any]) -> dict[str, Any]:
    from . import storage
    from .config import TrainConfig, resolve_config
    from .storage.mirror import LocalMirror

    cfg: TrainConfig = resolve_config(args["config"], {})
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
        return _fit_and_export(args, cfg, ctx, reporter, status, backup, board, best)
    finally:
        backup.cleanup()
        best.cleanup()
        board.cleanup()


def _fit_and_export(args: dict[str, Any], cfg, ctx, reporter: EventClient, status: dict[str, Any], backup, board,
                    best):
    from . import storage
    from .best_epoch import best_epoch_keeper
    from .export import MODEL_FILE, publish, staging_dir, write_json
    from .metrics import classification_metrics
    from .model import build_from_config, inference_copy
    from .node_inputs import spark_inputs, tensorflow_inputs
    from .storage.mirror import LocalMirror

    tf = _configure_tf(args["threads"])
    num_workers, index = ctx.num_workers, _worker_index(ctx)
    is_chief = ctx.job_name == "chief"
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=cfg.collective_timeout)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    status["phase"] = "ready"  # this node's TF server listens now: the driver may probe it (blame.py)
    per_replica = cfg.batch_size // strategy.num_replicas_in_sync
    logger.info("node %s:%d of %d workers, per-replica batch %d",
                ctx.job_name, ctx.task_index, num_workers, per_replica)

    if args["input_mode"] == "spark":
        inputs = spark_inputs(args, cfg, ctx, strategy, per_replica, index, num_workers)
    else:  # starts fetching shards from storage now, while the model is built
        inputs = tensorflow_inputs(args, cfg, strategy, per_replica, index, num_workers, is_chief)
    try:
        with strategy.scope():
            model = build_from_config(cfg, training=True)

        node = f"{ctx.job_name}:{ctx.task_index}"
        progress = epoch_progress(reporter, node, is_chief, cfg.epochs, args["steps_per_epoch"] * cfg.batch_size,
                                  storage.join(cfg.model_dir, PROGRESS_FILE), args["fingerprint"], args["history"],
                                  status)
        keeper = best_epoch_keeper(cfg.keep_best_epoch, cfg.patience, args["history"], best, is_chief)
        # TensorBoard logs: the chief's go to MODEL_DIR/tensorboard; the others' to a temporary dir, since
        # every worker must run the same callbacks under MultiWorkerMirroredStrategy.
        callbacks = [
            # Saves the training state every epoch (all workers; built for MultiWorkerMirroredStrategy) and
            # restores it when the same command runs again after a crash. Listed first: the chief uploads
            # it next, and `progress` records an epoch as done only after its state is saved.
            tf.keras.callbacks.BackupAndRestore(backup.local, save_freq="epoch"),
            mirror_pusher(backup if is_chief else None),
            # Before `progress`: an epoch recorded as done has its weights kept if it was the best so far.
            keeper,
            progress,
            tf.keras.callbacks.TensorBoard(board.local, update_freq="epoch", profile_batch=0),
            mirror_pusher(board if is_chief else None),
        ]
        history = model.fit(
            inputs.train,
            epochs=cfg.epochs,
            steps_per_epoch=args["steps_per_epoch"],
            validation_data=inputs.val,
            validation_steps=inputs.val_steps,
            callbacks=callbacks,
            verbose=0,
        )
        inputs.finish()
        expected, ran = cfg.epochs - len(args["history"]), len(history.history.get("loss", []))
        stopped_early = keeper.stopped_epoch > 0
        if stopped_early and is_chief:
            progress.mark_stopped_early()
        if ran < expected and not stopped_early:
            # Keras stops early, with only a warning, when its input runs dry; a peer would then wait on us.
            raise RuntimeError(f"training stopped after {ran} of {expected} epochs: the input ran out of data")

        # Every worker saves (tf-keras runs collectives in save); only the chief keeps its copy.
        final = LocalMirror(storage.join(cfg.model_dir, "final") if is_chief
                            else tempfile.mkdtemp(prefix="facecnn-"), "final")
        try:
            os.makedirs(final.local, exist_ok=True)
            inject_fault(node, "save")
            model.save(os.path.join(final.local, "training_model.keras"))
            if is_chief:
                final.push()
        finally:
            final.cleanup()
        record = {
            "job_name": ctx.job_name,
            "task_index": ctx.task_index,
            "executor_id": ctx.executor_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "tf_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            **inputs.record,
            "steps_per_epoch": args["steps_per_epoch"],
            "per_replica_batch": per_replica,
            "epochs_run": ran,
            "chosen_epoch": keeper.chosen_epoch(len(args["history"]) + ran),
            "stopped_early": stopped_early,
        }
        if not is_chief:
            return record

        run_id = args["run_id"]
        staging = LocalMirror(staging_dir(cfg.export_dir, run_id), "export")
        try:
            os.makedirs(staging.local, exist_ok=True)
            exported = inference_copy(model, cfg)
            exported.save(os.path.join(staging.local, MODEL_FILE))
            history_rows = progress.rows
            names, labels, probabilities = inputs.test_predictions(exported)
            test_metrics = classification_metrics(labels, probabilities)
            metrics = {
                "test": test_metrics,
                "final_epoch": history_rows[-1] if history_rows else None,
                "chosen_epoch": _chosen(history_rows, record["chosen_epoch"], cfg.keep_best_epoch, stopped_early),
                "counts": args["data_summary"]["counts"],
                "skipped": len(args["data_summary"]["skipped"]),
                "cluster": {"num_workers": num_workers, "input_mode": args["input_mode"]},
            }
            write_json(os.path.join(staging.local, "history.json"), history_rows)
            write_json(os.path.join(staging.local, "metrics.json"), metrics)
            predictions = zip(names, labels, probabilities, strict=True)
            write_json(os.path.join(staging.local, "test_predictions.json"),
                       [{"path": p, "label": y, "p_face": float(q)} for p, y, q in predictions])
            write_json(os.path.join(staging.local, "data.json"), args["data_summary"])
            write_json(os.path.join(staging.local, "config.json"), cfg.public_dict())
            staging.push()  # into EXPORT_DIR.staging-RUNID on storage; published with _SUCCESS written last
            inject_fault(node, "export")
            publish(staging.target, cfg.export_dir, run_id)
        finally:
            staging.cleanup()
        record["export_dir"] = cfg.export_dir
        record["test_accuracy"] = test_metrics["accuracy"]
        return record
    finally:
        inputs.close()


def _chosen(rows: list[dict[str, Any]], epoch: int, keep_best: bool, stopped_early: bool) -> dict[str, Any]:
    """metrics.json's account of the exported weights: which epoch, by which rule, and its numbers."""
    row = next((r for r in rows if r.get("epoch") == epoch), {})
    rule = "lowest val_loss" if keep_best else "last epoch"
    return {"epoch": epoch, "rule": rule, "stopped_early": stopped_early, "epochs_run": len(rows),
            **{k: row[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in row}}


def _worker_index(ctx) -> int:
    """Chief is worker 0 of MultiWorkerMirroredStrategy; TFoS 'worker:i' nodes follow it."""
    return 0 if ctx.job_name == "chief" else ctx.task_index + 1


