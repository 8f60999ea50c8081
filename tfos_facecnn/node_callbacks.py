"""What runs beside training in a TF node: heartbeats, epoch progress + resume state, fault injection."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .events import EventClient

if TYPE_CHECKING:
    from .modes.base import NodeSetup

logger = logging.getLogger("tfos_facecnn.node")
# tests only: "NODE@epoch=K", "NODE@record=K" (epoch K saved, not recorded) or "NODE@export" raises there,
# "NODE@save:kill" kills the process; "NODE@starve"
FAULT_ENV = "TFOS_FACECNN_FAULT"
MAX_HEARTBEAT_S = 5.0  # a lost node's silence shows within a few of these (blame.py), whatever node_timeout is


def heartbeat_interval(timeout_s: float) -> float:
    """Seconds between a node's heartbeats for this node_timeout: a tenth of it, 1 to MAX_HEARTBEAT_S."""
    return min(max(1.0, timeout_s / 10), MAX_HEARTBEAT_S)


class Heartbeat:
    """Tells the driver every interval that this node lives. If the driver stays unreachable for
    `timeout_s`, the job is gone: the node exits rather than outlive it waiting on a collective."""

    def __init__(self, reporter: EventClient, timeout_s: float, status: dict[str, Any]) -> None:
        self.reporter = reporter
        self.status = status  # the node's batch count and phase, updated by the training callback
        self.timeout_s = timeout_s
        self.interval_s = heartbeat_interval(timeout_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tfos-facecnn-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self.reporter.last_success = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.reporter.send("heartbeat", **self.status):
                continue
            silent = time.monotonic() - self.reporter.last_success
            if silent > self.timeout_s:
                logger.error("the driver has been unreachable for %.0f s: ending this TF node", silent)
                os._exit(3)

    def stop(self) -> None:
        self._stop.set()


def inject_fault(node: str, stage: str) -> None:
    """Raises where the test-only environment variable says ('chief:0@epoch=2', 'chief:0@export'), or
    kills this process there without a word, like the OOM killer ('chief:0@save:kill')."""
    wanted = os.environ.get(FAULT_ENV, "")
    if wanted and wanted == f"{node}@{stage}":
        raise RuntimeError(f"fault injected at {stage} by {FAULT_ENV} (tests only)")
    if wanted and wanted == f"{node}@{stage}:kill":
        logger.error("killing this TF node's process at %s (%s, tests only)", stage, FAULT_ENV)
        os.kill(os.getpid(), signal.SIGKILL)


def starving(node: str) -> bool:
    """Tests only: 'NODE@starve' makes that node's feed end after its first chunk (a feed far
    shorter than its steps need, whichever executor Spark gives the feeding tasks to)."""
    return os.environ.get(FAULT_ENV, "") == f"{node}@starve"


def epoch_progress(reporter: EventClient, setup: NodeSetup, status: dict[str, Any],
                   history: Sequence[dict[str, Any]]):
    """A Keras callback: times each epoch's training steps; the chief sends the epoch's metrics to the
    driver and records the epochs done (after BackupAndRestore has saved them) for a resumed run; its
    `stager()`, listed before BackupAndRestore, records the epoch's row as being saved (progress.py).
    `history`: the rows of the epochs done before. Built on call so that importing this module never
    imports TF."""
    from .kerasenv import legacy_keras
    from .progress import Progress, fingerprint, write_progress

    cfg, node, is_chief = setup.plan.config, setup.node, setup.is_chief
    images_per_epoch = setup.plan.steps_per_epoch * cfg.batch_size
    run_fingerprint = fingerprint(cfg, setup.workers)

    class EpochProgress(legacy_keras().callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            # The batch hooks only count: Keras may pass them its logs as tensors, so it does not wait
            # for each step's result (a copy to numpy) before dispatching the next one.
            self._supports_tf_logs = True
            self.rows: list[dict[str, Any]] = list(history)
            self._staged: dict[str, Any] | None = None
            self._started = 0.0
            self._train_seconds: float | None = None

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()
            self._train_seconds = None
            self._first_step_done, self._steps = 0.0, 0

        # Batches done travel with the heartbeats: a live node whose count stops is stuck (a dead
        # peer's collective, a starved feed) and the driver's watchdog says so.
        def on_train_batch_end(self, batch, logs=None):
            status["phase"] = "train"
            status["batches"] += 1
            self._steps += 1
            if self._steps == 1:
                self._first_step_done = time.perf_counter()

        def on_test_batch_end(self, batch, logs=None):
            status["batches"] += 1

        def on_train_end(self, logs=None):
            status["phase"] = "export"

        def on_test_begin(self, logs=None):
            if self._train_seconds is None:  # validation starts: the training steps are over
                self._train_seconds = time.perf_counter() - self._started

        def _record(self, epochs_done: int, stopped_early: bool = False,
                    saving: dict[str, Any] | None = None) -> None:
            write_progress(cfg.model_dir, Progress(cfg.epochs, epochs_done, run_fingerprint, self.rows, stopped_early,
                                                   saving))

        def stager(self):
            progress = self

            class StageEpoch(legacy_keras().callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    progress._stage(epoch, logs)

            return StageEpoch()

        def _stage(self, epoch: int, logs: dict[str, Any] | None) -> None:
            self.rows = [r for r in self.rows if r["epoch"] <= epoch]
            self._staged = self._row(epoch, logs)
            if is_chief:
                self._record(epoch, saving=self._staged)

        def mark_stopped_early(self) -> None:
            """Early stopping ended the run: a later run of the same command finds it finished."""
            self._record(self.rows[-1]["epoch"] if self.rows else 0, stopped_early=True)

        def _row(self, epoch: int, logs: dict[str, Any] | None) -> dict[str, Any]:
            seconds = self._train_seconds or (time.perf_counter() - self._started)
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            row = {"epoch": epoch + 1, **metrics, "images_per_s": images_per_epoch / max(seconds, 1e-9)}
            if self._steps >= 2:  # the rate after the epoch's first step (which traces the graph in epoch 1)
                after_first = self._started + seconds - self._first_step_done
                row["steady_images_per_s"] = images_per_epoch * (self._steps - 1) / self._steps / max(after_first, 1e-9)
            return row

        def on_epoch_end(self, epoch, logs=None):
            inject_fault(node, f"record={epoch + 1}")  # the epoch's state is saved, not yet recorded as done
            # The stager ran first this epoch (on every worker): it made the row and dropped later rows.
            row, self._staged = self._staged, None
            self.rows.append(row)
            if is_chief:
                self._record(epoch + 1)
                metrics = {k: v for k, v in row.items() if k not in ("epoch", "images_per_s", "steady_images_per_s")}
                first_step = self._first_step_done - self._started if self._steps else None
                reporter.send("epoch", epoch=epoch + 1, epochs=cfg.epochs, metrics=metrics,
                              images_per_s=row["images_per_s"], steady_images_per_s=row.get("steady_images_per_s"),
                              first_step_s=first_step)
            inject_fault(node, f"epoch={epoch + 1}")

    return EpochProgress()


def mirror_pusher(mirror):
    """A Keras callback that uploads a LocalMirror after each epoch and at the end (None: does nothing,
    so that every worker runs the same callbacks)."""
    from .kerasenv import legacy_keras

    class MirrorPush(legacy_keras().callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if mirror is not None:
                mirror.push()

        def on_train_end(self, logs=None):
            if mirror is not None:
                mirror.push()

    return MirrorPush()
