"""Which node a failed job names (blame.py): the lost one first, the survivors' collective errors after it,
TFoS's executor_id message replaced, and every failure ending with where the same command resumes."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tfos_facecnn import blame
from tfos_facecnn.blame import EXECUTOR_EXITED, HEARTBEATS_STOPPED, PROCESS_EXITED, Lost
from tfos_facecnn.config import TrainConfig
from tfos_facecnn.events import EventClient, EventServer, NodeEvents
from tfos_facecnn.progress import fingerprint

pytestmark = pytest.mark.timeout(120)

COLLECTIVE = ("UnavailableError: {{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:chief/"
              "replica:0/task:0/device:CPU:0}} Collective ops is aborted by: recvmsg:Connection reset by peer\n"
              "Additional GRPC error information from remote target /job:worker/replica:0/task:0 while calling "
              "/tensorflow.WorkerService/RecvBuf:")
SPARK_EXECUTOR_LOST = (
    "Py4JJavaError: An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
    ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 29 in stage 5.0 failed 1 times, most "
    "recent failure: Lost task 29.0 in stage 5.0 (TID 50) (127.0.0.1 executor 1): ExecutorLostFailure (executor 1 "
    "exited caused by one of the running tasks) Reason: Command exited with code 137\nDriver stacktrace:\n")
TFOS_NO_EXECUTOR_ID = ("Exception: No executor_id file found on this node, please ensure that:\n"
                       "1. Spark num_executors matches TensorFlow cluster_size\n")


def config(tmp_path: Path, **changes) -> TrainConfig:
    return replace(TrainConfig(model_dir=str(tmp_path / "model"), export_dir=str(tmp_path / "export"), epochs=12,
                               image_size=48, batch_size=8, node_timeout=20), **changes)


def two_nodes(now: float, phase: str = "train") -> NodeEvents:
    state = NodeEvents()
    for node, executor, port in (("chief:0", "0", 1001), ("worker:0", "1", 1002)):
        state.started[node] = {"host": "h1" if node == "chief:0" else "h2", "tf_address": f"127.0.0.1:{port}",
                               "spark_executor": executor, "log_url": f"http://h/log?executorId={executor}"}
        state.last_seen[node] = now
        state.progress[node] = (10, phase, now)
    return state


def hint(tmp_path: Path):
    """explain's last line for the run of config(tmp_path) on one node."""
    return lambda: blame.resume_hint(config(tmp_path), 1)


def test_spark_texts_name_the_executor_and_its_loss():
    python_exit = ("Lost task 1.0 in stage 0.0 (TID 1) (10.0.0.7 executor 3): org.apache.spark.SparkException: "
                   "Python worker exited unexpectedly (crashed)\n")
    found = blame.spark_losses([SPARK_EXECUTOR_LOST, python_exit, "nothing here"])
    assert found["1"].startswith("ExecutorLostFailure (executor 1 exited")
    assert found["3"] == "org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)"


def test_collective_errors_are_consequences_and_own_errors_are_not():
    assert blame.is_consequence(COLLECTIVE)
    assert blame.is_consequence("no training progress for 21 s (node_timeout 20 s) after 70 batches")
    assert not blame.is_consequence("RuntimeError: fault injected at epoch=2 by TFOS_FACECNN_FAULT (tests only)")


def test_a_refused_tf_server_a_missing_executor_and_silence_each_mark_the_node_lost():
    now = time.monotonic()
    state = two_nodes(now)
    state.failures.append({"node": "chief:0", "error": COLLECTIVE})
    [lost] = blame.find_lost(state, now, 7.0, {"worker:0": "refused"}, {"0", "1"}, {})
    assert (lost.node, lost.host, lost.cause) == ("worker:0", "h2", PROCESS_EXITED)
    assert lost.evidence == ["its TF server 127.0.0.1:1002 refuses connections"]

    [lost] = blame.find_lost(state, now, 7.0, {"worker:0": "refused"}, {"0", "2"}, {})
    assert lost.cause == EXECUTOR_EXITED and "Spark no longer lists executor 1" in lost.evidence

    state.last_seen["worker:0"] = now - 30
    [lost] = blame.find_lost(state, now, 7.0, {"worker:0": "unknown"}, None, {})
    assert lost.cause == HEARTBEATS_STOPPED and lost.evidence == ["no heartbeat for 30 s"]


def test_a_node_that_answers_or_reported_its_own_error_is_not_lost():
    now = time.monotonic()
    state = two_nodes(now)
    state.last_seen["worker:0"] = now - 30  # late heartbeats (a busy machine), but its TF server answers
    assert blame.find_lost(state, now, 7.0, {"worker:0": "open", "chief:0": "open"}, {"0", "1"}, {}) == []
    state.failures.append({"node": "worker:0", "error": "RuntimeError: boom"})
    assert blame.find_lost(state, now, 7.0, {}, {"0"}, {}) == []  # it said what happened itself


def test_a_python_worker_exit_alone_proves_nothing_but_supports_other_evidence():
    now = time.monotonic()
    state = two_nodes(now)
    reason = {"1": "org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)"}
    assert blame.find_lost(state, now, 7.0, {"worker:0": "open"}, None, reason) == []
    [lost] = blame.find_lost(state, now, 7.0, {"worker:0": "refused"}, None, reason)
    assert lost.cause == PROCESS_EXITED and lost.evidence[0].startswith("Spark: ")


def test_the_lost_node_is_named_first_then_the_survivors_then_where_to_resume():
    state = two_nodes(time.monotonic())
    state.failures.append({"node": "chief:0", "error": COLLECTIVE, "log_tail": ["chief log line"]})
    lost = [Lost("worker:0", "h2", EXECUTOR_EXITED, ["Spark: ExecutorLostFailure (executor 1 exited)"], "1",
                 "http://h/log?executorId=1")]
    text = blame.compose(state, lost, None, [], {}, 600, "run the same command to resume from epoch 4 of 12")
    lines = text.splitlines()
    assert lines[0] == "TF node worker:0 on h2 was lost: its executor exited (Spark: ExecutorLostFailure (executor 1 " \
                       "exited))"
    assert lines[1] == "  then, as a consequence:"
    assert lines[2].startswith("    TF node chief:0 failed: UnavailableError: Collective ops is aborted by: recvmsg")
    assert "function_node" not in text and "chief log line" not in text
    assert "executor 1's log (http://h/log?executorId=1)" in text and "spark.executor.memory" in text
    assert lines[-1] == "  run the same command to resume from epoch 4 of 12"


def test_a_node_lost_after_the_first_is_listed_among_the_consequences():
    now = time.monotonic()
    state = two_nodes(now)
    state.last_seen["worker:0"] = now - 21  # killed first; Spark then killed the chief's task with the job
    state.last_seen["chief:0"] = now - 16
    lost = blame.find_lost(state, now, 7.0, {"worker:0": "refused", "chief:0": "refused"}, None, {})
    text = blame.compose(state, lost, None, [], {}, 600, "resume", tolerance_s=2.0)
    lines = text.splitlines()
    assert lines[0].startswith("TF node worker:0 on h2 was lost: its TF process exited (its TF server")
    assert lines[1] == "  then, as a consequence:"
    assert lines[2].startswith("    TF node chief:0 on h1 was lost: its TF process exited")
    assert [line for line in lines if line.startswith("  fix")] == [lines[3]] and "(worker:0)" in lines[3]


def test_of_two_nodes_lost_together_the_one_whose_executor_exited_leads():
    now = time.monotonic()
    state = two_nodes(now)
    state.last_seen["worker:0"] = now - 20
    state.last_seen["chief:0"] = now - 21
    lost = blame.find_lost(state, now, 7.0, {"chief:0": "refused"}, {"0"}, {})
    first, later = blame.first_lost(lost, tolerance_s=2.0)
    assert [(x.node, x.cause) for x in first] == [("worker:0", EXECUTOR_EXITED), ("chief:0", PROCESS_EXITED)]
    assert later == []


def test_the_watchdogs_record_keeps_when_the_node_was_last_heard(tmp_path: Path):
    server = EventServer("127.0.0.1")
    try:
        EventClient(server.address, server.token, "worker:0").send("started", host="h2")
        heard(server, lambda s: "worker:0" in s.started)
        server.record_lost("worker:0", HEARTBEATS_STOPPED, ["no heartbeat for 21 s, node_timeout 20 s"],
                           last_heard=time.monotonic() - 21)
        state = server.snapshot()
    finally:
        server.stop()
    [lost] = blame.find_lost(state, time.monotonic(), 7.0, {}, None, {})
    assert lost.cause == HEARTBEATS_STOPPED and lost.evidence == ["no heartbeat for 21 s, node_timeout 20 s"]
    assert time.monotonic() - lost.last_seen > 20


def test_without_a_lost_node_the_first_own_error_leads_with_its_log():
    state = two_nodes(time.monotonic())
    state.failures += [{"node": "worker:0", "error": COLLECTIVE},
                       {"node": "chief:0", "error": "RuntimeError: boom", "log_tail": ["a", "b"]}]
    text = blame.compose(state, [], None, [], {}, 600, "run the same command to resume from epoch 1 of 12")
    assert text.startswith("TF node chief:0 failed: RuntimeError: boom\n  last log lines:\n    a\n    b\n")
    assert "  also TF node worker:0 failed: UnavailableError" in text
    assert "no TF node was seen to die" not in text

    state.failures.pop()
    text = blame.compose(state, [], None, [], {}, 600, "run the same command to resume from epoch 1 of 12")
    assert "no TF node was seen to die" in text and "point at chief:0" in text


def test_tfos_executor_id_message_is_replaced_and_an_unmatched_executor_loss_told():
    state = NodeEvents()
    state.started["chief:0"] = {"host": "h1"}
    cause = Exception(TFOS_NO_EXECUTOR_ID)
    text = blame.compose(state, [], cause, [str(cause), SPARK_EXECUTOR_LOST], blame.spark_losses([SPARK_EXECUTOR_LOST]),
                         600, "run the same command to resume from epoch 3 of 12")
    assert "ensure that" not in text and "num_executors matches" not in text
    assert text.startswith("TFoS's shutdown task ran on a Spark executor that holds no TF node")
    assert "Spark lost executor 1: ExecutorLostFailure" in text
    assert text.endswith("run the same command to resume from epoch 3 of 12")


def test_one_lost_node_takes_the_one_executor_loss_spark_could_not_match():
    state = NodeEvents()
    state.started["worker:0"] = {"host": "h2"}
    lost = [Lost("worker:0", "h2", PROCESS_EXITED, ["its TF server x:1 refuses connections"])]
    text = blame.compose(state, lost, None, [], blame.spark_losses([SPARK_EXECUTOR_LOST]), 600, "resume")
    assert text.startswith("TF node worker:0 on h2 was lost: its executor exited (Spark executor 1: ExecutorLost")


def test_probe_tells_a_listening_port_from_a_closed_one():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        assert blame.probe(f"127.0.0.1:{listening.getsockname()[1]}") == "open"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert blame.probe(f"127.0.0.1:{port}") == "refused"
    assert blame.probe(None) == "unknown"


def heard(server: EventServer, predicate) -> None:
    """Waits until the server has recorded what the test sent (events arrive on separate connections)."""
    deadline = time.monotonic() + 10
    while not predicate(server.snapshot()):
        assert time.monotonic() < deadline, "the events did not arrive"
        server.wait_for_event(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_explain_finds_the_dead_worker_behind_the_chiefs_collective_error(tmp_path: Path):
    server = EventServer("127.0.0.1")
    with socket.socket() as chief_tf:
        chief_tf.bind(("127.0.0.1", 0))
        chief_tf.listen(4)
        try:
            chief = EventClient(server.address, server.token, "chief:0")
            worker = EventClient(server.address, server.token, "worker:0")
            chief.send("started", host="h1", tf_address=f"127.0.0.1:{chief_tf.getsockname()[1]}")
            worker.send("started", host="h2", tf_address=f"127.0.0.1:{_free_port()}")  # nothing listens: dead
            worker.send("heartbeat", batches=5, phase="train")
            chief.send("failed", error=COLLECTIVE, log_tail=[])
            heard(server, lambda s: "worker:0" in s.progress and s.failures)
            started = time.monotonic()
            error = str(blame.explain(server, None, None, config(tmp_path), heartbeat_s=2.0, resume=hint(tmp_path)))
            assert time.monotonic() - started < 3  # the refused TF server is proof at once
        finally:
            server.stop()
    assert error.startswith("TF node worker:0 on h2 was lost: its TF process exited (its TF server 127.0.0.1:")
    assert error.index("worker:0") < error.index("TF node chief:0 failed: UnavailableError")
    assert error.endswith("run the same command to resume from epoch 1 of 12")


def test_explain_waits_boundedly_for_silence_when_the_server_cannot_be_probed(tmp_path: Path):
    server = EventServer("127.0.0.1")
    try:
        EventClient(server.address, server.token, "worker:0").send("started", host="h2")  # still in setup
        EventClient(server.address, server.token, "chief:0").send("failed", error=COLLECTIVE, log_tail=[])
        heard(server, lambda s: "worker:0" in s.started and s.failures)
        started = time.monotonic()
        error = str(blame.explain(server, None, None, config(tmp_path), heartbeat_s=0.5, resume=hint(tmp_path)))
        waited = time.monotonic() - started
    finally:
        server.stop()
    assert error.startswith("TF node worker:0 on h2 was lost: it stopped sending heartbeats (no heartbeat for ")
    assert 2.0 < waited < 4.0, waited  # silence_s = 3 x 0.5 + 1 s; the window ends 0.5 s later


def test_explain_does_not_wait_when_a_node_reported_its_own_error(tmp_path: Path):
    server = EventServer("127.0.0.1")
    try:
        alive = EventClient(server.address, server.token, "worker:0")
        alive.send("started", host="h2")
        EventClient(server.address, server.token, "chief:0").send("failed", error="RuntimeError: boom", log_tail=[])
        heard(server, lambda s: "worker:0" in s.started and s.failures)
        started = time.monotonic()
        error = str(blame.explain(server, None, None, config(tmp_path), heartbeat_s=5.0, resume=hint(tmp_path)))
        assert time.monotonic() - started < 2
    finally:
        server.stop()
    assert error.startswith("TF node chief:0 failed: RuntimeError: boom")


def test_a_live_worker_keeping_its_heartbeat_is_not_blamed_after_the_window(tmp_path: Path):
    server = EventServer("127.0.0.1")
    try:
        worker = EventClient(server.address, server.token, "worker:0")
        worker.send("started", host="h2")
        EventClient(server.address, server.token, "chief:0").send("failed", error=COLLECTIVE, log_tail=[])
        heard(server, lambda s: "worker:0" in s.started and s.failures)
        result: dict[str, str] = {}
        import threading

        thread = threading.Thread(target=lambda: result.update(
            error=str(blame.explain(server, None, None, config(tmp_path), heartbeat_s=0.5, resume=hint(tmp_path)))))
        thread.start()
        while thread.is_alive():
            worker.send("heartbeat", batches=5, phase="setup")
            thread.join(0.3)
    finally:
        server.stop()
    assert result["error"].startswith("TF node chief:0 failed: UnavailableError")
    assert "no TF node was seen to die" in result["error"] and "point at worker:0" in result["error"]


def write_progress(cfg: TrainConfig, done: int) -> None:
    model = Path(cfg.model_dir)
    (model / "backup" / "chief").mkdir(parents=True, exist_ok=True)
    (model / "backup" / "chief" / "checkpoint").write_text("x")
    rows = [{"epoch": e, "loss": 0.5, "val_loss": 0.5, "accuracy": 0.5, "val_accuracy": 0.5}
            for e in range(1, done + 1)]
    (model / "progress.json").write_text(json.dumps({"epochs": cfg.epochs, "epochs_done": done,
                                                     "fingerprint": fingerprint(cfg, 1), "history": rows}))


def test_resume_hint_says_where_the_same_command_starts(tmp_path: Path):
    cfg = config(tmp_path)
    assert blame.resume_hint(cfg, 1) == "run the same command to resume from epoch 1 of 12"
    write_progress(cfg, 3)
    assert blame.resume_hint(cfg, 1) == "run the same command to resume from epoch 4 of 12"
    assert blame.resume_hint(replace(cfg, overwrite=True), 1) == \
        "run the same command without --overwrite to resume from epoch 4 of 12"
    (Path(cfg.model_dir) / "progress.json").write_text("{")
    assert blame.resume_hint(cfg, 1).startswith("the training state cannot be resumed (")


def test_the_watchdog_declares_a_silent_node_lost_with_when_it_was_last_heard():
    from tfos_facecnn.cluster_run import Watchdog

    server = EventServer("127.0.0.1")
    try:
        EventClient(server.address, server.token, "worker:0").send("started", host="h2")
        heard(server, lambda s: "worker:0" in s.started)
        sent = time.monotonic()
        with Watchdog(server, 1.0):
            heard(server, lambda s: bool(s.failures))
        [failure] = server.snapshot().failures
    finally:
        server.stop()
    assert failure["lost"] == HEARTBEATS_STOPPED and failure["evidence"][0].startswith("no heartbeat for ")
    assert failure["last_heard"] <= sent


def test_tfos_sys_exit_is_told_by_the_error_tfos_kept():
    state = NodeEvents()
    cause = SystemExit(1)
    text = blame.compose(state, [], cause, ["1", "Job aborted due to stage failure: boom"], {}, 600, "resume")
    assert text.startswith("the TFoS cluster failed (Job aborted due to stage failure: boom); TF nodes not done")


def test_a_node_error_found_at_shutdown_is_told_by_the_error_tfos_kept():
    from tfos_facecnn.tfos_shutdown import NodeErrorReported

    cause = NodeErrorReported("a TF node reported an error (TFoS's error queue)")
    text = blame.compose(NodeEvents(), [], cause, [str(cause), "Exception in worker: boom"], {}, 600, "resume")
    assert text.startswith("the TFoS cluster failed (Exception in worker: boom); TF nodes not done")


def test_a_node_the_watchdog_found_stalled_is_still_judged_lost_by_its_silence():
    # Cut off: its batches and heartbeats stop together, and the watchdog's stall clock runs out first.
    now = time.monotonic()
    state = two_nodes(now)
    state.last_seen["chief:0"] = now - 25
    state.failures.append({"node": "worker:0", "error": COLLECTIVE})
    state.failures.append({"node": "chief:0", "error": "no training progress for 21 s (node_timeout 20 s) after 7 "
                                                       "batches: a peer died or stopped, or its data feed ran dry"})
    [lost] = blame.find_lost(state, now, 7.0, {"chief:0": "unknown"}, {"0", "1"}, {})
    assert (lost.node, lost.host, lost.cause) == ("chief:0", "h1", HEARTBEATS_STOPPED)
    error = blame.compose(state, [lost], None, [], {}, 600, "run the same command to resume from epoch 2 of 12")
    assert error.startswith("TF node chief:0 on h1 was lost: it stopped sending heartbeats"), error
    assert "TF node chief:0 failed" not in error and "TF node worker:0 failed: UnavailableError" in error
