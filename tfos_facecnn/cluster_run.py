"""One TFoS cluster from start to shutdown, watched: a node that fails or goes silent stops the job.

TFoS alone waits up to its feed timeout (10 min) for a dead node, and 3 days for shutdown; here the
driver hears every node's heartbeat (events.py). A node that reports a failure, or is not heard from
for `node_timeout`, cancels every Spark job at once and the job fails naming the node that was lost
first (blame.py: a dead node reports nothing, its peers' collectives do), then where to resume.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from typing import Any

from .blame import HEARTBEATS_STOPPED, explain, resume_hint
from .config import TrainConfig
from .errors import interrupt_behind
from .events import EventServer
from .logs import RunLogs, to_terminal
from .modes.base import NodePlan
from .node_callbacks import heartbeat_interval
from .spark_env import Cluster
from .tfos_shutdown import defer_tensorflow_import

WATCH_INTERVAL_S = 1.0  # how often the driver looks for silent nodes


class ConsoleProgress:
    """The driver's console line for each node event, and an estimate of the time left: the mean time
    between epoch lines (from epoch 2 on: epoch 1 also builds the model and traces the graph)."""

    def __init__(self) -> None:
        self._epoch_times: list[float] = []  # monotonic arrival time of each epoch line

    def __call__(self, event: dict[str, Any]) -> None:
        kind, node = event.get("kind"), event.get("node")
        if kind == "epoch":
            print(self._epoch_line(event), flush=True)
        elif kind == "phase":
            print(str(event.get("text")), flush=True)
        elif kind == "started":
            print(f"TF node {node} started on {event.get('host')} (pid {event.get('pid')}, "
                  f"TF server {event.get('tf_address')})", flush=True)
        elif kind == "failed" and event.get("lost"):
            to_terminal(f"TF node {node} LOST: {event.get('error')}")
        elif kind == "failed":
            to_terminal(f"TF node {node} FAILED: {event.get('error')}")

    def _epoch_line(self, event: dict[str, Any]) -> str:
        """`images/s` counts the epoch's training steps after its first (which traces the graph in epoch
        1): the rate training runs at. Lines end with the time left from the second epoch on."""
        self._epoch_times.append(time.monotonic())
        m = event["metrics"]
        steady = event.get("steady_images_per_s")
        rate = f"images/s={steady if steady is not None else event['images_per_s']:.1f}"
        first_step = event.get("first_step_s")
        if event["epoch"] == 1 and steady is not None and first_step is not None:
            rate += f" (after the first step, {first_step:.1f} s: building and tracing the graph)"
        line = (f"epoch {event['epoch']}/{event['epochs']} loss={m.get('loss', float('nan')):.4f} "
                f"accuracy={m.get('accuracy', float('nan')):.4f} val_loss={m.get('val_loss', float('nan')):.4f} "
                f"val_accuracy={m.get('val_accuracy', float('nan')):.4f} {rate}")
        remaining = int(event["epochs"]) - int(event["epoch"])
        if remaining > 0 and len(self._epoch_times) >= 2:  # epoch 1's tracing came before its line
            spans = [b - a for a, b in zip(self._epoch_times, self._epoch_times[1:], strict=False)]
            line += f" eta {_duration(remaining * sum(spans) / len(spans))}"
        return line


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Watchdog:
    """Declares a node failed when it has been silent, or alive but stuck, for `timeout_s`."""

    def __init__(self, events: EventServer, timeout_s: float) -> None:
        self.events = events
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tfos-facecnn-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            for node, silent, last_heard in self.events.silent_nodes(self.timeout_s):
                self.events.record_lost(node, HEARTBEATS_STOPPED,
                                        [f"no heartbeat for {silent:.0f} s, node_timeout {self.timeout_s:.0f} s"],
                                        last_heard=last_heard)
            for node, batches, still in self.events.stalled_nodes(self.timeout_s):
                self.events.record_failure(
                    node, f"no training progress for {still:.0f} s (node_timeout {self.timeout_s:.0f} s) after "
                    f"{batches} batches: a peer died or stopped, or its data feed ran dry")


def preload_tfos() -> threading.Thread:
    """Starts importing TFoS in the background: the driver needs it only after the SparkSession and the
    data checks, which mostly wait on the JVM. TFoS's modules import TensorFlow (its `compat`) for the
    functions its executors run, never for the driver's: the driver defers that import, which saved it
    5-6 s of CPU on a tiny job and took its peak RSS from 640 MB to 142 (the chief TF node writes the
    report, so only a re-export after a chief's crash imports TensorFlow on the driver)."""
    defer_tensorflow_import()
    thread = threading.Thread(target=importlib.import_module, args=("tensorflowonspark.TFCluster",),
                              name="tfos-facecnn-preload", daemon=True)
    thread.start()
    return thread


def run_cluster(sc, plan: NodePlan, cluster: Cluster, feed, events: EventServer, logs: RunLogs) -> None:
    """Starts the nodes, feeds them (SPARK mode: `feed` is the RDD to feed), shuts the cluster down, and
    waits for every node's 'done'; raises RuntimeError naming the lost or failed node first."""
    from tensorflowonspark import TFCluster

    from .node import main_fun
    from .tfos_compat import own_executor_functions, pinned_address
    from .tfos_shutdown import shutdown_cluster

    console = ConsoleProgress()

    def cancel_on_failure(event: dict[str, Any]) -> None:
        console(event)
        if event.get("kind") == "failed":
            sc.cancelAllJobs()

    cfg, nodes = plan.config, cluster.nodes
    events.on_event = cancel_on_failure
    TFCluster.tf_status.clear()  # TFoS keeps errors in a module global across runs
    try:
        with own_executor_functions(events.endpoint, plan.echo_output), pinned_address(cluster.address), \
                Watchdog(events, cfg.node_timeout):
            mode = TFCluster.InputMode.SPARK if plan.mode.feeds_from_spark else TFCluster.InputMode.TENSORFLOW
            tf_cluster = TFCluster.run(
                sc, main_fun, plan, nodes, num_ps=0, tensorboard=False, input_mode=mode, master_node="chief",
                reservation_timeout=cfg.reservation_timeout,
            )
            for node in tf_cluster.cluster_info:  # the TFoS managers' authkeys: never in a log
                logs.redact.add(node.get("authkey"))
            _hand_secrets_to_tests(events.token, [node.get("authkey") for node in tf_cluster.cluster_info])
            if feed is not None:
                tf_cluster.train(feed, num_epochs=1, feed_timeout=cfg.feed_timeout)  # feed: every epoch, in order
            shutdown_cluster(tf_cluster, cfg.finish_timeout)  # TFoS's own sleeps 5-10 s (tfos_shutdown.py)
            finished = events.wait_for(lambda s: len(s.done) >= nodes, cfg.finish_timeout)
    except (Exception, SystemExit) as e:  # TFoS calls sys.exit(1) when a node fails
        interrupt = interrupt_behind(e)
        if interrupt is not None:  # Ctrl-C or SIGTERM, and a Spark call failing as it unwound: not a node's failure
            raise interrupt from None
        raise node_failure(events, e, sc, cfg, nodes, logs, TFCluster.tf_status.get("error")) from e
    if not finished:
        raise node_failure(events, None, sc, cfg, nodes, logs, TFCluster.tf_status.get("error"))


SECRETS_FOR_TESTS_ENV = "TFOS_FACECNN_TEST_SECRETS_FILE"  # tests only: where a test learns this run's secrets


def _hand_secrets_to_tests(token: str, authkeys: list[Any]) -> None:
    """Tests only (set by the test that greps a run's console, logs and outputs for them): the event token
    and the TFoS authkeys of this run, appended to the named file. Whoever sets a driver's environment
    could read its memory as well."""
    path = os.environ.get(SECRETS_FOR_TESTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.writelines(f"{secret}\n" for secret in
                              [token, *(key.hex() for key in authkeys if isinstance(key, bytes))])


def node_failure(events: EventServer, cause: BaseException | None, sc, cfg: TrainConfig, nodes: int,
                 logs: RunLogs, tfos_error: str | None = None) -> RuntimeError:
    """The job's error: the lost node first (waiting, bounded, for the evidence), then the survivors'
    errors, the nodes' full logs, then where the same command resumes."""
    return explain(events, cause, sc, cfg, heartbeat_interval(cfg.node_timeout), lambda: resume_hint(cfg, nodes),
                   tfos_error, log_path=logs.path)
