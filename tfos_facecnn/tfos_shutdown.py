"""TFoS 2.2.5's TFCluster.shutdown, minus its sleeps, and TFoS's executor-side tasks minus TensorFlow.

TFoS ends a cluster by sleeping: in TENSORFLOW mode it checks Spark's active jobs every 5 s until the
nodes' tasks end, and after its shutdown job it sleeps 5 s before every check that all jobs have ended.
A tiny local run lost 5-10 s of its ~35 s asleep. Here the same conditions are polled every POLL_S
under one deadline (finish_timeout); TFoS's own time-out is a SIGALRM handler that stops Spark and
calls sys.exit, which this replaces with a TimeoutError naming the setting.

TFoS's executor-side module TFSparkNode imports TFNode, which imports TFoS's `compat`, which imports
TensorFlow: the Python worker that runs TFoS's shutdown task paid 3-4 s of CPU to import it, at the end
of every run, for a task that only puts None into queues. `defer_tensorflow_import` makes `compat` load
on first use instead.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

POLL_S = 0.1  # how often the driver looks at Spark's active jobs while a cluster ends (a py4j call: ~1 ms)
TFOS_COMPAT = "tensorflowonspark.compat"


class NodeErrorReported(RuntimeError):
    """A TF node put an error into its TFoS error queue; TFoS keeps its text in TFCluster.tf_status."""


def defer_tensorflow_import() -> None:
    """Before TFoS's modules are imported (on the driver, and in an executor's shutdown task): TFoS's
    `compat` (and TensorFlow with it) loads when one of its functions is first called, not on import
    (importlib's LazyLoader)."""
    if TFOS_COMPAT in sys.modules:
        return
    spec = importlib.util.find_spec(TFOS_COMPAT)
    if spec is None or spec.loader is None:
        return  # TFoS not installed here: its own import will say so
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[TFOS_COMPAT] = module
    spec.loader.exec_module(module)
    sys.modules["tensorflowonspark"].compat = module


def import_tensorflow() -> None:
    """Executor side, in TFoS's node start task: TensorFlow imported before TFoS forks the node, even in a
    worker whose earlier shutdown task deferred it. A fork while this worker's output thread (logs.py)
    imports a module of its own leaves that module's import lock held in the node: tried, one run in a
    few hung before the node's first line when the node imported TensorFlow itself."""
    from .kerasenv import tensorflow

    tensorflow()


def wait_until(condition: Callable[[], bool], deadline: float, what: str, poll_s: float = POLL_S) -> None:
    """Returns once condition() holds; TimeoutError saying `what` did not happen once the deadline passes."""
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(what)
        time.sleep(poll_s)


def shutdown_cluster(tf_cluster: Any, timeout_s: float) -> None:
    """TFCluster.shutdown(timeout=timeout_s) for a cluster without parameter servers or evaluators:
    waits for the nodes' tasks (TENSORFLOW mode), stops every node's queues with TFoS's shutdown task,
    raises NodeErrorReported if a node reported an error, and waits for every Spark job to end."""
    from tensorflowonspark import TFCluster, TFSparkNode

    sc = tf_cluster.sc
    deadline = time.monotonic() + timeout_s
    too_late = (f"the TF nodes did not finish within finish_timeout ({timeout_s:.0f} s); "
                "raise finish_timeout in the job's config file (--config) if they need longer")

    def no_active_jobs() -> bool:
        return not sc.statusTracker().getActiveJobsIds()

    if tf_cluster.input_mode == TFCluster.InputMode.TENSORFLOW:
        wait_until(no_active_jobs, deadline, too_late)  # the nodes train inside their start tasks
    workers = len(tf_cluster.cluster_info)
    # The shutdown tasks may block on a dead node's full queue: the deadline cancels them as TFoS's alarm did.
    guard = threading.Timer(max(0.0, deadline - time.monotonic()), sc.cancelAllJobs)
    guard.daemon = True
    guard.start()
    try:
        sc.parallelize(range(workers), workers).foreachPartition(
            TFSparkNode.shutdown(tf_cluster.cluster_info, 0, tf_cluster.queues))
    finally:
        guard.cancel()
    if "error" in TFCluster.tf_status:
        sc.cancelAllJobs()
        raise NodeErrorReported("a TF node reported an error (TFoS's error queue)")
    wait_until(no_active_jobs, deadline, too_late)
    tf_cluster.server.stop()
