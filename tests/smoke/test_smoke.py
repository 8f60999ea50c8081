"""The fast tier's one spark-submit run (make test-fast): a tiny training on local[*] whose console shows the
job and nothing else, and whose every process's output lands in MODEL_DIR/logs/RUN/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_train_job

pytestmark = pytest.mark.spark
# What the console of a run shows: the job's own lines. The JVM prints the first itself, before any of
# the job's code runs (spark-submit adds the module).
JOB_LINE = re.compile(
    r"^(WARNING: Using incubator modules: jdk\.incubator\.vector"
    r"|logs: \S+|decoding \d+ images on the executors .*|data (train|val|test): \d+ faces, \d+ comics"
    r"|starting \d+ TF node\(s\) on \S+ in (SPARK|TENSORFLOW) mode: .*|TF node \S+ started on .*"
    r"|TF nodes ready: building the model and tracing its first step .*"
    r"|epoch \d+/\d+ loss=\S+ accuracy=\S+ val_loss=\S+ val_accuracy=\S+ images/s=\S+.*"
    r"|exported model to \S+ .*|report: \S+|tracked: MLflow run \w+ in experiment .*"
    r"|done: test accuracy=\S+ on \d+ images; outputs in \S+)$"
)


@pytest.mark.timeout(300)
def test_a_tiny_run_shows_the_job_on_the_console_and_everything_else_in_its_logs(tmp_path: Path):
    model, mlruns = tmp_path / "model", tmp_path / "mlruns"
    result = run_train_job("local[*]", "--input-mode", "spark", "--epochs", "2", "--image-size", "48",
                           "--batch-size", "8", "--model-dir", str(model), "--export-dir", str(tmp_path / "export"),
                           "--mlflow-uri", mlruns.as_uri(), timeout=280)
    console = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(console[-60:])
    noise = [line for line in console if not JOB_LINE.match(line)]
    assert not noise, noise
    assert [line.split()[1] for line in console if line.startswith("epoch ")] == ["1/2", "2/2"]
    assert "(after the first step, " in next(line for line in console if line.startswith("epoch 1/2"))

    [run] = (model / "logs").iterdir()
    assert f"logs: {run}" in console
    logs = {path.name: path.read_text() for path in run.iterdir()}
    assert {"driver.log", "node-chief-0.log", "executor-driver.log"} <= set(logs), sorted(logs)
    # what used to flood the console, each in the log of the process that wrote it
    assert "Reserving TFSparkNodes" in logs["driver.log"]  # TFoS's INFO lines on the driver
    assert "MultiWorkerMirroredStrategy" in logs["node-chief-0.log"]  # the TF node's own logging
    assert "TFSparkNode.reserve" in logs["executor-driver.log"]  # the executor's node start task
    assert "fed " in logs["executor-driver.log"]  # the feeding tasks
    # and the job's own lines too, in order among the rest: the log tells the whole run (from its logs: line
    # to the last before done:, which the command prints once the run and its log have ended)
    unstamped = [line.split(" ", 2)[2] for line in logs["driver.log"].splitlines()]
    shown = [line for line in console[console.index(f"logs: {run}"):]
             if not line.startswith("WARNING: Using incubator modules")]  # the JVM's, not the driver's
    assert [line for line in unstamped if line in shown] == [line for line in shown if not line.startswith("done: ")]
    # one timestamp per line: the capture's (to the second) or, for Python logging's lines, the writer's (ms)
    stamped = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(,\d{3})? (?!\d{4}-\d\d-\d\d )")
    assert all(stamped.match(line) for text in logs.values() for line in text.splitlines() if line.strip())
    # the report: written by the chief TF node, which holds TF and the model (the driver does not import TF)
    report = next(line for line in console if line.startswith("report: ")).split(" ", 1)[1]
    assert json.loads((model / "nodes.json").read_text())["chief:0"]["report"] == report
    assert "Feature maps after each convolution" in Path(report).read_text()
    check_mlflow_run(mlruns, next(line for line in console if line.startswith("tracked: ")))


def check_mlflow_run(mlruns: Path, line: str) -> None:
    """The run the driver logged: settings, every epoch's metrics, the test metrics, the export."""
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    run_id = re.search(r"MLflow run (\w+)", line).group(1)
    client = MlflowClient(mlruns.as_uri())
    run = client.get_run(run_id)
    assert run.data.params["image_size"] == "48" and run.data.params["augment.flip"] == "horizontal"
    assert "storage" not in run.data.params and run.data.params["nodes"] == "1"
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2]
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0 and run.data.metrics["test_count"] == 4
    artifacts = {a.path for a in client.list_artifacts(run_id, "export")}
    assert {"export/model.keras", "export/history.json", "export/metrics.json", "export/report"} <= artifacts


@pytest.mark.timeout(120)
def test_every_entry_point_says_its_version():
    from tfos_facecnn import __version__

    for job in ("train.py", "prepare.py", "evaluate.py", "predict.py", "crossval.py"):
        shown = subprocess.run([sys.executable, str(REPO / "jobs" / job), "--version"], capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0 and shown.stdout.strip() == f"tfos-facecnn {__version__}", (job, shown)
    shown = subprocess.run([sys.executable, "-m", "tfos_facecnn", "--version"], capture_output=True, text=True,
                           timeout=60)
    assert shown.stdout.strip() == f"tfos-facecnn {__version__}"
