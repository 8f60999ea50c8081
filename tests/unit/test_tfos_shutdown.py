"""tfos_shutdown.py without Spark: the cluster's end waits on real conditions (no fixed sleeps), names the
setting when it runs out of time, and TFoS's shutdown task can run without importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from tfos_facecnn import tfos_shutdown
from tfos_facecnn.tfos_shutdown import NodeErrorReported, shutdown_cluster, wait_until


class FakeSpark:
    """A SparkContext that reports active jobs for the first `busy_polls` looks, and records what ran."""

    def __init__(self, busy_polls: int) -> None:
        self.busy_polls = busy_polls
        self.calls: list[str] = []

    def statusTracker(self):  # noqa: N802 - Spark's name
        return self

    def getActiveJobsIds(self):  # noqa: N802
        self.calls.append("poll")
        if self.busy_polls > 0:
            self.busy_polls -= 1
            return [7]
        return []

    def parallelize(self, items, slices):
        self.calls.append(f"parallelize {list(items)} in {slices}")
        return SimpleNamespace(foreachPartition=lambda fn: self.calls.append(f"shutdown {fn}"))

    def cancelAllJobs(self):  # noqa: N802
        self.calls.append("cancel")


@pytest.fixture
def tfos(monkeypatch):
    """TFoS's TFCluster and TFSparkNode with a shutdown task that only says what it was given."""
    from tensorflowonspark import TFCluster, TFSparkNode

    monkeypatch.setattr(TFSparkNode, "shutdown", lambda info, grace, queues: f"task({len(info)} nodes, {queues})")
    monkeypatch.setattr(TFCluster, "tf_status", {})
    monkeypatch.setattr(tfos_shutdown, "POLL_S", 0.001)
    return TFCluster


def fake_cluster(tfos, mode, sc):
    server = SimpleNamespace(stopped=False)
    server.stop = lambda: setattr(server, "stopped", True)
    return SimpleNamespace(sc=sc, input_mode=mode, cluster_info=[{"node": 0}, {"node": 1}], queues=["input"],
                           server=server)


def test_tensorflow_mode_waits_for_the_nodes_tasks_then_stops_every_node_and_waits_for_the_last_job(tfos):
    sc = FakeSpark(busy_polls=3)
    cluster = fake_cluster(tfos, tfos.InputMode.TENSORFLOW, sc)
    started = time.monotonic()
    shutdown_cluster(cluster, timeout_s=30)
    assert time.monotonic() - started < 5  # TFoS's own slept 5 s at least twice
    assert sc.calls == ["poll"] * 4 + ["parallelize [0, 1] in 2", "shutdown task(2 nodes, ['input'])", "poll"]
    assert cluster.server.stopped


def test_spark_mode_stops_the_nodes_at_once(tfos):
    sc = FakeSpark(busy_polls=0)
    cluster = fake_cluster(tfos, tfos.InputMode.SPARK, sc)
    shutdown_cluster(cluster, timeout_s=30)
    assert sc.calls == ["parallelize [0, 1] in 2", "shutdown task(2 nodes, ['input'])", "poll"]


def test_a_node_error_cancels_the_jobs_and_is_raised_for_the_driver_to_explain(tfos):
    sc = FakeSpark(busy_polls=0)
    cluster = fake_cluster(tfos, tfos.InputMode.SPARK, sc)
    tfos.tf_status["error"] = "Exception in worker: boom"
    with pytest.raises(NodeErrorReported):
        shutdown_cluster(cluster, timeout_s=30)
    assert sc.calls[-1] == "cancel" and not cluster.server.stopped


def test_nodes_that_never_finish_fail_naming_the_setting(tfos):
    sc = FakeSpark(busy_polls=10**9)
    cluster = fake_cluster(tfos, tfos.InputMode.TENSORFLOW, sc)
    with pytest.raises(TimeoutError, match=r"did not finish within finish_timeout \(0 s\); raise finish_timeout "
                                           r"in the job's config file \(--config\)"):
        shutdown_cluster(cluster, timeout_s=0.05)
    assert "parallelize [0, 1] in 2" not in sc.calls


def test_wait_until_returns_at_once_when_the_condition_holds_and_polls_until_it_does():
    looks = iter([False, False, True])
    wait_until(lambda: next(looks), deadline=time.monotonic() + 5, what="never", poll_s=0.001)
    with pytest.raises(TimeoutError, match="^the thing$"):
        wait_until(lambda: False, deadline=time.monotonic() + 0.01, what="the thing", poll_s=0.001)


def test_tfos_shutdown_code_loads_without_tensorflow_until_compat_is_used():
    """In a fresh interpreter, as in a Spark Python worker: TFoS's shutdown task function imports, and
    TensorFlow only comes with the first use of TFoS's compat module."""
    script = (
        "import sys\n"
        "from tfos_facecnn.tfos_shutdown import defer_tensorflow_import\n"
        "defer_tensorflow_import()\n"
        "from tensorflowonspark import TFSparkNode\n"
        "TFSparkNode.shutdown([], 0, ['input'])\n"
        "print('before', 'tensorflow' in sys.modules)\n"
        "from tensorflowonspark import compat\n"
        "compat.is_gpu_available\n"
        "print('after', 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["before False", "after True"]
