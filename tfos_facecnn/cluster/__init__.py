"""A Spark standalone cluster on this machine (one master, N workers) for TFoS jobs: start, stop, status.

The processes come from pyspark's own `bin/spark-class`, bound to one address (127.0.0.1 by default); their
PIDs and start times go into a JSON state file, so `stop` ends exactly them and never a recycled PID.
The command line is in `__main__.py` (`python -m tfos_facecnn.cluster --help`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..netns import Network, create_network, destroy_network, host_command

try:
    import psutil
except ImportError as e:  # tells PIDs apart from recycled ones: a hard need, so say how to get it
    raise ImportError("the cluster launcher needs psutil: pip install 'psutil>=5.9' (or '.[test]')") from e

STATE_FILE = "cluster.json"
AUTH_SECRET_ENV = "_SPARK_AUTH_SECRET"  # where Spark's daemons read spark.authenticate's secret from
# Set on every cluster process; Spark passes its environment on to executors and their Python workers,
# so `stop` finds what a crashed worker left behind, and never anything else.
MARKER_ENV = "TFOS_FACECNN_CLUSTER"
MEMORY_RE = re.compile(r"^[1-9]\d*[mg]$", re.IGNORECASE)
START_TIMEOUT_S = 120.0  # JVM start-up + registration takes ~10 s idle; a loaded 2-core machine is slower
STOP_TIMEOUT_S = 20.0
POLL_S = 0.25  # interval between checks of a real condition (the master's worker table)
SAME_START_S = 0.05  # psutil's create_time is exact to a clock tick (10 ms) for one process


@dataclass(frozen=True)
class ClusterProcess:
    role: str  # "master" or "worker-N"
    pid: int  # also its process group id: each one is started in its own session
    create_time: float  # with the PID, identifies the process: a PID alone may be recycled
    log: str


@dataclass(frozen=True)
class ClusterInfo:
    master_url: str
    webui_url: str
    log_dir: str
    state_dir: str
    workers: int
    cores: int
    memory: str
    token: str  # value of MARKER_ENV in this cluster's processes
    processes: tuple[ClusterProcess, ...]
    network: dict[str, Any] | None = None  # netns.Network.to_dict() of a multi-host cluster (--netns), else None
    auth_secret_file: str | None = None  # spark.authenticate on, with the secret in this file


@dataclass(frozen=True)
class ClusterStatus:
    state: str  # running | degraded (some recorded process gone) | stale (none alive) | stopped (no state)
    info: ClusterInfo | None
    alive: dict[str, bool]  # role -> recorded process still running
    registered_workers: int | None  # ALIVE workers in the master's table; None when it does not answer


def spark_home() -> Path:
    """The Spark distribution inside the pyspark package: the same jars spark-submit uses."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").exists():
        raise RuntimeError(f"{home}/bin/spark-class is missing: reinstall pyspark (pip install --force-reinstall)")
    return home


def check_settings(workers: int, cores: int, memory: str, port: int, webui_port: int,
                   allow_oversubscribe: bool = False) -> None:
    """Refuses settings the cluster cannot run with, naming the option and the fix (ValueError)."""
    for option, value in (("--workers", workers), ("--cores", cores)):
        if value < 1:
            raise ConfigError(f"{option} {value}: must be 1 or more")
    if not MEMORY_RE.match(memory):
        raise ConfigError(f"--memory {memory!r}: give memory per worker as a number with m or g, e.g. 2g or 512m")
    for option, value in (("--port", port), ("--webui-port", webui_port)):
        if not 1 <= value <= 65535 or (option == "--webui-port" and value == port):
            raise ConfigError(f"{option} {value}: must be a TCP port from 1 to 65535, and the two ports must differ")
    # The cores this process may use: a container's or taskset's limit, not the host's count.
    have = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers * cores > have and not allow_oversubscribe:
        fit = f"--workers {have // cores}" if have >= cores else f"--workers 1 --cores {have}"
        raise ConfigError(
            f"--workers {workers} x --cores {cores} = {workers * cores} cores, but this machine has {have}: "
            f"TF nodes sharing cores run slower than fewer nodes; use {fit}, or pass --allow-oversubscribe"
        )


def check_port_free(host: str, port: int, option: str) -> None:
    """Fails before anything starts if host:port is taken, instead of a JVM dying with a bind error."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM: a TIME_WAIT port is free
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise RuntimeError(f"{option} {port}: {host}:{port} is already in use (another Spark master or "
                                   f"program); stop it or choose another port with {option}") from None
            raise ConfigError(f"--host {host}: cannot listen on {host}:{port} ({e.strerror}); "
                             "use an address of this machine, e.g. 127.0.0.1") from None


def read_state(state_dir: str | Path) -> ClusterInfo | None:
    path = Path(state_dir) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        raw["processes"] = tuple(ClusterProcess(**p) for p in raw["processes"])
        raw["network"] = raw.get("network")
        return ClusterInfo(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:  # never guess PIDs to kill from a damaged file
        raise RuntimeError(f"state file {path} is unreadable ({e}); check that no cluster from it runs "
                           "(python -m tfos_facecnn.cluster status), then delete the file") from None


def _record(info: ClusterInfo, proc: ClusterProcess) -> ClusterInfo:
    """Adds a process and saves the state at once: a launcher killed mid-start leaves a state stop can use."""
    info = ClusterInfo(**{**asdict(info), "processes": (*info.processes, proc)})
    _save(info)
    return info


def _save(info: ClusterInfo) -> None:
    path = Path(info.state_dir) / STATE_FILE
    path.with_suffix(".tmp").write_text(json.dumps(asdict(info), indent=2))
    os.replace(path.with_suffix(".tmp"), path)  # a reader sees the old or the new state, never half a file


def _live(proc: ClusterProcess):
    """The recorded process while it runs; None once it exited or its PID belongs to another process."""
    try:
        found = psutil.Process(proc.pid)
        if abs(found.create_time() - proc.create_time) > SAME_START_S:
            return None
        if found.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)  # our own child (Python API): reap it
            return None
        return found
    except psutil.Error:
        return None


def cluster_processes(token: str) -> list:
    """Every running process carrying this cluster's marker: master, workers, executors, Python workers."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER_ENV) == token and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:  # other users' processes, or gone meanwhile
            continue
    return found


def _terminate(info: ClusterInfo, timeout_s: float) -> list[int]:
    leaders = [p for p in (_live(proc) for proc in info.processes) if p is not None]
    targets = {p.pid: p for p in [*leaders, *cluster_processes(info.token)]}
    for process in targets.values():
        with contextlib.suppress(psutil.Error):
            process.terminate()  # a worker ends its executors on SIGTERM; psutil refuses a recycled PID
    _, alive = psutil.wait_procs(list(targets.values()), timeout=timeout_s)
    for process in alive:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if process.pid in {p.pid for p in leaders} and process.is_running():
                os.killpg(process.pid, signal.SIGKILL)  # its group: the leader's PID is the group id
            else:
                process.kill()
    psutil.wait_procs(alive, timeout=5)
    if info.network:  # what is left in the hosts (a process that escaped the marker) goes with them
        targets.update(dict.fromkeys(destroy_network(Network.from_dict(info.network))))
    return sorted(targets)


def stop_cluster(state_dir: str | Path = ".spark-cluster", timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
    """Ends the recorded cluster (SIGTERM, SIGKILL after timeout_s), removes its state file, returns the PIDs ended."""
    info = read_state(state_dir)
    if info is None:
        return []
    stopped = _terminate(info, timeout_s)
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
    return stopped


def registered_workers(webui_url: str) -> int:
    """ALIVE workers in the master's JSON status; raises OSError/ValueError while the master does not answer."""
    # No proxy: an http_proxy in the environment must not route a loopback request off the machine.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{webui_url}/json/", timeout=5) as answer:
        status: dict[str, Any] = json.load(answer)
    listed = sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")
    return min(listed, int(status.get("aliveworkers", listed)))


def cluster_status(state_dir: str | Path = ".spark-cluster") -> ClusterStatus:
    info = read_state(state_dir)
    if info is None:
        return ClusterStatus("stopped", None, {}, None)
    alive = {proc.role: _live(proc) is not None for proc in info.processes}
    registered = None
    if alive.get("master"):
        with contextlib.suppress(OSError, ValueError):
            registered = registered_workers(info.webui_url)
    state = "running" if all(alive.values()) else "degraded" if any(alive.values()) else "stale"
    return ClusterStatus(state, info, alive, registered)


def _spawn(home: Path, role: str, args: list[str], env: dict[str, str], log_dir: Path,
           on_host: Callable[[list[str]], list[str]] = list) -> ClusterProcess:
    log = log_dir / f"{role}.log"
    with open(log, "ab") as out:
        child = subprocess.Popen(
            on_host([str(home / "bin" / "spark-class"), *args]), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, env=env, start_new_session=True,  # own group: stop can end what it spawns
        )
    # spark-class (and netns.host_command) exec java: same PID, so this is the JVM's start time (an exited child is
    # an unreaped zombie)
    return ClusterProcess(role, child.pid, psutil.Process(child.pid).create_time(), str(log))


def _wait_for_workers(info: ClusterInfo, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for proc in info.processes:
            if _live(proc) is None:
                raise RuntimeError(f"the {proc.role} exited during start-up; see {proc.log}")
        try:
            have = registered_workers(info.webui_url)
            if have >= info.workers:
                return
            waiting = f"{have} of {info.workers} workers registered"
        except (OSError, ValueError) as e:
            waiting = f"the master's web UI does not answer yet ({e})"
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster did not come up within {timeout_s:.0f} s: {waiting}; see the logs in "
                               f"{info.log_dir} (on a busy machine pass a longer --timeout)")
        time.sleep(POLL_S)


def start_cluster(workers: int = 2, cores: int = 1, memory: str = "2g", host: str = "127.0.0.1", port: int = 7077,
                  webui_port: int = 8080, state_dir: str | Path = ".spark-cluster", allow_oversubscribe: bool = False,
                  timeout_s: float = START_TIMEOUT_S, say: Callable[[str], None] | None = None, netns: int = 0,
                  auth_secret_file: str | Path | None = None) -> ClusterInfo:
    """Starts a master and `workers` workers, returns once every worker has registered with the master.

    netns N > 0: N hosts as network namespaces (netns.py), the master on the first, one worker on each other
    (`workers` must then be N - 1), every process bound to its host's address. auth_secret_file: Spark's
    authentication on, every daemon holding the file's secret (a driver must then hold it too).
    Raises ValueError for bad settings and RuntimeError when a cluster already runs from state_dir, a port is
    taken, or the cluster does not come up (then nothing it started is left running, namespaces included).
    """
    if netns and workers != netns - 1:
        raise ConfigError(f"--netns {netns} gives {netns - 1} worker host(s) beside the master's; "
                         f"--workers {workers} differs: leave --workers out")
    check_settings(workers, cores, memory, port, webui_port, allow_oversubscribe)
    secret = read_secret(auth_secret_file) if auth_secret_file is not None else None
    state = Path(state_dir).resolve()
    old = read_state(state)
    if old is not None:
        if any(_live(proc) for proc in old.processes):
            raise RuntimeError(f"a cluster from {state} is already running ({old.master_url}); stop it first: "
                               f"python -m tfos_facecnn.cluster stop --state-dir {state_dir}")
        ended = stop_cluster(state)  # no recorded process is alive: end its leftovers, drop the file
        if say:
            say(f"removed the stale state file {state / STATE_FILE}: no recorded process was running "
                f"({len(ended)} leftover process(es) ended)")
    if not netns:
        check_port_free(host, port, "--port")
        check_port_free(host, webui_port, "--webui-port")
    home = spark_home()
    log_dir = state / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    network = create_network(netns, say=say) if netns else None  # raises before anything else exists
    master = network.hosts[0].address if network else host
    info = ClusterInfo(f"spark://{master}:{port}", f"http://{master}:{webui_port}", str(log_dir), str(state),
                       workers, cores, memory, uuid.uuid4().hex, (), network.to_dict() if network else None,
                       None if auth_secret_file is None else str(Path(auth_secret_file).resolve()))
    try:
        _save(info)  # the namespaces are recorded before any process: `stop` removes them whatever happens next
        info = _record(info, _spawn(home, "master", ["org.apache.spark.deploy.master.Master", "--host", master,
                                                     "--port", str(port), "--webui-port", str(webui_port)],
                                    _env(info, master, secret), log_dir, _on_host(info, 0)))
        for n in range(1, workers + 1):
            worker = _spawn(home, f"worker-{n}", _worker_args(info, n), _env(info, _address(info, n), secret), log_dir,
                            _on_host(info, n))
            info = _record(info, worker)
        _wait_for_workers(info, timeout_s)
    except BaseException:  # includes Ctrl-C: leave no half-started cluster behind (namespaces included)
        _terminate(info, STOP_TIMEOUT_S)
        (state / STATE_FILE).unlink(missing_ok=True)
        raise
    return info


def restart_worker(state_dir: str | Path, role: str, timeout_s: float = START_TIMEOUT_S) -> ClusterInfo:
    """Starts a recorded worker that is gone (its process or its whole host was killed) again, as `start` did,
    and returns once every worker is registered. Raises RuntimeError if it still runs."""
    info = read_state(state_dir)
    if info is None or role not in {p.role for p in info.processes} or not role.startswith("worker-"):
        raise RuntimeError(f"no worker {role!r} recorded in {state_dir}")
    if any(p.role == role and _live(p) for p in info.processes):
        raise RuntimeError(f"{role} of {info.master_url} still runs; stop it first")
    n = int(role.split("-")[1])
    secret = read_secret(info.auth_secret_file) if info.auth_secret_file else None
    proc = _spawn(spark_home(), role, _worker_args(info, n), _env(info, _address(info, n), secret),
                  Path(info.log_dir), _on_host(info, n))
    info = _record(replace(info, processes=tuple(p for p in info.processes if p.role != role)), proc)
    _wait_for_workers(info, timeout_s)
    return info


def _address(info: ClusterInfo, n: int) -> str:
    """The address process n (0: the master, n: worker-n) binds: its host's, or the one --host of all."""
    if info.network:
        return Network.from_dict(info.network).hosts[n].address
    return info.master_url.removeprefix("spark://").rsplit(":", 1)[0]


def _on_host(info: ClusterInfo, n: int) -> Callable[[list[str]], list[str]]:
    """How to run process n's command: on its own host (netns) or as it is."""
    return partial(host_command, Network.from_dict(info.network).hosts[n]) if info.network else list


def _worker_args(info: ClusterInfo, n: int) -> list[str]:
    # Each worker has its own work dir (its executors' logs and files) and a web UI on a free port.
    return ["org.apache.spark.deploy.worker.Worker", "--cores", str(info.cores), "--memory", info.memory,
            "--host", _address(info, n), "--webui-port", "0", "--work-dir",
            str(Path(info.state_dir) / "work" / f"worker-{n}"), info.master_url]


def _env(info: ClusterInfo, address: str, secret: str | None) -> dict[str, str]:
    env = {
        **os.environ, "SPARK_HOME": str(spark_home()), MARKER_ENV: info.token,
        # The address of every socket of the process and of the executors it starts.
        "SPARK_LOCAL_IP": address, "SPARK_MASTER_HOST": _address(info, 0),
        # Executors inherit this; the driver's own PYSPARK_PYTHON still decides what they run.
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        # The master's REST submission server takes no credentials and a fixed port (6066): keep it off.
        "SPARK_MASTER_OPTS": f"{os.environ.get('SPARK_MASTER_OPTS', '')} -Dspark.master.rest.enabled=false".strip(),
    }
    if secret is not None:
        # In the environment, which only root and the owner can read, not on a command line (ps shows those).
        env[AUTH_SECRET_ENV] = secret
        env["SPARK_DAEMON_JAVA_OPTS"] = f"{os.environ.get('SPARK_DAEMON_JAVA_OPTS', '')} -Dspark.authenticate=true"
    return env


def read_secret(path: str | Path) -> str:
    """The secret of --auth-secret-file: refuses a missing, empty or world-readable file."""
    try:
        secret = Path(path).read_text().strip()
        mode = Path(path).stat().st_mode
    except OSError as e:
        raise ConfigError(f"--auth-secret-file {path}: cannot read it ({e.strerror}); create it, e.g. "
                         f"openssl rand -hex 32 > {path} && chmod 600 {path}") from e
    if not secret or "\n" in secret:
        raise ConfigError(f"--auth-secret-file {path}: give one line holding the secret, e.g. openssl rand -hex 32")
    if mode & stat.S_IROTH:
        raise ConfigError(f"--auth-secret-file {path}: every user of this machine can read it; chmod 600 {path}")
    return secret
