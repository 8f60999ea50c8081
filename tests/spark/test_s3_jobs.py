"""Every job with its data, model dir and outputs on s3:// (a real S3 server on 127.0.0.1, SeaweedFS),
in both input modes, on local[*] and local-cluster[2,1,1024]; bad storage settings fail in seconds."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, run_job, run_train_job
from tests.spark.checks import EPOCH_LINE, SMALL_RUN
from tfos_facecnn.cluster_run import SECRETS_FOR_TESTS_ENV
from tfos_facecnn.export import is_complete
from tfos_facecnn.inference import load_model_bytes

pytestmark = pytest.mark.spark


def read_json(s3, key: str):
    return json.loads(s3.fs.cat_file(f"{s3.url[5:]}/{key}"))


def check_s3_export(s3, prefix: str, epochs: int, workers: int, output: str) -> dict:
    export = f"{s3.url}/{prefix}"
    assert is_complete(export)
    assert s3.server.secret_key not in output  # no credential on the console
    history = read_json(s3, f"{prefix}/history.json")
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
    metrics = read_json(s3, f"{prefix}/metrics.json")
    assert metrics["cluster"]["num_workers"] == workers and metrics["test"]["count"] == 4
    assert "storage" not in read_json(s3, f"{prefix}/config.json")
    model = load_model_bytes(s3.fs.cat_file(f"{export[5:]}/model.keras"))
    assert model.input_shape == (None, 48, 48, 3)
    assert not [key for key in s3.keys() if ".staging-" in key or ".old-" in key]
    return metrics


def executor_logs_since(started: float) -> str:
    """The stdout and stderr of every local-cluster executor that wrote since `started`."""
    import pyspark

    work = Path(pyspark.__file__).parent / "work"
    logs = [p for p in work.glob("app-*/*/std*") if p.stat().st_mtime >= started] if work.exists() else []
    return "".join(p.read_text(errors="replace") for p in logs)


def secret_forms(secret: str) -> list[str]:
    """A secret as it could appear in text: a TFoS authkey (hex in the file) also as Python prints bytes."""
    forms = [secret]
    if len(secret) == 32:  # 16 random bytes
        forms.append(repr(bytes.fromhex(secret))[2:-1])
    return forms


def train_on_s3(s3, master: str, mode: str, data: str, *extra: str):
    started = time.time()
    secrets_file = Path(tempfile.mkdtemp()) / "secrets"
    os.environ[SECRETS_FOR_TESTS_ENV] = str(secrets_file)
    try:
        result = run_train_job(master, "--input-mode", mode, *SMALL_RUN, "--data-dir", data, "--model-dir",
                               f"{s3.url}/model", "--export-dir", f"{s3.url}/export", *extra, timeout=540)
    finally:
        del os.environ[SECRETS_FOR_TESTS_ENV]
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert [int(n) for n in EPOCH_LINE.findall(result.stdout)] == [1, 2]
    if master.startswith("local-cluster"):
        logs = executor_logs_since(started)
        assert "Spark Executor Command" in logs  # the executors' own logs were found
        # No secret anywhere: the storage credential, the run's event token and the TFoS managers' authkeys,
        # on the console, in the executors' stderr, in the run's logs and in every output file on S3.
        run_secrets = secrets_file.read_text().split()
        assert len(run_secrets) == 3, run_secrets  # the token and two nodes' authkeys
        texts = {"console": output, "executor stderr": logs}
        texts |= {key: s3.fs.cat_file(f"{s3.url[5:]}/{key}").decode("utf-8", "replace") for key in s3.keys()
                  if key.endswith((".log", ".json", ".md", ".csv"))}
        node_logs = [name for name in texts if name.startswith("model/logs/") and name.endswith("node-chief-0.log")]
        assert node_logs, sorted(texts)
        for secret in [s3.server.secret_key, *run_secrets]:
            for form in secret_forms(secret):
                assert not [name for name, text in texts.items() if form in text], form
    return result, output


@pytest.mark.timeout(900)
def test_prepare_s3_to_s3_then_two_nodes_train_from_it_and_predict_and_evaluate_read_s3(s3):
    data = s3.upload_tree(SAMPLE, "sample")
    prepared = run_job("prepare.py", "local[*]", "--data-dir", data, "--output-dir", f"{s3.url}/prepared",
                       "--image-size", "48", "--num-shards", "2", timeout=300)
    assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
    manifest = read_json(s3, "prepared/manifest.json")
    assert manifest["counts"]["train"]["total"] == 50 and len(manifest["shards"]["train"]) == 2
    assert set(s3.keys("prepared")) == {"manifest.json", *(s["file"] for split in manifest["shards"].values()
                                                           for s in split)}

    result, output = train_on_s3(s3, "local-cluster[2,1,1024]", "tensorflow", f"{s3.url}/prepared")
    check_s3_export(s3, "export", epochs=2, workers=2, output=output)
    nodes = read_json(s3, "model/nodes.json")
    assert len(nodes) == 2 and all(node["shard_cache_bytes"] > 0 for node in nodes.values())
    read = [set(node["shards_read"]) for node in nodes.values()]
    assert read[0] | read[1] == {s["file"] for s in manifest["shards"]["train"]} and not read[0] & read[1]
    assert any(key.startswith("model/tensorboard/train/events.out.tfevents") for key in s3.keys())
    assert "model/final/training_model.keras" in s3.keys()
    assert "export/report/report.md" in s3.keys()

    predicted = run_job("predict.py", "local[*]", "--model", f"{s3.url}/export", "--input", f"{data}/faces",
                        "--output-dir", f"{s3.url}/predictions", timeout=300)
    assert predicted.returncode == 0, predicted.stdout[-3000:] + predicted.stderr[-3000:]
    parts = [key for key in s3.keys("predictions") if key.endswith(".csv")]
    assert "_SUCCESS" in s3.keys("predictions") and parts
    rows = [row for part in parts for row in csv.DictReader(io.StringIO(
        s3.fs.cat_file(f"{s3.url[5:]}/predictions/{part}").decode()))]
    assert len(rows) == 35 and all(r["path"].startswith(f"{data}/faces/") and 0 <= float(r["p_face"]) <= 1
                                   for r in rows)

    evaluated = run_job("evaluate.py", "local[*]", "--model", f"{s3.url}/export", "--data-dir", data,
                        "--split", "val", "--output-dir", f"{s3.url}/evaluation", timeout=300)
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    assert read_json(s3, "evaluation/metrics.json")["count"] == 16
    assert {"_SUCCESS", "report.md", "roc.png", "predictions.csv"} <= set(s3.keys("evaluation"))


@pytest.mark.timeout(600)
# SPARK mode on two nodes (the storage code is the same on local[*]), TENSORFLOW mode preparing its shards
# on S3 itself; the prepare job's shards on S3 feed two TENSORFLOW-mode nodes in the test above.
@pytest.mark.parametrize("mode,master", [("spark", "local-cluster[2,1,1024]"), ("tensorflow", "local[*]")])
def test_training_with_data_model_and_export_on_s3(s3, mode: str, master: str):
    data = s3.upload_tree(SAMPLE, "sample")
    result, output = train_on_s3(s3, master, mode, data)
    workers = 2 if master.startswith("local-cluster") else 1
    check_s3_export(s3, "export", epochs=2, workers=workers, output=output)
    assert read_json(s3, "model/progress.json")["epochs_done"] == 2
    assert not any(key.startswith("model/backup/") for key in s3.keys())  # Keras drops it once training ends
    if mode == "tensorflow":
        assert "manifest.json" in s3.keys("model/prepared-48px")

    again = run_train_job(master, "--input-mode", mode, *SMALL_RUN, "--data-dir", data,
                          "--model-dir", f"{s3.url}/model", "--export-dir", f"{s3.url}/export", timeout=300)
    assert again.returncode == 0 and "already holds this run's model (2 epochs)" in again.stdout


def failing_train(*args: str) -> tuple[str, float]:
    started = time.monotonic()
    result = run_train_job("local[*]", *SMALL_RUN, *args, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    output = result.stdout + result.stderr  # spark-submit hands the Python driver's stderr to its stdout
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    return errors[0], elapsed


@pytest.mark.timeout(300)
def test_wrong_credentials_a_missing_bucket_and_a_stopped_server_fail_in_seconds(s3, monkeypatch, tmp_path):
    from tests.s3server import start_s3_server, stop_s3_server

    data = s3.upload_tree(SAMPLE, "sample")
    local = ["--model-dir", str(tmp_path / "model"), "--export-dir", str(tmp_path / "export")]

    line, elapsed = failing_train("--data-dir", "s3://no-such-bucket-x/sample", *local)
    assert "--data-dir 's3://no-such-bucket-x/sample': bucket 'no-such-bucket-x' does not exist" in line
    assert elapsed < 30

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    line, elapsed = failing_train("--data-dir", data, *local)
    assert line.startswith(f"error: --data-dir: could not reach the bucket of {data}: access denied"), line
    assert "AWS_SECRET_ACCESS_KEY" in line and "not-the-secret" not in line and elapsed < 30
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.server.secret_key)

    stopped = start_s3_server(tmp_path / "stopped")
    stop_s3_server(stopped)
    monkeypatch.setenv("AWS_ENDPOINT_URL", stopped.endpoint)
    line, elapsed = failing_train("--data-dir", data, *local)
    assert f"could not reach the bucket of {data}: EndpointConnectionError" in line and "AWS_ENDPOINT_URL" in line
    assert elapsed < 30
    assert not (tmp_path / "model").exists()  # nothing was started or written


@pytest.mark.timeout(120)
def test_an_output_on_a_read_only_path_is_refused_before_spark(s3, tmp_path):
    s3.fs.pipe_file(f"{s3.url[5:]}/taken", b"x")
    line, _ = failing_train("--model-dir", f"{s3.url}/taken", "--export-dir", str(tmp_path / "export"))
    assert f"--model-dir '{s3.url}/taken' is a file, not a folder" in line
