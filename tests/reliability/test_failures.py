"""Failures on local-cluster[2,1,1024]: a killed TF node. The job must exit non-zero in bounded time naming
the node, and the next run must resume. (An exception in the chief, on S3: test_s3_failures.py; a crash
during the export: test_model_dir.py, which also runs the export again.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.background_job import BackgroundJob
from tests.conftest import REPO, job_command, run_train_job, spark_env
from tfos_facecnn.export import is_complete

pytestmark = pytest.mark.spark
NODE_TIMEOUT = 20  # s: the watchdog bound these tests configure
RUN = ["--epochs", "12", "--image-size", "64", "--batch-size", "8", "--no-report"]
STARTED = re.compile(r"TF node (\S+) started on \S+ \(pid (\d+),")


def config(tmp_path: Path) -> str:
    path = tmp_path / "fast-failure.yaml"
    path.write_text(f"node_timeout: {NODE_TIMEOUT}\n")
    return str(path)


def Job(*args: str, env_extra: dict[str, str] | None = None) -> BackgroundJob:
    """The job on two TF nodes, in the background."""
    return BackgroundJob(*args, master="local-cluster[2,1,1024]", env_extra=env_extra)


def pids_by_node(job: Job) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in (STARTED.search(line) for line in job.lines) if m}


def error_block(output: str) -> str:
    """The job's error, from its 'error:' line to the resume hint that ends it (Spark's log lines may follow)."""
    found = re.search(r"^error: .*?run the same command[^\n]*", output, re.S | re.M)
    assert found, output[-3000:]
    return found.group(0)


def executor_jvm(pid: int) -> int:
    """The Spark executor JVM above a TF node's process (TF process -> Python worker -> daemon -> JVM)."""
    for _ in range(5):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"CoarseGrainedExecutorBackend" in f.read():
                return pid
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
    raise AssertionError("no executor JVM above the TF node's process")


def fails_naming_the_worker(job: BackgroundJob, tmp_path: Path, kill_executor: bool, after: str) -> tuple[str, int]:
    """Kills worker:0 (its TF process, or the Spark executor that runs it) once the job printed a line
    matching `after`; the job must fail in bounded time naming worker:0 (not the chief whose collective
    its death aborted) and where the same command resumes. Returns (error, epochs done)."""
    job.wait_for_line(after, 400)
    victim = pids_by_node(job)["worker:0"]
    killed_at = time.monotonic()
    os.kill(executor_jvm(victim) if kill_executor else victim, signal.SIGKILL)
    code = job.wait(NODE_TIMEOUT + 180)
    elapsed = time.monotonic() - killed_at
    assert code != 0, job.output[-3000:]
    error = error_block(job.output)
    lost = "its executor exited" if kill_executor else "its TF process exited"
    assert re.match(rf"error: TF node worker:0 on \S+ was lost: {lost} \(", error), error
    assert "chief:0 was lost" not in error and not error.startswith("error: TF node chief:0"), error
    assert elapsed < NODE_TIMEOUT + 120, f"took {elapsed:.0f} s to fail"
    assert not is_complete(str(tmp_path / "export"))
    done = json.loads((tmp_path / "model" / "progress.json").read_text())["epochs_done"]
    assert error.endswith(f"run the same command to resume from epoch {done + 1} of 12"), error
    return error, done


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("mode, kill_executor", [("spark", False), ("tensorflow", True)],
                         ids=["spark-tf-process", "tensorflow-executor"])
def test_killed_worker_fails_fast_then_the_run_resumes(mode: str, kill_executor: bool, tmp_path: Path):
    """A loss of worker:0 fails the job naming it, and the same command resumes: in SPARK mode its TF
    process killed; in TENSORFLOW mode the Spark executor that runs it (its loss named first, not TFoS's
    'No executor_id file found' from the executor Spark started in its place). Each mode resumes its own
    way (a shorter feed; the shards read again) whichever loss it had: one loss per mode keeps both kinds
    of loss and both resumes in four runs instead of six."""
    args = ["--input-mode", mode, *RUN, "--config", config(tmp_path), "--model-dir", str(tmp_path / "model"),
            "--export-dir", str(tmp_path / "export")]
    error, done_after = fails_naming_the_worker(Job(*args), tmp_path, kill_executor=kill_executor,
                                                after=r"^epoch 3/12 ")
    if kill_executor:
        assert "No executor_id file found" not in error and "num_executors matches" not in error
        assert "fix (worker:0): read executor " in error
    assert 2 <= done_after < 12

    again = run_train_job("local-cluster[2,1,1024]", *args, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming at epoch {done_after + 1} of 12" in again.stdout
    history = json.loads((tmp_path / "export" / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, 13))
    assert is_complete(str(tmp_path / "export"))


def run_with_fault(tmp_path: Path, fault: str) -> subprocess.CompletedProcess:
    command = job_command("train.py", "local-cluster[2,1,1024]", "--input-mode", "spark", *RUN,
                          "--config", config(tmp_path), "--model-dir", str(tmp_path / "model"),
                          "--export-dir", str(tmp_path / "export"),
                          conf=(f"spark.executorEnv.TFOS_FACECNN_FAULT={fault}",))
    return subprocess.run(command, env=spark_env(), cwd=REPO, capture_output=True, text=True, timeout=540)
