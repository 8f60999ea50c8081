"""Failures with the model dir and export on s3:// (a real S3 server on 127.0.0.1): a killed TF node's
run resumes from the checkpoint on S3; a crash during the export upload leaves no _SUCCESS."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.conftest import SAMPLE, job_command, run_train_job, spark_env
from tests.reliability.test_failures import NODE_TIMEOUT, RUN, Job, config, pids_by_node
from tfos_facecnn.export import is_complete

pytestmark = pytest.mark.spark


@pytest.mark.timeout(900)
def test_a_killed_node_fails_the_job_and_the_rerun_resumes_from_the_checkpoint_on_s3(s3, tmp_path):
    data = s3.upload_tree(SAMPLE, "sample")
    args = ["--input-mode", "spark", *RUN, "--config", config(tmp_path), "--data-dir", data,
            "--model-dir", f"{s3.url}/model", "--export-dir", f"{s3.url}/export"]
    job = Job(*args)
    job.wait_for_line(r"^epoch 3/12 ", 400)
    os.kill(pids_by_node(job)["worker:0"], signal.SIGKILL)
    killed_at = time.monotonic()
    code = job.wait(NODE_TIMEOUT + 180)
    assert code != 0 and time.monotonic() - killed_at < NODE_TIMEOUT + 120, job.output[-3000:]
    assert not is_complete(f"{s3.url}/export")
    done = json.loads(s3.fs.cat_file(f"{s3.url[5:]}/model/progress.json"))["epochs_done"]
    assert 3 <= done < 12
    assert any(key.startswith("model/backup/") for key in s3.keys())  # the chief's checkpoint, uploaded

    again = run_train_job("local-cluster[2,1,1024]", *args, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming at epoch {done + 1} of 12 from {s3.url}/model/backup" in again.stdout
    history = json.loads(s3.fs.cat_file(f"{s3.url[5:]}/export/history.json"))
    assert [row["epoch"] for row in history] == list(range(1, 13))
    assert is_complete(f"{s3.url}/export")


@pytest.mark.timeout(600)
def test_a_crash_during_the_export_upload_leaves_no_success_marker(s3, tmp_path):
    import subprocess

    data = s3.upload_tree(SAMPLE, "sample")
    command = job_command("train.py", "local-cluster[2,1,1024]", "--input-mode", "spark", *RUN,
                          "--config", config(tmp_path), "--data-dir", data, "--model-dir", f"{s3.url}/model",
                          "--export-dir", f"{s3.url}/export",
                          conf=("spark.executorEnv.TFOS_FACECNN_FAULT=chief:0@export",))
    result = subprocess.run(command, env=spark_env(), capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "fault injected at export" in output, output[-3000:]
    keys = s3.keys()
    staged = sorted({key.split("/")[0] for key in keys if key.startswith("export.staging-")})
    assert len(staged) == 1 and f"{staged[0]}/model.keras" in keys  # uploaded, then the chief crashed
    assert not any(key.endswith("_SUCCESS") and key.startswith("export") for key in keys)
    assert not is_complete(f"{s3.url}/export") and not is_complete(f"{s3.url}/{staged[0]}")
