"""A job whose driver servers (TFoS reservations, node events) are attacked while it runs: a pickled
payload that runs a shell command when unpickled, a forged 'failed' event, and clients that send a
byte a second without end. Nothing runs, nothing is believed, and the job trains to its end."""

from __future__ import annotations

import json
import pickle
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, spark_env, train_command

pytestmark = pytest.mark.spark

# printed before the job starts its own servers: ports the driver listens on by then are pyspark's
BEFORE_OUR_SERVERS = re.compile(r"^data train: ", re.M)


def _python_driver_ports(root: psutil.Process) -> set[int]:
    ports = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            if "python" in process.name() and any("train.py" in part for part in process.cmdline()):
                ports |= {c.laddr.port for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return ports


def _payload(marker: Path) -> bytes:
    class RunsAShellCommand:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    data = pickle.dumps({"type": "REG", "data": RunsAShellCommand()})
    return struct.pack(">I", len(data)) + data


def _attack_once(port: int, marker: Path) -> None:
    forged = json.dumps({"kind": "failed", "node": "chief:0", "error": "forged", "token": "guess"}).encode()
    for message in (_payload(marker), forged):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(message)
        except OSError:
            continue  # a server that hangs up on it is doing its job


def _trickle(port: int, stop: threading.Event) -> None:
    """A byte a second, over and over: a new connection whenever the server drops the last one."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                while not stop.wait(1.0):  # the trickle's pace
                    conn.sendall(b"\0")
        except OSError:
            continue


@pytest.mark.timeout(600)
def test_attacks_on_the_driver_servers_run_nothing_and_the_job_carries_on(tmp_path: Path):
    marker = tmp_path / "pwned"
    export = tmp_path / "export"
    command = train_command("local[*]", "--input-mode", "spark", "--epochs", "6", "--image-size", "48",
                            "--batch-size", "8", "--no-report", "--model-dir", str(tmp_path / "model"),
                            "--export-dir", str(export))
    log = tmp_path / "console.log"
    stop, attacked, trickles = threading.Event(), set(), []
    before: set[int] | None = None
    pyspark_ports: set[int] = set()
    with open(log, "w") as out:
        job = subprocess.Popen(command, env=spark_env(), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
        root = psutil.Process(job.pid)
        deadline = time.monotonic() + 540
        try:
            while job.poll() is None and time.monotonic() < deadline:
                ports = _python_driver_ports(root)  # sampled before the log is read: none of ours yet
                if before is None:
                    if not BEFORE_OUR_SERVERS.search(log.read_text()):
                        pyspark_ports = ports
                    else:
                        before = pyspark_ports
                else:
                    for port in ports - before - attacked:
                        attacked.add(port)
                        _attack_once(port, marker)
                        trickles.append(threading.Thread(target=_trickle, args=(port, stop), daemon=True))
                        trickles[-1].start()
                time.sleep(0.2)  # the census's sampling interval, not a wait for the job
        finally:
            stop.set()
        if job.poll() is None:
            job.kill()
            pytest.fail("the job did not finish within 540 s")
    output = log.read_text()
    assert job.returncode == 0, output[-4000:]
    assert len(attacked) >= 2, f"found {attacked}: the test did not reach the reservation and event servers"
    assert not marker.exists(), "a pickled payload ran in the driver"
    assert "forged" not in output
    # The executors' own lines (TFoS's reservation log among them) go to the run's log files, not the console.
    run_logs = "".join(path.read_text() for path in (tmp_path / "model" / "logs").glob("*/*.log"))
    assert "TFSparkNode.reserve: " in run_logs and "'authkey': <redacted>" in run_logs
    assert "'authkey': b" not in output + run_logs
    history = json.loads((export / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, 7))
