"""Keeps TensorFlowOnSpark 2.2.5 on the address we choose, and feeds its queues without its delays.

TFoS picks a node's address by routing toward a public address and binds its reservation server on
all interfaces. Its reservation server is replaced by signed_reservation's (signed messages only,
bound to the driver's address: Spark's spark.driver.bindAddress/host, or the pinned address). For
local masters (and whenever --bind-address is set) we pin the address: the driver's reservation
server binds to it, and every executor-side TFoS function reports it as the node's host, so the TF
cluster spec (TF_CONFIG) and all TFoS traffic use it. Worker-node TFoS managers already listen on a
Unix socket with a random 16-byte authkey.

InputMode.SPARK's feeding task is ours (`partition_feeder`): TFoS's own imports TensorFlow in every
feeding Python worker (2-3 s and ~400 MB each, for nothing: it only moves pickled items) and ends a
task only once its node's queue is empty, checked once a second, so every partition boundary leaves
the node waiting for Spark to start the next task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import EventsEndpoint

logger = logging.getLogger("tfos_facecnn.feed")
FEED_POLL_S = 0.1  # how often a feeding task looks for room in its node's queue (8 chunks last ~2 s)
# How often a waiting feeding task asks whether its node is terminating. The queue-size poll reuses one
# connection (~0.02 ms); TFoS's state lookup builds a proxy: four new authenticated connections, ~1.8 ms
# of CPU between feeder and manager. Every poll paid it: ~4% of a core on a 2-executor machine.
TERMINATION_CHECK_S = 1.0
# Queue items (chunks of images) a node may have waiting: enough to bridge the start of the next
# feeding task, few enough that an executor never piles an epoch into the TFoS manager's memory.
MAX_QUEUED_ITEMS = 8


def pin_executor_address(address: str) -> None:
    """Runs inside an executor's Python worker before any TFoS code reads the node address."""
    from tensorflowonspark import util

    util.get_ip_address = lambda: address


def _pinned(mapfn: Callable, address: str) -> Callable:
    def run_on_address(iterator):
        from tfos_facecnn.tfos_compat import pin_executor_address as pin

        pin(address)
        return mapfn(iterator)

    return run_on_address


def _node_manager(cluster_info: list[dict[str, Any]]):
    """This executor's TFoS manager (its queues), found as TFoS finds it: by host and executor id."""
    from tensorflowonspark import TFManager, util

    host, executor_id = util.get_ip_address(), util.read_executor_id()
    for node in cluster_info:
        if node["host"] == host and node["executor_id"] == executor_id:
            return TFManager.connect(node["addr"], node["authkey"])
    raise RuntimeError(
        f"no TF node on this executor ({host}, executor {executor_id}): Spark must give one executor per "
        "TF node, with dynamic allocation off and one task per executor at a time"
    )


def partition_feeder(cluster_info: list[dict[str, Any]], cluster_meta: dict[str, Any], feed_timeout: float = 600,
                     qname: str = "input") -> Callable:
    """TFoS's TFSparkNode.train with the same protocol (queue items, skip once the node terminates, ask
    the driver to stop), but a task ends as soon as its items are queued: it waits only for room below
    MAX_QUEUED_ITEMS, so the next task's items arrive while the node still has queued work. TFoS instead
    waits until the queue is empty (every feeder of the executor at once), and the node idles while
    Spark starts the next tasks."""

    def feed(iterator: Iterable) -> list[bool]:
        manager = _node_manager(cluster_info)
        queue, errors = manager.get_queue(qname), manager.get_queue("error")
        terminating = _terminating(manager)
        count = 0
        for item in iterator:
            if terminating or not _wait_for_room(manager, queue, errors, feed_timeout):
                terminating = True
                break
            queue.put(item, block=True)
            count += 1
        skipped = sum(1 for _ in iterator)
        logger.info("fed %d items%s", count, f", skipped {skipped} (node terminating)" if skipped else "")
        terminating = terminating or _terminating(manager)
        if terminating:
            _request_stop(cluster_meta["server_addr"])
        return [terminating]

    return feed


def _terminating(manager) -> bool:
    return str(manager.get("state")) == "'terminating'"


def _wait_for_room(manager, queue, errors, feed_timeout: float) -> bool:
    """Polls until the node's queue holds fewer than MAX_QUEUED_ITEMS; False once the node terminates.
    Raises when the node failed, or when it took nothing for feed_timeout seconds."""
    deadline, last = time.monotonic() + feed_timeout, None
    next_state_check = time.monotonic()
    while True:
        if not errors.empty():
            raise RuntimeError(f"the TF node on this executor failed:\n{errors.get()}")
        size = queue.qsize()
        if size < MAX_QUEUED_ITEMS:
            return True
        if time.monotonic() >= next_state_check:
            if _terminating(manager):
                return False
            next_state_check = time.monotonic() + TERMINATION_CHECK_S
        if last is None or size < last:
            deadline, last = time.monotonic() + feed_timeout, size
        elif time.monotonic() > deadline:
            raise RuntimeError(f"the TF node took no data for feed_timeout ({feed_timeout} s); raise "
                               "feed_timeout in the config if its steps are that slow")
        time.sleep(FEED_POLL_S)  # polls the queue's size: the condition itself, under a deadline


def _request_stop(server_addr) -> None:
    from tensorflowonspark import reservation

    try:
        client = reservation.Client(server_addr)
        client.request_stop()
        client.close()
    except OSError as e:  # the driver may be shutting the reservation server down already
        logger.info("could not ask the driver to stop feeding: %s", e)


def _forgetting_dead_manager(mapfn: Callable) -> Callable:
    """TFoS refuses to start a node in a Python worker that still references a manager not 'stopped',
    and crashes (FileNotFoundError) when that manager's process is gone: a worker reused from an
    earlier cluster of the same job (`--variant all`) whose manager died with the worker that ran it."""

    def start_node(iterator):
        from tensorflowonspark.TFSparkNode import TFSparkNode as worker_state  # TFoS's per-worker class

        if worker_state.mgr is not None:
            try:
                worker_state.mgr.get("state")
            except (OSError, EOFError):
                worker_state.mgr = None
        return mapfn(iterator)

    return start_node


# TFoS logs each node's reservation at INFO, its manager's authkey included (on local masters that is
# the driver's console): the authkey lets whoever reads it drive the node's queues.
_AUTHKEY = re.compile(r"""'authkey': b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
TFOS_LOGGERS = ("tensorflowonspark.TFSparkNode", "tensorflowonspark.TFCluster", "tensorflowonspark.TFNode",
                "tensorflowonspark.reservation", "tensorflowonspark.util")


class RedactAuthkeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "'authkey'" in message:
            record.msg, record.args = _AUTHKEY.sub("'authkey': <redacted>", message), ()
        return True


def redact_tfos_logs() -> None:
    """Keeps TFoS's loggers in this process from printing authkeys (idempotent)."""
    for name in TFOS_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactAuthkeys) for f in target.filters):
            target.addFilter(RedactAuthkeys())


def _signing(mapfn: Callable, key: bytes) -> Callable:
    """Executor side: this Python worker signs and checks its reservation messages with the cluster's
    key, and TFoS's logs in it print no authkey."""

    def run_signed(iterator):
        from tfos_facecnn.signed_reservation import install
        from tfos_facecnn.tfos_compat import redact_tfos_logs

        install(key)
        redact_tfos_logs()
        return mapfn(iterator)

    return run_signed


def driver_addresses() -> tuple[str, str]:
    """(bind, advertised) for the driver's servers: TFOS_SERVER_HOST when the job pinned an address
    (pinned_address), else Spark's own choice for the driver (spark.driver.bindAddress / host)."""
    from pyspark import SparkContext
    from tensorflowonspark import reservation

    pinned = os.environ.get(reservation.TFOS_SERVER_HOST)
    if pinned:
        return pinned, pinned
    conf = SparkContext._active_spark_context.getConf()
    host = conf.get("spark.driver.host")
    return conf.get("spark.driver.bindAddress", host), host


def _captured(mapfn: Callable, endpoint: EventsEndpoint | None, echo: bool,
              prepare: Callable[[], None] | None = None) -> Callable:
    """Executor side: the task's output (TFoS's INFO lines, TF's start-up lines when TFoS imports it,
    warnings) goes to the driver's log of this executor (logs.py) instead of the worker's stderr. The
    task's function travels pickled inside this one: unpickling TFoS's functions imports TFoS and with it
    TensorFlow, whose start-up lines must come out inside the capture, not while Spark loads the task.
    `prepare` runs first, inside the capture (tfos_shutdown.py: TensorFlow deferred or imported now)."""
    from pyspark import cloudpickle

    payload = cloudpickle.dumps(mapfn)

    def run_captured(iterator):
        import logging
        import pickle

        from tfos_facecnn.logs import captured, executor_role

        with captured(endpoint, executor_role(), echo):
            logging.captureWarnings(True)
            if prepare is not None:
                prepare()
            result = pickle.loads(payload)(iterator)
            return list(result) if result is not None else None  # run it all inside the capture

    return run_captured


@contextlib.contextmanager
def own_executor_functions(endpoint: EventsEndpoint | None = None, echo: bool = False) -> Iterator[None]:
    """While the block runs (driver side), TFCluster's reservation server is signed_reservation's
    (signed messages, bound to the driver's address, one thread per client) under a key made for this
    cluster; TFCluster feeds with partition_feeder and starts nodes in workers that forget a dead
    manager of an earlier cluster, both signing their reservation messages with that key. The output of
    every executor-side task goes to the driver over `endpoint` (None: to the executor's stderr)."""
    import secrets

    from tensorflowonspark import TFSparkNode, reservation

    from .signed_reservation import install, server_class
    from .tfos_shutdown import defer_tensorflow_import, import_tensorflow

    key = secrets.token_bytes(32)
    original_train, original_run = TFSparkNode.train, TFSparkNode.run
    original_shutdown = TFSparkNode.shutdown
    original_server = reservation.Server
    original_io = reservation.MessageSocket.send, reservation.MessageSocket.receive
    TFSparkNode.train = lambda *args, **kwargs: _captured(
        _signing(partition_feeder(*args, **kwargs), key), endpoint, echo)
    TFSparkNode.run = lambda *args, **kwargs: _captured(
        _signing(_forgetting_dead_manager(original_run(*args, **kwargs)), key), endpoint, echo,
        prepare=import_tensorflow)
    TFSparkNode.shutdown = lambda *args, **kwargs: _captured(original_shutdown(*args, **kwargs), endpoint, echo,
                                                             prepare=defer_tensorflow_import)
    reservation.Server = server_class(driver_addresses, key)
    install(key)
    redact_tfos_logs()
    try:
        yield
    finally:
        TFSparkNode.train, TFSparkNode.run = original_train, original_run
        TFSparkNode.shutdown = original_shutdown
        reservation.Server = original_server
        reservation.MessageSocket.send, reservation.MessageSocket.receive = original_io


@contextlib.contextmanager
def pinned_address(address: str | None) -> Iterator[None]:
    """Patches TFoS in this (driver) process for the block; address None leaves TFoS as it is."""
    if address is None:
        yield
        return
    from tensorflowonspark import TFSparkNode, reservation

    originals = {name: getattr(TFSparkNode, name) for name in ("run", "train", "inference", "shutdown")}
    original_env = os.environ.get(reservation.TFOS_SERVER_HOST)

    def wrap(name: str) -> Callable:
        original = originals[name]
        return lambda *args, **kwargs: _pinned(original(*args, **kwargs), address)

    try:
        for name in originals:
            setattr(TFSparkNode, name, wrap(name))
        os.environ[reservation.TFOS_SERVER_HOST] = address
        yield
    finally:
        for name, original in originals.items():
            setattr(TFSparkNode, name, original)
        if original_env is None:
            os.environ.pop(reservation.TFOS_SERVER_HOST, None)
        else:
            os.environ[reservation.TFOS_SERVER_HOST] = original_env
