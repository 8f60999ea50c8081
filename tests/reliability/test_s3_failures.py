"""Failures with the model dir and export on s3:// (a real S3 server on 127.0.0.1): a failed chief's run
resumes from the checkpoint on S3; a crash during the export upload leaves no _SUCCESS."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SAMPLE, job_command, run_train_job, spark_env
from tests.reliability.test_failures import RUN, config, error_block
from tfos_facecnn.export import is_complete

pytestmark = pytest.mark.spark


@pytest.mark.timeout(900)
def test_an_exception_in_the_chief_after_saving_an_epoch_fails_the_job_and_the_rerun_resumes_after_it_from_s3(
        s3, tmp_path):
    """The chief fails right after epoch 2's training state is saved and uploaded to S3, before
    progress.json records it (where a Ctrl-C, a SIGTERM or a lost node can stop it too): the job fails
    naming it, and the same command resumes from the checkpoint on S3 after epoch 2, with epoch 2's
    metrics, instead of expecting one epoch more than Keras runs. (A killed node's fast failure:
    test_failures.py.)"""
    import subprocess

    data = s3.upload_tree(SAMPLE, "sample")
    args = ["--input-mode", "spark", *RUN, "--config", config(tmp_path), "--data-dir", data,
            "--model-dir", f"{s3.url}/model", "--export-dir", f"{s3.url}/export"]
    result = subprocess.run(job_command("train.py", "local-cluster[2,1,1024]", *args,
                                        conf=("spark.executorEnv.TFOS_FACECNN_FAULT=chief:0@record=2",)),
                            env=spark_env(), capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "error: TF node chief:0 failed: RuntimeError: fault injected at record=2" in output, output[-3000:]
    assert error_block(output).endswith("run the same command to resume from epoch 2 of 12")
    assert not is_complete(f"{s3.url}/export")
    progress = json.loads(s3.fs.cat_file(f"{s3.url[5:]}/model/progress.json"))
    assert progress["epochs_done"] == 1 and progress["saving"]["epoch"] == 2, progress
    assert any(key.startswith("model/backup/") for key in s3.keys())  # the chief's checkpoint, uploaded

    again = run_train_job("local-cluster[2,1,1024]", *args, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming at epoch 2 of 12 from {s3.url}/model/backup" in again.stdout
    assert "the last run saved epoch 2 as it stopped, before recording it: resuming at epoch 3 of 12" in again.stdout
    assert not re.search(r"^epoch 2/12 ", again.stdout, re.M), again.stdout[-3000:]
    history = json.loads(s3.fs.cat_file(f"{s3.url[5:]}/export/history.json"))
    assert [row["epoch"] for row in history] == list(range(1, 13))
    assert all(isinstance(row.get("val_loss"), float) for row in history), history
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
