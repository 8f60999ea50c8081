"""One run per model dir, --overwrite last, and resumes without surprises, through spark-submit on local[*]:
a second run is refused while the first lives (and Ctrl-C releases the lock); --overwrite with a bad
setting deletes nothing; a crash before the first epoch restarts saying so; a crash during the export
re-exports the trained weights instead of training again, and its staging folder goes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.background_job import BackgroundJob
from tests.conftest import REPO, job_command, run_train_job, spark_env
from tests.spark.checks import EPOCH_LINE, SMALL_RUN, check_export
from tfos_facecnn.export import is_complete

pytestmark = pytest.mark.spark
STARTED = re.compile(r"TF node chief:0 started on \S+ \(pid (\d+),")


def dirs(tmp_path: Path) -> list[str]:
    return ["--model-dir", str(tmp_path / "model"), "--export-dir", str(tmp_path / "export")]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr  # spark-submit hands the Python driver's stderr to its stdout
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    return errors[0]


@pytest.mark.timeout(600)
def test_a_second_run_on_a_model_dir_is_refused_while_the_first_lives(tmp_path: Path):
    args = ["--input-mode", "spark", "--epochs", "5000", "--image-size", "48", "--batch-size", "8", "--no-report",
            *dirs(tmp_path)]
    first = BackgroundJob(*args)
    lock = tmp_path / "model" / "run.lock"
    try:
        first.wait_until(lambda: first.line(r"^epoch 1/5000 "), 300, "the first run's epoch 1")
        holder = json.loads(lock.read_text())
        driver = psutil.Process(holder["pid"])
        assert psutil.Process(first.process.pid) in driver.parents()  # the first run's Python driver holds it
        assert {"host", "pid", "process_start", "started_at", "token", "command"} <= set(holder)

        second = run_train_job("local[*]", *args, timeout=240)
        assert second.returncode == 2, second.stdout[-3000:]
        error = one_error_line(second)
        assert f"is in use by another run (pid {holder['pid']} on {holder['host']}, started {holder['started_at']}" \
            in error and "run.lock" in error
        assert "SparkContext: Running Spark version" not in second.stdout  # refused before Spark starts
        assert first.process.poll() is None and json.loads(lock.read_text())["token"] == holder["token"]
    finally:
        if first.process.poll() is None:
            first.interrupt()  # Ctrl-C
    assert first.wait(120) != 0
    # spark-submit's JVM may exit on the Ctrl-C before the Python driver (its child) has cleaned up and
    # released the locks, which it does last: wait for that process, not only for spark-submit.
    driver.wait(timeout=60)
    assert not lock.exists() and not (tmp_path / "export.lock").exists()  # released on Ctrl-C
    assert not is_complete(str(tmp_path / "export"))


@pytest.mark.timeout(300)
def test_overwrite_with_a_bad_setting_deletes_nothing(tmp_path: Path):
    model = tmp_path / "model"
    (model / "backup" / "chief").mkdir(parents=True)
    (model / "backup" / "chief" / "checkpoint").write_text("state of an earlier run")
    (model / "progress.json").write_text(json.dumps({"epochs_done": 1, "history": [], "fingerprint": {}}))
    result = run_train_job("local[*]", *SMALL_RUN, "--overwrite", "--cluster-size", "2", *dirs(tmp_path),
                           timeout=240)
    assert result.returncode == 2 and "has one executor" in one_error_line(result)
    assert (model / "backup" / "chief" / "checkpoint").read_text() == "state of an earlier run"
    assert (model / "progress.json").exists() and not (model / "run.lock").exists()

    (model / "notes.txt").write_text("someone's")
    result = run_train_job("local[*]", *SMALL_RUN, *dirs(tmp_path), timeout=240)
    assert result.returncode == 2 and "holds files that no training run wrote (notes.txt)" in one_error_line(result)


@pytest.mark.timeout(900)
def test_a_crash_before_the_first_epoch_restarts_saying_so(tmp_path: Path):
    fast = tmp_path / "fast-failure.yaml"
    fast.write_text("node_timeout: 20\n")  # the watchdog's bound on noticing the killed node
    args = ["--input-mode", "spark", *SMALL_RUN, "--no-report", "--config", str(fast), *dirs(tmp_path)]
    job = BackgroundJob(*args)
    try:
        pid = int(job.wait_until(lambda: job.line(STARTED.pattern), 300, "the TF node's start").group(1))
        job.wait_until(lambda: (tmp_path / "model" / "tensorboard").exists(), 120, "training begin")
        assert not job.line(r"^epoch 1/"), "epoch 1 ended before the TF node could be killed"
        os.kill(pid, signal.SIGKILL)
        assert job.wait(300) != 0, job.output[-3000:]
    finally:
        if job.process.poll() is None:
            job.interrupt()
    assert not (tmp_path / "model" / "progress.json").exists(), job.output[-3000:]
    assert not (tmp_path / "model" / "run.lock").exists()  # the failed run released its lock

    again = run_train_job("local[*]", *args, timeout=540)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "no finished epoch yet: starting at epoch 1" in again.stdout
    assert [int(n) for n in EPOCH_LINE.findall(again.stdout)] == [1, 2]
    check_export(tmp_path / "export", epochs=2, workers=1)


@pytest.mark.timeout(900)
def test_a_crash_during_the_export_re_exports_the_trained_weights(tmp_path: Path):
    args = ["--input-mode", "spark", *SMALL_RUN, *dirs(tmp_path)]
    crashed = subprocess.run(job_command("train.py", "local[*]", *args),
                             env={**spark_env(), "TFOS_FACECNN_FAULT": "chief:0@export"}, cwd=REPO,
                             capture_output=True, text=True, timeout=540)
    output = crashed.stdout + crashed.stderr
    assert crashed.returncode != 0 and "fault injected at export" in output, output[-3000:]
    staged = list(tmp_path.glob("export.staging-*"))
    assert len(staged) == 1 and not is_complete(str(tmp_path / "export"))
    assert (staged[0] / "model.keras").exists()  # the crash came after the model was saved
    assert not is_complete(str(staged[0]))  # and no _SUCCESS: never taken for a finished export
    assert not (tmp_path / "model" / "run.lock").exists()

    again = run_train_job("local[*]", *args, timeout=540)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "training finished (2 epochs) but its export did not: exporting the trained weights in " \
        f"{tmp_path / 'model' / 'final' / 'training_model.keras'}" in again.stdout
    assert not EPOCH_LINE.findall(again.stdout) and "starting 1 TF node" not in again.stdout  # no training
    assert f"removed 1 leftover(s) of an interrupted run: {staged[0]}" in again.stdout
    assert not list(tmp_path.glob("export.staging-*"))
    metrics = check_export(tmp_path / "export", epochs=2, workers=1)
    assert metrics["reexported_from"].endswith("training_model.keras")
    assert (tmp_path / "export" / "report" / "report.md").exists()
    assert "already holds this run's model (2 epochs)" in run_train_job("local[*]", *args, timeout=300).stdout
