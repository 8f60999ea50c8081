"""Helpers of the multi-host tests (tests/cluster/test_multihost.py): a standalone cluster whose master and
workers each run on their own host (a network namespace, tfos_facecnn/netns.py), a driver on the master's host,
faults, and what runs and listens on each host."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.background_job import BackgroundJob
from tests.conftest import REPO, job_command, spark_env
from tfos_facecnn import netns
from tfos_facecnn.cluster import ClusterInfo, start_cluster
from tfos_facecnn.netns import Host, Network

# .ci/run sets this to 1: there the multi-host tests must run, and a machine that cannot run them fails them.
REQUIRE_ENV = "TFOS_FACECNN_REQUIRE_NETNS"
START_S = 240  # a 3-host cluster comes up in ~20 s here; other test runs may share the 2 cores
POLL_S = 0.2  # between looks at a real condition (a process list, a log line)
STARTED = re.compile(r"^TF node (\S+) started on (\S+) \(pid (\d+), TF server ([\d.]+):(\d+)\)$", re.M)
LISTEN = re.compile(r"^LISTEN\s+\d+\s+\d+\s+(\S+):(\d+)\s+\S+\s+users:\(\(\"([^\"]+)\",pid=(\d+)")


def require_netns() -> None:
    """Skips (fails where REQUIRE_ENV=1) when this machine cannot make network namespaces."""
    reason = netns.unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 (CI), but the multi-host tests cannot run here: {reason}")
    pytest.skip(reason)


def start(state_dir: Path, hosts: int = 3, **kwargs) -> ClusterInfo:
    """A master on the first host and a 1-core worker on each other; every process on its host's address."""
    settings = dict(workers=hosts - 1, cores=1, memory="1g", state_dir=state_dir, allow_oversubscribe=True,
                    timeout_s=START_S, netns=hosts)
    return start_cluster(**{**settings, **kwargs})


def launcher(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    """python -m tfos_facecnn.cluster ARGS (the launcher's command line)."""
    return subprocess.run([sys.executable, "-m", "tfos_facecnn.cluster", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def network(info: ClusterInfo) -> Network:
    assert info.network is not None
    return Network.from_dict(info.network)


def host_named(info: ClusterInfo, hostname: str) -> Host:
    return next(h for h in network(info).hosts if h.hostname == hostname)


def driver_env(**extra: str) -> dict[str, str]:
    """spark_env() without SPARK_LOCAL_IP: on its host the driver finds its address as on a real machine (its
    host name in /etc/hosts), and --bind-address auto is the only network setting of the job."""
    env = {k: v for k, v in spark_env().items() if k != "SPARK_LOCAL_IP"}
    return {**env, **extra}


def driver_command(info: ClusterInfo, job: str, *args: str, conf: tuple[str, ...] = ()) -> list[str]:
    """spark-submit of jobs/JOB on the master's host."""
    return netns.host_command(network(info).hosts[0], job_command(job, info.master_url, *args, conf=conf))


def run_driver(info: ClusterInfo, *args: str, timeout: int, conf: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(driver_command(info, "train.py", *args, conf=conf), env=env or driver_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


class Job(BackgroundJob):
    """A training driver on the master's host, in the background; its output collected line by line."""

    def __init__(self, info: ClusterInfo, *args: str, conf: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        super().__init__(command=driver_command(info, "train.py", *args, conf=conf), env=env or driver_env())

    def wait_for_line(self, pattern: str, timeout_s: float, after: int = 0) -> tuple[int, re.Match]:
        """(index, match) of the first line from index `after` on that matches; AssertionError on timeout/exit."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                for index in range(after, len(self.lines)):
                    match = re.search(pattern, self.lines[index])
                    if match:
                        return index, match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no line like {pattern!r}:\n" + "\n".join(self.lines[-40:]))
                self.changed.wait(min(remaining, 1.0))

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"the driver still ran after {timeout_s:.0f} s:\n" + self.output[-6000:]) from None


def started_nodes(output: str) -> dict[str, tuple[str, str]]:
    """node -> (host name, TF server address) from the driver's 'TF node ... started on ...' lines (the last)."""
    return {m[1]: (m[2], m[4]) for m in STARTED.finditer(output)}


def wait_until(condition: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until condition() held, polling; None if it did not within timeout_s."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            return None
        time.sleep(POLL_S)  # the polling interval of a real condition
    return time.monotonic() - started


def job_processes(info: ClusterInfo) -> dict[str, list[str]]:
    """host name -> 'PID NAME' of every process on that host other than the cluster's own master and workers:
    a driver, executors, Python workers, TF nodes (what a finished or failed job must not leave behind)."""
    daemons = {p.pid for p in info.processes}
    found: dict[str, list[str]] = {}
    for host in network(info).hosts:
        for pid in netns.pids(host):
            if pid in daemons:
                continue
            try:
                process = psutil.Process(pid)
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                found.setdefault(host.hostname, []).append(f"{pid} {' '.join(process.cmdline())[:160]}")
            except psutil.NoSuchProcess:
                continue
    return found


def listening(host: Host) -> list[tuple[str, int, str, int]]:
    """(address, port, program, pid) of every TCP socket listening in the host (ss inside its namespace)."""
    done = subprocess.run(["ip", "netns", "exec", host.name, "ss", "-ltnpH"], capture_output=True, text=True,
                          timeout=netns.COMMAND_TIMEOUT_S, check=True)
    found = []
    for line in done.stdout.splitlines():
        match = LISTEN.match(line.strip())
        if match:
            address = match[1].strip("[]").removeprefix("::ffff:")
            found.append((address, int(match[2]), match[3], int(match[4])))
    return found
