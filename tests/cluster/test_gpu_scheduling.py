"""GPUs through Spark's resource scheduling, on CPU: a standalone worker with two fake GPU addresses (from a
discovery script) runs two one-GPU executors, and each TF node sees only the address Spark gave its task.

local-cluster cannot show this: each of its workers discovers the same addresses, so both nodes get "0"
(they would be on different hosts on a real cluster). One worker with two executors splits its two
addresses between them, as on a two-GPU host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_ports, job_command, spark_env
from tfos_facecnn.spark_env import EXECUTOR_GPUS, TASK_GPUS

pytestmark = pytest.mark.spark
FAKE_GPUS = ["0", "1"]  # what the discovery script reports: the worker's two "GPUs"
START_S = 120  # master and worker register within ~15 s here; the 2 cores may be shared with other runs
POLL_S = 0.25  # between looks at the master's worker table
STOP_S = 20  # a JVM ends within a second or two of SIGTERM
TRAIN = ["--input-mode", "spark", "--epochs", "1", "--image-size", "48", "--batch-size", "8", "--no-report"]


def alive_gpu_workers(webui: str) -> int:
    try:
        with urllib.request.urlopen(f"{webui}/json/", timeout=2) as answer:
            table = json.load(answer)
    except OSError:
        return 0  # the master's UI is not up yet
    return sum(1 for w in table.get("workers", []) if w.get("state") == "ALIVE" and "gpu" in w.get("resources", {}))


def stop(process: subprocess.Popen) -> None:
    """Ends one launched JVM and what it started (its own session: executors, Python workers)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_S)


@contextmanager
def standalone_with_fake_gpus(folder: Path) -> Iterator[str]:
    """A master and one worker (2 cores, 2 GB, GPUs FAKE_GPUS) on 127.0.0.1; yields the master URL."""
    import pyspark

    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    script = folder / "gpus.sh"
    script.write_text(f"#!/bin/sh\necho '{json.dumps({'name': 'gpu', 'addresses': FAKE_GPUS})}'\n")
    script.chmod(0o755)
    properties = folder / "worker.conf"
    properties.write_text(f"spark.worker.resource.gpu.amount {len(FAKE_GPUS)}\n"
                          f"spark.worker.resource.gpu.discoveryScript {script}\n")
    port, webui_port, worker_webui_port = free_ports(3)
    master_url, webui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui_port}"
    env = {**spark_env(), "SPARK_LOG_DIR": str(folder), "SPARK_WORKER_DIR": str(folder / "work")}
    commands = {
        "master": [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                   "--webui-port", str(webui_port)],
        "worker": [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2",
                   "--memory", "2g", "--webui-port", str(worker_webui_port), "--properties-file", str(properties),
                   master_url],
    }
    processes: list[subprocess.Popen] = []
    try:
        for role, command in commands.items():
            with open(folder / f"{role}.log", "wb") as log:
                processes.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                                  stderr=subprocess.STDOUT, env=env, start_new_session=True))
        deadline = time.monotonic() + START_S
        while alive_gpu_workers(webui) < 1:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                logs = "".join((folder / f"{role}.log").read_text()[-2000:] for role in commands)
                raise RuntimeError(f"the standalone cluster did not come up with a GPU worker:\n{logs}")
            time.sleep(POLL_S)  # polls the master's worker table (a real condition), with a deadline
        yield master_url
    finally:
        for process in reversed(processes):
            stop(process)


@pytest.mark.timeout(420)
def test_each_tf_node_sees_only_the_gpu_spark_gave_its_task(tmp_path: Path):
    gpus = (f"{EXECUTOR_GPUS}=1", f"{TASK_GPUS}=1", "spark.executor.cores=1", "spark.cores.max=2")
    with standalone_with_fake_gpus(tmp_path) as master:
        command = job_command("train.py", master, *TRAIN, "--cluster-size", "2", "--model-dir",
                              str(tmp_path / "model"), "--export-dir", str(tmp_path / "export"), conf=gpus)
        result = subprocess.run(command, env=spark_env(), cwd=tmp_path, capture_output=True, text=True, timeout=360)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    nodes = json.loads((tmp_path / "model" / "nodes.json").read_text())
    seen = {node: record["gpus"] for node, record in nodes.items()}
    assert sorted(seen) == ["chief:0", "worker:0"] and sorted(map(tuple, seen.values())) == [("0",), ("1",)], seen
    for record in nodes.values():
        # CPU here: TF opens no GPU, so each node is one replica and takes half the global batch of 8
        assert record["tf_gpus"] == 0 and record["replicas"] == 2 and record["per_replica_batch"] == 4


@pytest.mark.timeout(120)
def test_gpu_amounts_that_do_not_split_stop_the_job_before_spark_starts(tmp_path: Path):
    command = job_command("train.py", "local[*]", *TRAIN, "--model-dir", str(tmp_path / "model"),
                          conf=(f"{EXECUTOR_GPUS}=3", f"{TASK_GPUS}=2"))
    result = subprocess.run(command, env=spark_env(), cwd=tmp_path, capture_output=True, text=True, timeout=100)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr  # spark-submit passes the Python driver's stderr to its stdout
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {EXECUTOR_GPUS}=3 does not split into tasks of {TASK_GPUS}=2: GPUs would sit idle; "
                      f"set {TASK_GPUS}=3"], output[-3000:]
    assert not (tmp_path / "model").exists()  # nothing ran
