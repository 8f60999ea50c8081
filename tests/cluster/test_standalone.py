"""A real Spark standalone cluster from the launcher (a master and 2 workers on 127.0.0.1): training in both
input modes with spark-submit, one TF node per worker, and start/stop/status when things go wrong."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, free_ports, run_train_job
from tests.spark.checks import EPOCH_LINE, SMALL_RUN, check_export
from tfos_facecnn.cluster import (
    STATE_FILE,
    ClusterInfo,
    ClusterProcess,
    cluster_processes,
    cluster_status,
    start_cluster,
    stop_cluster,
)

pytestmark = pytest.mark.spark
START_S = 240  # a cluster comes up in ~15 s here; other test runs may share the 2 cores


def start(state_dir: Path, **kwargs) -> ClusterInfo:
    port, webui_port = free_ports(2)
    # allow_oversubscribe: these tests check the cluster's behaviour, not its speed, on any core count
    settings = dict(workers=2, cores=1, memory="1g", port=port, webui_port=webui_port, state_dir=state_dir,
                    allow_oversubscribe=True, timeout_s=START_S)
    return start_cluster(**{**settings, **kwargs})


def cli(*args: str, timeout: int = START_S + 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfos_facecnn.cluster", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def gone(proc: ClusterProcess) -> bool:
    """The recorded process no longer runs (its PID is free, reused by another process, or a zombie)."""
    try:
        found = psutil.Process(proc.pid)
        return abs(found.create_time() - proc.create_time) > 0.05 or found.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def spark_daemons(info: ClusterInfo) -> list[psutil.Process]:
    """Spark master/worker/executor JVMs of this cluster, found by their command line (not the launcher's marker)."""
    port = info.master_url.rsplit(":", 1)[1]
    found = []
    for process in psutil.process_iter():
        try:
            command = " ".join(process.cmdline())
            if process.status() == psutil.STATUS_ZOMBIE or "org.apache.spark" not in command:
                continue
            if info.master_url in command or info.state_dir in command or f"--port {port} " in f"{command} ":
                found.append(process)
        except psutil.Error:
            continue
    return found


def assert_nothing_left(info: ClusterInfo) -> None:
    deadline = time.monotonic() + 30
    while (cluster_processes(info.token) or spark_daemons(info)) and time.monotonic() < deadline:
        time.sleep(0.2)  # executors exit shortly after their worker; poll that, with a deadline
    assert all(gone(proc) for proc in info.processes), [p for p in info.processes if not gone(p)]
    assert cluster_processes(info.token) == []
    assert spark_daemons(info) == []
    assert not (Path(info.state_dir) / STATE_FILE).exists()


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> ClusterInfo:
    info = start(tmp_path_factory.mktemp("standalone"))
    yield info
    stop_cluster(info.state_dir)


def app_dirs(info: ClusterInfo) -> dict[str, set[Path]]:
    work = Path(info.state_dir) / "work"
    return {p.role: set((work / p.role).glob("app-*")) for p in info.processes if p.role != "master"}


def train_on(info: ClusterInfo, mode: str, tmp_path: Path, *extra: str) -> dict:
    before = app_dirs(info)
    model, export = tmp_path / "model", tmp_path / "export"
    result = run_train_job(info.master_url, "--input-mode", mode, *SMALL_RUN, *extra, "--model-dir", str(model),
                           "--export-dir", str(export), timeout=780)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"starting 2 TF node(s) on {info.master_url} in {mode.upper()} mode" in output
    assert [int(n) for n in EPOCH_LINE.findall(output)] == [1, 2]
    # spark://127.0.0.1 is this machine: the job keeps the TF cluster spec on loopback
    assert sorted(re.findall(r"TF node (\S+) started on .* TF server 127\.0\.0\.1:\d+\)", output)) == [
        "chief:0", "worker:0"]
    check_export(export, epochs=2, workers=2)
    nodes = json.loads((model / "nodes.json").read_text())
    assert set(nodes) == {"chief:0", "worker:0"}
    assert len({n["executor_id"] for n in nodes.values()}) == 2
    assert len({n["pid"] for n in nodes.values()}) == 2
    # Each worker ran one executor of this job (a folder named by its Spark executor ID in the worker's own
    # work dir), and that executor's log in the run's logs says it started exactly one of the TF nodes.
    ran = {}
    for role, dirs in app_dirs(info).items():
        new = dirs - before[role]
        assert len(new) == 1, f"{role} ran {len(new)} executors of this job"
        executors = [d.name for d in new.pop().iterdir() if d.is_dir()]
        assert len(executors) == 1, f"{role} ran executors {executors}"
        log = "".join(p.read_text(errors="replace") for p in model.glob(f"logs/*/executor-{executors[0]}.log"))
        ran[role] = re.findall(r"Starting TensorFlow (\S+) (?:as|on) ", log)  # SPARK / TENSORFLOW mode
    assert sorted(name for names in ran.values() for name in names) == ["chief:0", "worker:0"], ran
    assert all(len(names) == 1 for names in ran.values()), ran
    return nodes


@pytest.mark.timeout(900)
def test_spark_mode_trains_one_node_per_worker(standalone: ClusterInfo, tmp_path: Path):
    # No --cluster-size: the driver counts nodes as spark.cores.max / spark.executor.cores (conf: 2 / 1)
    train_on(standalone, "spark", tmp_path)


@pytest.mark.timeout(900)
def test_tensorflow_mode_trains_one_node_per_worker(standalone: ClusterInfo, tmp_path: Path):
    train_on(standalone, "tensorflow", tmp_path, "--cluster-size", "2")
    assert list((tmp_path / "model").glob("prepared-48px*")), "TENSORFLOW mode prepares its shards first"


@pytest.mark.timeout(300)
def test_second_start_is_refused(standalone: ClusterInfo):
    before = {p.pid for p in cluster_processes(standalone.token)}
    with pytest.raises(RuntimeError, match="is already running .*stop it first"):
        start(Path(standalone.state_dir))
    result = cli("start", "--state-dir", standalone.state_dir, "--allow-oversubscribe")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: a cluster from")
    assert standalone.master_url in result.stderr
    assert {p.pid for p in cluster_processes(standalone.token)} == before
    assert cluster_status(standalone.state_dir).state == "running"
    status = cli("status", "--state-dir", standalone.state_dir)
    assert status.returncode == 0 and status.stdout.startswith(f"running: {standalone.master_url}")
    assert "2 of 2 worker(s) registered" in status.stdout


@pytest.mark.timeout(300)
def test_stop_ends_every_process_of_the_cluster(standalone: ClusterInfo):
    recorded = {p.pid for p in standalone.processes}
    assert recorded <= {p.pid for p in cluster_processes(standalone.token)}
    assert len(spark_daemons(standalone)) >= 3, "the command-line census must see the master and workers"
    stopped = stop_cluster(standalone.state_dir)
    assert recorded <= set(stopped)
    assert_nothing_left(standalone)
    assert cluster_status(standalone.state_dir).state == "stopped"
    assert stop_cluster(standalone.state_dir) == []  # stopping again is harmless


BAD_SETTINGS = [
    (["--workers", "0"], "--workers 0: must be 1 or more"),
    (["--cores", "-1"], "--cores -1: must be 1 or more"),
    (["--memory", "2x"], "--memory '2x': give memory per worker as a number with m or g"),
    (["--memory", "0g"], "--memory '0g'"),
    (["--port", "70000"], "--port 70000: must be a TCP port"),
    (["--workers", str((os.cpu_count() or 1) + 1)], "cores, but this machine has"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args,message", BAD_SETTINGS)
def test_bad_settings_are_one_line_errors(args: list[str], message: str, tmp_path: Path):
    result = cli("start", *args, "--state-dir", str(tmp_path / "c"), timeout=100)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.timeout(120)
def test_oversubscribe_names_the_fix():
    with pytest.raises(ValueError, match=r"= \d+ cores, but this machine has \d+: .*--allow-oversubscribe"):
        start_cluster(workers=(os.cpu_count() or 1) + 1, cores=1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("busy_option", ["--port", "--webui-port"])
def test_busy_port_is_refused_and_starts_nothing(busy_option: str, tmp_path: Path):
    port, other = free_ports(2)
    ports = {"--port": port, "--webui-port": other} if busy_option == "--port" else {"--port": other,
                                                                                      "--webui-port": port}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(RuntimeError, match=rf"{busy_option} {port}: 127\.0\.0\.1:{port} is already in use"):
            start(tmp_path / "api", port=ports["--port"], webui_port=ports["--webui-port"])
        result = cli("start", "--port", str(ports["--port"]), "--webui-port", str(ports["--webui-port"]),
                     "--state-dir", str(tmp_path / "cli"), "--allow-oversubscribe")
    assert result.returncode == 1
    assert result.stderr == f"error: {busy_option} {port}: 127.0.0.1:{port} is already in use (another Spark " \
                            f"master or program); stop it or choose another port with {busy_option}\n"
    for state in ("api", "cli"):
        assert not (tmp_path / state / STATE_FILE).exists()
    probe = ClusterInfo(f"spark://127.0.0.1:{ports['--port']}", "", "", str(tmp_path), 2, 1, "1g", "none", ())
    assert spark_daemons(probe) == []


@pytest.mark.timeout(400)
def test_stop_after_a_worker_crashed(tmp_path: Path):
    info = start(tmp_path / "c")
    try:
        crashed = next(p for p in info.processes if p.role == "worker-1")
        os.kill(crashed.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while cluster_status(info.state_dir).state != "degraded" and time.monotonic() < deadline:
            time.sleep(0.1)  # SIGKILL lands within milliseconds; poll the status, with a deadline
        status = cluster_status(info.state_dir)
        assert status.alive == {"master": True, "worker-1": False, "worker-2": True}
        assert cli("status", "--state-dir", info.state_dir).returncode == 1
        stopped = stop_cluster(info.state_dir)
        assert crashed.pid not in stopped
        assert {p.pid for p in info.processes if p is not crashed} <= set(stopped)
        assert_nothing_left(info)
    finally:
        stop_cluster(info.state_dir)


@pytest.mark.timeout(400)
def test_stale_state_file_is_cleaned_up_on_start(tmp_path: Path):
    # A cluster that died without `stop` leaves a state file naming processes that no longer run.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    born = psutil.Process(dead.pid).create_time()
    dead.wait()
    state = tmp_path / "c"
    state.mkdir()
    stale = ClusterInfo("spark://127.0.0.1:1", "http://127.0.0.1:2", str(state / "logs"), str(state), 2, 1, "1g",
                        "stale-token", (ClusterProcess("master", dead.pid, born, str(state / "logs/master.log")),))
    (state / STATE_FILE).write_text(json.dumps(asdict(stale)))
    status = cli("status", "--state-dir", str(state))
    assert status.returncode == 1 and status.stdout.startswith("stale: ")

    port, webui_port = free_ports(2)
    started = cli("start", "--workers", "2", "--cores", "1", "--memory", "1g", "--port", str(port), "--webui-port",
                  str(webui_port), "--state-dir", str(state), "--allow-oversubscribe", "--timeout", str(START_S))
    info = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"removed the stale state file {state / STATE_FILE}" in started.stdout
        assert f"master URL: spark://127.0.0.1:{port}" in started.stdout
        assert f"web UI:     http://127.0.0.1:{webui_port}" in started.stdout
        assert f"logs:       {state / 'logs'}" in started.stdout
        info = cluster_status(state).info
        assert info is not None and info.token != "stale-token" and len(info.processes) == 3
        running = cli("status", "--state-dir", str(state))
        assert running.returncode == 0 and "2 of 2 worker(s) registered" in running.stdout, running.stdout
        stopped = cli("stop", "--state-dir", str(state))
        assert stopped.returncode == 0 and stopped.stdout.startswith("stopped 3 process(es)"), stopped.stdout
        assert_nothing_left(info)
    finally:
        stop_cluster(state)
