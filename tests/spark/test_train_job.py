"""spark-submit jobs/train.py end to end, on local[*] and local-cluster, all on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, SAMPLE, run_train_job, spark_env, train_command
from tests.spark.checks import EPOCH_LINE, SMALL_RUN, check_every_image_fed, check_export

pytestmark = pytest.mark.spark
SMALL = ["--input-mode", "spark", *SMALL_RUN]


@pytest.mark.timeout(600)
def test_local_star_trains_exports_and_skips_bad_files(sample_copy: Path, tmp_path: Path):
    (sample_copy / "faces" / "notes.jpg").write_text("not an image")
    truncated = (SAMPLE / "comics" / "5.jpg").read_bytes()
    (sample_copy / "comics" / "broken.jpg").write_bytes(truncated[: len(truncated) // 4])
    export = tmp_path / "export"
    result = run_train_job("local[*]", *SMALL, "--data-dir", str(sample_copy),
                           "--model-dir", str(tmp_path / "model"), "--export-dir", str(export), timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [int(n) for n in EPOCH_LINE.findall(result.stdout)] == [1, 2]
    metrics = check_export(export, epochs=2, workers=1)
    data = json.loads((export / "data.json").read_text())
    skipped = {Path(item["path"]).name: item["reason"] for item in data["skipped"]}
    assert set(skipped) == {"notes.jpg", "broken.jpg"}
    assert "not an image" in skipped["notes.jpg"] and "corrupt" in skipped["broken.jpg"]
    assert metrics["skipped"] == 2
    total = sum(c["total"] for c in data["counts"].values())
    assert total == 70  # the 70 good sample images, the two bad ones left out


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


@pytest.mark.timeout(600)
def test_local_cluster_two_nodes_stay_on_loopback_without_spark_local_ip(tmp_path: Path):
    """A plain spark-submit, without SPARK_LOCAL_IP: the job keeps every socket on loopback itself."""
    export = tmp_path / "export"
    env = {k: v for k, v in spark_env().items() if k != "SPARK_LOCAL_IP"}
    command = train_command("local-cluster[2,1,1024]", *SMALL, "--model-dir", str(tmp_path / "model"),
                            "--export-dir", str(export))
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        job = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
        root = psutil.Process(job.pid)
        listening, remote = set(), set()
        deadline = time.monotonic() + 540
        while job.poll() is None and time.monotonic() < deadline:
            for _pid, conn in job_sockets(root):
                if conn.status == psutil.CONN_LISTEN:
                    listening.add((conn.laddr.ip, conn.laddr.port))
                elif conn.raddr:
                    remote.add(conn.raddr.ip)
            time.sleep(0.5)  # sampling interval of the socket census, not a wait for the job
        if job.poll() is None:
            job.kill()
            pytest.fail("the job did not finish within 540 s")
    output = log.read_text()
    assert job.returncode == 0, output[-4000:]
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
    check_export(export, epochs=2, workers=2)
    check_every_image_fed(tmp_path / "model", export, epochs=2, batch=8)


BAD_INPUTS = [
    (["--data-dir", "/nonexistent/faces"], 2, "does not exist"),
    (["--variant", "huge"], 2, "invalid choice: 'huge'"),
    (["--batch-size", "0"], 2, "'batch_size': 0 is out of range"),
    (["--epochs", "-1"], 2, "'epochs': -1 is out of range"),
    (["--cluster-size", "2"], 2, "has one executor"),
    (["--input-mode", "magic"], 2, "invalid choice: 'magic'"),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("args,code,message", BAD_INPUTS)
def test_bad_input_stops_before_spark_with_one_line(args, code, message, tmp_path):
    result = run_train_job("local[*]", *args, "--export-dir", str(tmp_path / "e"), timeout=240)
    output = result.stdout + result.stderr  # spark-submit merges the driver's stderr into stdout
    assert result.returncode == code, output[-2000:]
    assert message in output
    assert "Traceback" not in output
    assert "SparkContext: Running Spark version" not in output
    assert not (tmp_path / "e").exists()


@pytest.mark.timeout(300)
def test_missing_class_folder(tmp_path):
    (tmp_path / "data" / "faces").mkdir(parents=True)
    (tmp_path / "data" / "faces" / "a.jpg").write_bytes((SAMPLE / "faces" / "0.jpg").read_bytes())
    result = run_train_job("local[*]", "--data-dir", str(tmp_path / "data"), timeout=240)
    assert result.returncode == 2
    assert "class folder 'comics/' is missing" in result.stdout + result.stderr
