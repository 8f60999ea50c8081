"""Two SPARK-mode nodes on local-cluster from a plain spark-submit: every socket stays on loopback without
SPARK_LOCAL_IP, and every training image is trained on in every epoch, counted at a size where a node's
share is many times what its input pipeline reads ahead (at the 48 px sample's 112 images it is not: a
node's read-ahead and queue room hold more than its whole share). One run checks both: each costs a
two-executor cluster's start-up."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, job_command, spark_env, write_image
from tests.spark.checks import EPOCH_LINE, check_every_image_fed, check_export
from tfos_facecnn.modes.spark import TOP_UP_TOLERANCE

pytestmark = pytest.mark.spark

PAIRS = 1200  # 2,400 generated images: ~1,680 training images, ~840 per node per epoch
EPOCHS, BATCH, SIZE = 2, 32, 40
RUN_S = 540
CENSUS_S = 0.5  # sampling interval of the socket census, not a wait for the job


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # the JVM's '::ffff:127.0.0.1'
    return (mapped or ip).is_loopback


def job_sockets(root: psutil.Process) -> list:
    found = []
    for process in [root, *root.children(recursive=True)]:
        try:
            found += [(process.pid, c) for c in process.net_connections(kind="inet")]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run_with_socket_census(command: list[str], env: dict[str, str], log: Path) -> tuple[int, str, set, set]:
    """The job's exit code and output, the (ip, port) pairs its processes listened on, and the addresses
    they connected to."""
    listening, remote = set(), set()
    with open(log, "w") as out:
        job = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
        root = psutil.Process(job.pid)
        deadline = time.monotonic() + RUN_S
        while job.poll() is None and time.monotonic() < deadline:
            for _pid, conn in job_sockets(root):
                if conn.status == psutil.CONN_LISTEN:
                    listening.add((conn.laddr.ip, conn.laddr.port))
                elif conn.raddr:
                    remote.add(conn.raddr.ip)
            time.sleep(CENSUS_S)
        if job.poll() is None:
            job.kill()
            pytest.fail(f"the job did not finish within {RUN_S} s")
    return job.returncode, log.read_text(), listening, remote


@pytest.mark.timeout(600)
def test_two_nodes_stay_on_loopback_without_spark_local_ip_and_train_on_every_image_once_per_epoch(tmp_path: Path):
    data = tmp_path / "data"
    for i in range(PAIRS):  # distinct seeds: a face and a comic with equal pixels would both be skipped
        write_image(data / "faces" / f"{i}.jpg", seed=i)
        write_image(data / "comics" / f"{i}.jpg", seed=PAIRS + i)
    model, export = tmp_path / "model", tmp_path / "export"
    command = job_command("train.py", "local-cluster[2,1,1024]", "--input-mode", "spark", "--data-dir", str(data),
                          "--epochs", str(EPOCHS), "--image-size", str(SIZE), "--batch-size", str(BATCH), "--no-report",
                          "--model-dir", str(model), "--export-dir", str(export))
    env = {k: v for k, v in spark_env().items() if k != "SPARK_LOCAL_IP"}  # a plain spark-submit
    code, output, listening, remote = run_with_socket_census(command, env, tmp_path / "driver.log")
    assert code == 0, output[-4000:]

    # Loopback: the job keeps every socket there itself.
    assert "SPARK_LOCAL_IP is not set: starting the driver again with SPARK_LOCAL_IP=127.0.0.1" in output
    assert [int(n) for n in EPOCH_LINE.findall(output)] == [1, 2]
    tf_servers = re.findall(r"TF node (chief:0|worker:0) started on .* TF server ([\d.]+):(\d+)\)", output)
    assert sorted(node for node, _, _ in tf_servers) == ["chief:0", "worker:0"]
    assert all(loopback(host) for _, host, _ in tf_servers)
    tf_ports = {int(port) for _, _, port in tf_servers}
    # TF's gRPC server listens on all interfaces whatever its address says (README, Security): every
    # other listening socket of the job (Spark, TFoS, our event channel) must be loopback only.
    exposed = {(ip, port) for ip, port in listening if not loopback(ip) and port not in tf_ports}
    assert not exposed, f"sockets listening beyond loopback: {exposed}"
    assert listening, "the socket census saw nothing: it is not measuring"
    assert all(loopback(ip) for ip in remote), remote
    check_export(export, epochs=EPOCHS, workers=2, image_size=SIZE)
    check_every_image_fed(model, export, epochs=EPOCHS, batch=BATCH)

    # Every image: Spark fed each epoch in full (every training image once, plus the repeats of the last batch).
    train = json.loads((export / "data.json").read_text())["counts"]["train"]["total"]
    steps = -(-train // BATCH)
    nodes = json.loads((model / "nodes.json").read_text())
    assert sorted(nodes) == ["chief:0", "worker:0"]
    assert sum(node["items_fed"] + node["items_dropped"] for node in nodes.values()) == EPOCHS * steps * BATCH
    for name, node in nodes.items():
        assert node["steps_per_epoch"] == steps and node["epochs_run"] == EPOCHS, (name, node)
        needed = EPOCHS * steps * node["per_replica_batch"]
        slack = TOP_UP_TOLERANCE * needed + node["top_up_read_ahead"]
        # neither node ran dry (it would have trained on repeats beyond its read-ahead) nor was fed
        # much more than it trained on (those images were dropped at the end, never trained on)
        assert node["images_topped_up"] <= slack, (name, node, needed)
        assert node["items_dropped"] <= slack, (name, node, needed)
        assert abs(node["items_fed"] - needed) <= slack, (name, node, needed)
    assert "warning: Spark fed TF node" not in output
