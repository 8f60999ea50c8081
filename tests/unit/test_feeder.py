"""The SPARK-mode feeding task (tfos_compat.partition_feeder) against a real TFoS manager, no Spark."""

from __future__ import annotations

import sys
import threading

import pytest

from tfos_facecnn.tfos_compat import partition_feeder

pytestmark = pytest.mark.timeout(60)
# The feeder's join thread outlives the manager in tests that end before the node takes the item.
LEFT_JOIN_THREAD = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


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


def test_feeds_every_item_and_returns_once_the_node_took_them(node):
    manager, info = node
    taken: list = []
    consumer = consume(manager.get_queue("input"), taken, 5)
    assert partition_feeder(info, {"server_addr": None})(iter(range(5))) == [False]
    consumer.join(5)
    assert taken == [0, 1, 2, 3, 4]


def test_feeder_module_does_not_import_tensorflow():
    import subprocess

    code = ("import sys; from tfos_facecnn.tfos_compat import partition_feeder, _node_manager; "
            "from tensorflowonspark import TFManager, util; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_a_terminating_node_gets_nothing_more(node):
    manager, info = node
    manager.set("state", "terminating")
    assert partition_feeder(info, {"server_addr": None})(iter(range(3))) == [True]
    assert manager.get_queue("input").empty()


@LEFT_JOIN_THREAD
def test_a_failed_node_fails_the_feeding_task_with_its_error(node):
    manager, info = node
    manager.get_queue("error").put("Traceback: ValueError: boom")
    with pytest.raises(RuntimeError, match="TF node on this executor failed:\n.*boom"):
        partition_feeder(info, {"server_addr": None})(iter([1]))


@LEFT_JOIN_THREAD
def test_a_stuck_node_times_out_naming_the_setting(node):
    _, info = node
    with pytest.raises(RuntimeError, match=r"feed_timeout \(0.3 s\)"):
        partition_feeder(info, {"server_addr": None}, feed_timeout=0.3)(iter([1]))


def test_an_executor_without_a_node_is_named(node, monkeypatch):
    from tensorflowonspark import util

    _, info = node
    monkeypatch.setattr(util, "get_ip_address", lambda: "127.0.0.2")
    with pytest.raises(RuntimeError, match="no TF node on this executor"):
        partition_feeder(info, {"server_addr": None})(iter([1]))
