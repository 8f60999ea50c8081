"""The Python API from a plain `python` process that builds its own SparkSession (a notebook's way): train,
evaluate and a cross-check that the caller's session is used as it is and left running."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, spark_env

pytestmark = pytest.mark.spark

SCRIPT = textwrap.dedent("""
    import json, sys
    from pyspark.sql import SparkSession
    from tfos_facecnn import EvaluateConfig, TrainConfig, evaluate, train

    out = sys.argv[1]
    spark = (SparkSession.builder.master("local[*]").appName("notebook").config("spark.ui.enabled", "false")
             .getOrCreate())
    result = train(spark, TrainConfig(epochs=2, image_size=48, batch_size=8, report=False,
                                      model_dir=f"{out}/model", export_dir=f"{out}/export"))
    evaluation = evaluate(spark, EvaluateConfig(model=result.export_dir, split="val"))
    still_running = spark.range(3).count()  # the caller's session is theirs: never stopped by the API
    print("RESULT " + json.dumps({
        "export_dir": result.export_dir, "epochs": [row["epoch"] for row in result.history],
        "test_count": result.metrics["test"]["count"], "nodes": sorted(result.nodes),
        "evaluated": evaluation["metrics"]["count"], "output_dir": evaluation["output_dir"],
        "still_running": still_running, "app": spark.sparkContext.appName}))
    spark.stop()
""")


@pytest.mark.timeout(600)
def test_train_and_evaluate_from_python_with_the_callers_own_session(tmp_path: Path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=spark_env(), cwd=REPO,
                            capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    got = json.loads(line[len("RESULT "):])
    assert got["export_dir"] == str(tmp_path / "export") and (tmp_path / "export" / "model.keras").exists()
    assert got["epochs"] == [1, 2] and got["test_count"] == 4 and got["nodes"] == ["chief:0"]
    assert got["evaluated"] == 16 and got["output_dir"] == str(tmp_path / "export" / "evaluation-val")
    assert got["still_running"] == 3 and got["app"] == "notebook"  # the caller's session, used and left alive
    assert (tmp_path / "model" / "logs").is_dir()  # the nodes' logs land in MODEL_DIR/logs as for a job
