"""Failures on local-cluster[2,1,1024]: a killed TF node, an exception in the chief, a crash during
export. The job must exit non-zero in bounded time naming the node, and the next run must resume."""

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


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["spark", "tensorflow"])
def test_killed_worker_fails_fast_then_the_run_resumes(mode: str, tmp_path: Path):
    args = ["--input-mode", mode, *RUN, "--config", config(tmp_path), "--model-dir", str(tmp_path / "model"),
            "--export-dir", str(tmp_path / "export")]
    job = Job(*args)
    job.wait_for_line(r"^epoch 3/12 ", 400)
    victim = pids_by_node(job)["worker:0"]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    code = job.wait(NODE_TIMEOUT + 180)
    elapsed = time.monotonic() - killed_at
    assert code != 0, job.output[-3000:]
    # The killed node is named, not the survivor whose collective its death aborted.
    error = error_block(job.output)
    assert re.match(r"error: TF node worker:0 on \S+ was lost: its TF process exited \(", error), error
    assert "chief:0 was lost" not in error
    assert elapsed < NODE_TIMEOUT + 120, f"took {elapsed:.0f} s to fail"
    assert not is_complete(str(tmp_path / "export"))
    done = json.loads((tmp_path / "model" / "progress.json").read_text())["epochs_done"]
    assert 3 <= done < 12
    assert error.endswith(f"run the same command to resume from epoch {done + 1} of 12"), error

    again = run_train_job("local-cluster[2,1,1024]", *args, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming at epoch {done + 1} of 12" in again.stdout
    history = json.loads((tmp_path / "export" / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, 13))
    assert is_complete(str(tmp_path / "export"))


def run_with_fault(tmp_path: Path, fault: str) -> subprocess.CompletedProcess:
    command = job_command("train.py", "local-cluster[2,1,1024]", "--input-mode", "spark", *RUN,
                          "--config", config(tmp_path), "--model-dir", str(tmp_path / "model"),
                          "--export-dir", str(tmp_path / "export"),
                          conf=(f"spark.executorEnv.TFOS_FACECNN_FAULT={fault}",))
    return subprocess.run(command, env=spark_env(), cwd=REPO, capture_output=True, text=True, timeout=540)


@pytest.mark.timeout(600)
def test_an_exception_in_the_chief_fails_the_job(tmp_path: Path):
    result = run_with_fault(tmp_path, "chief:0@epoch=2")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "error: TF node chief:0 failed: RuntimeError: fault injected at epoch=2" in output
    assert not is_complete(str(tmp_path / "export"))
    done = json.loads((tmp_path / "model" / "progress.json").read_text())["epochs_done"]
    assert error_block(output).endswith(f"run the same command to resume from epoch {done + 1} of 12")


@pytest.mark.timeout(600)
def test_a_crash_during_export_leaves_nothing_that_looks_complete(tmp_path: Path):
    result = run_with_fault(tmp_path, "chief:0@export")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "fault injected at export" in output
    assert not (tmp_path / "export").exists()
    staged = list(tmp_path.glob("export.staging-*"))
    assert staged and (staged[0] / "model.keras").exists()  # the crash came after the model was saved
    assert not is_complete(str(staged[0]))  # and no _SUCCESS: never taken for a finished export
