"""The right node blamed on local-cluster[2,1,1024]: when worker:0's executor is killed, the job's error
names worker:0 and its lost executor first (not chief:0, whose collective its death aborted, and not
TFoS's 'No executor_id file found' from the executor Spark started in its place), in both input modes,
and ends with the epoch the same command resumes from. A chief killed as it saves the trained model is
named, not "a peer" of the worker whose save it left waiting."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.test_failures import (
    NODE_TIMEOUT,
    RUN,
    Job,
    config,
    error_block,
    pids_by_node,
    run_with_fault,
)

pytestmark = pytest.mark.spark


def executor_jvm(pid: int) -> int:
    """The Spark executor JVM above a TF node's process (TF process -> Python worker -> daemon -> JVM)."""
    for _ in range(5):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"CoarseGrainedExecutorBackend" in f.read():
                return pid
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
    raise AssertionError("no executor JVM above the TF node's process")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["spark", "tensorflow"])
def test_the_killed_workers_executor_is_named_first(mode: str, tmp_path: Path):
    job = Job("--input-mode", mode, *RUN, "--config", config(tmp_path), "--model-dir", str(tmp_path / "model"),
              "--export-dir", str(tmp_path / "export"))
    job.wait_for_line(r"^epoch 2/12 ", 400)
    os.kill(executor_jvm(pids_by_node(job)["worker:0"]), signal.SIGKILL)
    killed_at = time.monotonic()
    code = job.wait(NODE_TIMEOUT + 180)
    elapsed = time.monotonic() - killed_at
    assert code != 0, job.output[-3000:]
    error = error_block(job.output)
    assert re.match(r"error: TF node worker:0 on \S+ was lost: its executor exited \(", error), error
    assert "No executor_id file found" not in error and "num_executors matches" not in error
    assert "chief:0 was lost" not in error and not error.startswith("error: TF node chief:0")
    assert "fix (worker:0): read executor " in error
    done = json.loads((tmp_path / "model" / "progress.json").read_text())["epochs_done"]
    assert error.endswith(f"run the same command to resume from epoch {done + 1} of 12"), error
    assert elapsed < NODE_TIMEOUT + 120, f"took {elapsed:.0f} s to fail"


@pytest.mark.timeout(600)
def test_a_chief_killed_while_saving_is_named_not_the_worker_it_left_waiting(tmp_path: Path):
    result = run_with_fault(tmp_path, "chief:0@save:kill")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    error = error_block(output)
    assert re.match(r"error: TF node chief:0 on \S+ was lost: its TF process exited \(", error), error
    assert not error.startswith("error: TF node worker:0")
    # All 12 epochs ran, but Keras deletes its backup when training ends: the run starts again.
    assert error.endswith("run the same command to resume from epoch 1 of 12"), error
