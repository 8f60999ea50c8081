"""The SPARK-mode feeding task (tfos_compat.partition_feeder) against a real TFoS manager, no Spark."""

from __future__ import annotations

import sys
import threading

import pytest

from tfos_facecnn.tfos_compat import MAX_QUEUED_ITEMS, partition_feeder, pinned_address

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A TFoS manager with its queues, registered for this 'executor' (executor_id file, host)."""
    from tensorflowonspark import TFManager, util

    monkeypatch.chdir(tmp_path)
    (tmp_path / "executor_id").write_text("0")
    monkeypatch.setattr(util, "get_ip_address", lambda: "127.0.0.1")
    authkey = b"test-key-0123456"
    manager = TFManager.start(authkey, ["input", "output", "error", "control"], mode="local")
    manager.set("state", "running")
    info = [{"host": "127.0.0.1", "executor_id": 0, "addr": manager.address, "authkey": authkey}]
    yield manager, info
    manager.shutdown()


def consume(queue, taken: list, count: int) -> threading.Thread:
    def run():
        for _ in range(count):
            taken.append(queue.get())
            queue.task_done()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_feeds_every_item_in_order_holding_back_while_the_queue_is_full(node):
    manager, info = node
    items = MAX_QUEUED_ITEMS * 3
    taken: list = []
    consumer = consume(manager.get_queue("input"), taken, items)
    assert partition_feeder(info, {"server_addr": None})(iter(range(items))) == [False]
    consumer.join(10)
    assert taken == list(range(items))


def test_a_task_ends_once_its_items_are_queued_without_waiting_for_the_node(node):
    manager, info = node
    assert partition_feeder(info, {"server_addr": None})(iter(range(3))) == [False]
    assert manager.get_queue("input").qsize() == 3


def test_feeder_module_does_not_import_tensorflow():
    import subprocess

    code = ("import sys; from tfos_facecnn.tfos_compat import partition_feeder, _node_manager; "
            "from tensorflowonspark import TFManager, util; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.fixture
def reservation_server():
    """The driver's TFoS reservation server, on loopback: a terminating node's feeder asks it to stop."""
    from tensorflowonspark import reservation

    with pinned_address("127.0.0.1"):
        server = reservation.Server(1)
        address = server.start()
    yield server, {"server_addr": address}
    server.stop()


def test_a_terminating_node_gets_nothing_more_and_the_driver_is_asked_to_stop(node, reservation_server):
    manager, info = node
    server, meta = reservation_server
    manager.set("state", "terminating")
    assert partition_feeder(info, meta)(iter(range(3))) == [True]
    assert manager.get_queue("input").empty()
    assert server.done


def test_a_node_that_terminates_mid_partition_stops_the_feeder(node, reservation_server):
    manager, info = node
    server, meta = reservation_server
    timer = threading.Timer(0.2, manager.set, ("state", "terminating"))
    timer.start()
    assert partition_feeder(info, meta, feed_timeout=30)(iter(range(MAX_QUEUED_ITEMS + 5))) == [True]
    assert manager.get_queue("input").qsize() == MAX_QUEUED_ITEMS
    assert server.done


def test_a_waiting_feeder_asks_for_the_node_state_far_less_often_than_it_polls_the_queue(node, monkeypatch):
    import time

    from tfos_facecnn import tfos_compat

    manager, info = node
    checks: list[float] = []
    real_terminating = tfos_compat._terminating

    def counting(mgr) -> bool:
        checks.append(time.monotonic())
        return real_terminating(mgr)

    monkeypatch.setattr(tfos_compat, "_terminating", counting)
    queue = manager.get_queue("input")
    for item in range(MAX_QUEUED_ITEMS):
        queue.put(item)
    taken: list = []
    timer = threading.Timer(1.5, lambda: (taken.append(queue.get()), queue.task_done()))
    started = time.monotonic()
    timer.start()
    assert partition_feeder(info, {"server_addr": None}, feed_timeout=30)(iter(["last"])) == [False]
    waited = time.monotonic() - started
    assert taken == [0]
    assert waited >= 1.5
    # one check as the task starts and one as it ends; while waiting, one per TERMINATION_CHECK_S
    # (the queue itself is polled every FEED_POLL_S: ~15 times here)
    assert len(checks) <= 3 + waited / tfos_compat.TERMINATION_CHECK_S


def test_a_failed_node_fails_the_feeding_task_with_its_error(node):
    manager, info = node
    manager.get_queue("error").put("Traceback: ValueError: boom")
    with pytest.raises(RuntimeError, match="TF node on this executor failed:\n.*boom"):
        partition_feeder(info, {"server_addr": None})(iter([1]))


def test_a_stuck_node_times_out_naming_the_setting(node):
    _, info = node
    with pytest.raises(RuntimeError, match=r"feed_timeout \(0.3 s\)"):
        partition_feeder(info, {"server_addr": None}, feed_timeout=0.3)(iter(range(MAX_QUEUED_ITEMS + 1)))


def test_an_executor_without_a_node_is_named(node, monkeypatch):
    from tensorflowonspark import util

    _, info = node
    monkeypatch.setattr(util, "get_ip_address", lambda: "127.0.0.2")
    with pytest.raises(RuntimeError, match="no TF node on this executor"):
        partition_feeder(info, {"server_addr": None})(iter([1]))


def test_a_node_start_forgets_the_dead_manager_of_an_earlier_cluster(node):
    from tensorflowonspark.TFSparkNode import TFSparkNode as worker_state

    from tfos_facecnn.tfos_compat import _forgetting_dead_manager

    manager, info = node
    dead = type(manager)(manager.address, authkey=b"test-key-0123456")
    dead.connect()
    manager.shutdown()  # its server process is gone, as when its Python worker was stopped
    worker_state.mgr = dead
    try:
        assert _forgetting_dead_manager(lambda iterator: list(iterator))(iter([1, 2])) == [1, 2]
        assert worker_state.mgr is None
    finally:
        worker_state.mgr = None
