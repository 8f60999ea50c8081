"""Several hosts with Spark's own authentication on (`python -m tfos_facecnn.cluster start --netns 3
--auth-secret-file F`): a driver without the secret is refused; one with it trains in TENSORFLOW mode with its
shards, checkpoints and export on the S3 test server, which listens on the bridge's address (every host reaches
it, nothing else does). A module of its own: its cluster uses the same private subnet as test_multihost's."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO
from tests.multihost import (
    START_S,
    driver_command,
    driver_env,
    job_processes,
    launcher,
    network,
    require_netns,
    run_driver,
    wait_until,
)
from tests.s3server import start_s3_server, stop_s3_server
from tfos_facecnn import netns, storage
from tfos_facecnn.cluster import ClusterInfo, read_state
from tfos_facecnn.export import is_complete
from tfos_facecnn.inference import load_model_bytes

pytestmark = [pytest.mark.spark, pytest.mark.multihost]
RUN = ["--epochs", "2", "--image-size", "48", "--batch-size", "8", "--no-report"]
REFUSED_S = 180  # Spark's driver gives up on an unresponsive master after 3 tries of 20 s; start-up on top
RUN_S = 600  # one small training run on 2 shared cores
CLEAN_S = 60  # for a job's processes to leave every host


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "spark-secret"
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory, secret_file: Path) -> ClusterInfo:
    """Started and stopped with the launcher's command line, as the README shows."""
    require_netns()
    state = tmp_path_factory.mktemp("multihost-auth") / "cluster"
    started = launcher("start", "--netns", "3", "--memory", "1g", "--allow-oversubscribe", "--auth-secret-file",
                       str(secret_file), "--state-dir", str(state), "--timeout", str(START_S), timeout=START_S + 60)
    info = read_state(state)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert info is not None and info.auth_secret_file == str(secret_file)
        assert "master URL: spark://10.231.0.1:7077" in started.stdout
        assert "host tfmh3: 10.231.0.3 (worker-2)" in started.stdout
        assert "driver settings: --conf spark.authenticate=true --conf spark.authenticate.secret=" in started.stdout
        assert secret_file.read_text().strip() not in started.stdout + started.stderr
        assert all(secret_file.read_text().strip() not in " ".join(psutil.Process(p.pid).cmdline())
                   for p in info.processes), "the secret is on a command line"
        yield info
    finally:
        stopped = launcher("stop", "--state-dir", str(state))
        assert stopped.returncode == 0, stopped.stderr
        assert netns.leftovers() == [], "the multi-host cluster left namespaces or links behind"


def auth_conf(secret_file: Path) -> tuple[str, ...]:
    return "spark.authenticate=true", f"spark.authenticate.secret={secret_file.read_text().strip()}"


def check_refused(refused: subprocess.Popen, log: Path, took: float, auth_cluster: ClusterInfo) -> None:
    output = log.read_text(errors="replace")
    assert refused.returncode != 0, output[-3000:]
    assert "TF node" not in output, "a driver without the secret got executors"
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: --master {auth_cluster.master_url}: the master answers but did not register this "
                      "driver (Spark gave up: 'All masters are unresponsive'); a cluster run with Spark's "
                      "authentication (spark.authenticate) refuses a driver without its secret: give the same one "
                      "with --conf spark.authenticate=true --conf spark.authenticate.secret=...; the master's log "
                      "says why it refused"], output[-3000:]
    assert "Traceback" not in output
    master_log = Path(auth_cluster.log_dir, "master.log").read_text(errors="replace")
    assert "Expected SaslMessage, received something else" in master_log, master_log[-3000:]
    print(f"measured: a driver without the secret refused after {took:.0f} s")


@pytest.mark.timeout(RUN_S + REFUSED_S)
def test_spark_authentication_across_hosts_and_tensorflow_mode_on_s3(auth_cluster: ClusterInfo, secret_file: Path,
                                                                    tmp_path: Path, monkeypatch):
    """A driver without the secret is refused, while one with it trains in TENSORFLOW mode, its shards,
    checkpoints and export on S3 (side by side: the refused one spends a minute on Spark's registration tries)."""
    started = time.monotonic()
    log = tmp_path / "refused.log"
    with open(log, "w") as out:  # a file, not a pipe: nothing reads it until the end
        refused = subprocess.Popen(driver_command(auth_cluster, "train.py", *RUN, "--model-dir", str(tmp_path / "m"),
                                                  "--export-dir", str(tmp_path / "e")),
                                   env=driver_env(), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
    ended: list[float] = []  # when the refused driver exited, seen by a thread while the other one trains

    def watch() -> None:
        refused.wait()
        ended.append(time.monotonic() - started)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # The S3 server listens on the bridge's address in this (the root) namespace: every host reaches it.
    server = start_s3_server(tmp_path / "s3", host=netns.GATEWAY)
    try:
        for name, value in server.env().items():  # for this process's own look at the export
            monkeypatch.setenv(name, value)
        storage.configure({})
        bucket = server.make_bucket(f"t-{secrets.token_hex(5)}")
        model, export = f"{bucket}/model", f"{bucket}/export"
        result = run_driver(auth_cluster, "--input-mode", "tensorflow", *RUN, "--model-dir", model, "--export-dir",
                            export, conf=auth_conf(secret_file), env=driver_env(**server.env()), timeout=RUN_S)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        nodes = dict(re.findall(r"^TF node (\S+) started on (\S+) \(", output, re.M))
        assert sorted(nodes.values()) == [h.hostname for h in network(auth_cluster).hosts[1:]], nodes
        assert server.secret_key not in output and secret_file.read_text().strip() not in output
        fs = server.filesystem()
        assert fs.find(f"{model[5:]}/prepared-48px"), "the shards were prepared onto S3"
        assert is_complete(export)
        history = json.loads(fs.cat_file(f"{export[5:]}/history.json"))
        assert [row["epoch"] for row in history] == [1, 2]
        assert load_model_bytes(fs.cat_file(f"{export[5:]}/model.keras")).input_shape == (None, 48, 48, 3)
    finally:
        stop_s3_server(server)
        watcher.join(timeout=max(1.0, REFUSED_S - (time.monotonic() - started)))
        if not ended:
            refused.kill()  # it must not outlive the test
    assert ended, "the driver without the secret did not end"
    check_refused(refused, log, ended[0], auth_cluster)
    assert wait_until(lambda: not job_processes(auth_cluster), CLEAN_S) is not None, job_processes(auth_cluster)
