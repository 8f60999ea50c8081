"""Shared helpers of the benchmark suite: the loopback Spark environment, job commands, streaming
subprocess runs with timestamps and process-tree memory polling, and the figures' parsing."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PYTHON = sys.executable
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) .*images/s=([0-9.]+)")
STARTED_LINE = re.compile(r"^TF node (\S+) started on \S+ \(pid (\d+)")
MEMORY_POLL_S = 0.5  # interval of the process census (not a wait for the job); peaks are the kernel's own


def spark_env() -> dict[str, str]:
    """Every Spark, TFoS and TF socket on 127.0.0.1 (as tests/conftest.py's spark_env)."""
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=PYTHON,
        PYSPARK_DRIVER_PYTHON=PYTHON,
        TF_USE_LEGACY_KERAS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    return env


def spark_submit() -> str:
    found = Path(PYTHON).parent / "spark-submit"
    return str(found) if found.exists() else "spark-submit"


def job_command(job: str, master: str, *args: str, conf: dict[str, str] | None = None) -> list[str]:
    extra = [item for key, value in (conf or {}).items() for item in ("--conf", f"{key}={value}")]
    return [
        spark_submit(), "--master", master, "--properties-file", str(REPO / "conf" / "spark-defaults.conf"),
        "--conf", "spark.ui.enabled=false", *extra, str(REPO / "jobs" / job), *args,
    ]


def worker_command(script: str, *args: str) -> list[str]:
    """A bench helper script (bench/worker_*.py) in its own Python process."""
    return [PYTHON, str(BENCH / script), *args]


@dataclass
class RunResult:
    command: list[str]
    returncode: int | None
    launched: float  # time.time() just before Popen
    wall_s: float
    lines: list[tuple[float, str]]  # (time.time(), stdout line)
    log: str  # stderr file
    timed_out: bool = False
    peaks: dict[int, tuple[int, str]] = field(default_factory=dict)  # pid -> (peak RSS bytes, cmdline)

    @property
    def stdout(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def tail(self, chars: int = 2500) -> str:
        err = Path(self.log).read_text(errors="replace") if Path(self.log).exists() else ""
        return (self.stdout[-chars:] + "\n--- stderr ---\n" + err[-chars:]).strip()

    def check(self, what: str) -> RunResult:
        if self.timed_out:
            raise RuntimeError(f"{what} timed out after {self.wall_s:.0f} s:\n{self.tail()}")
        if self.returncode != 0:
            raise RuntimeError(f"{what} exited {self.returncode}:\n{self.tail()}")
        return self

    def last_json(self) -> Any:
        for _, line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"no JSON result line in the output:\n{self.tail()}")


def peak_rss(process) -> int:
    """The kernel's high-water mark of the process's resident set (VmHWM), in bytes: the true peak,
    whenever it happened. Sampling RSS instead would miss peaks between polls and read higher the longer
    a run lasts (more samples), which is just what the N vs 4N memory figure must not measure."""
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return process.memory_info().rss  # no procfs (not Linux): the current RSS, a lower bound


def _poll_tree(root, peaks: dict[int, tuple[int, str]]) -> None:
    import psutil

    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            rss = peak_rss(process)
            if rss > peaks.get(process.pid, (0, ""))[0]:
                cmd = peaks.get(process.pid, (0, ""))[1] or " ".join(process.cmdline())[:300]
                peaks[process.pid] = (rss, cmd)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


def run_streaming(command: list[str], timeout_s: float, log_path: Path, cwd: Path = REPO,
                  memory: bool = False, env: dict[str, str] | None = None) -> RunResult:
    """Runs `command` in its own process group; timestamps every stdout line as it arrives; stderr goes
    to log_path; with memory=True records the peak RSS (VmHWM) of every process of the tree. Kills the
    group on timeout (only this process group, which this function started)."""
    import psutil

    lines: list[tuple[float, str]] = []
    peaks: dict[int, tuple[int, str]] = {}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as err:
        launched = time.time()
        start = time.monotonic()
        job = subprocess.Popen(command, cwd=cwd, env=env or spark_env(), stdout=subprocess.PIPE, stderr=err,
                               text=True, bufsize=1, start_new_session=True)

        def read() -> None:
            for line in job.stdout:
                lines.append((time.time(), line.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        root = psutil.Process(job.pid)
        timed_out = False
        while job.poll() is None:
            if time.monotonic() - start > timeout_s:
                timed_out = True
                _kill_group(job)
                break
            if memory:
                _poll_tree(root, peaks)
            time.sleep(MEMORY_POLL_S if memory else 0.1)  # polling interval, not a wait for the job
        job.wait()
        reader.join(timeout=10)
        wall = time.monotonic() - start
    log_path.with_suffix(".out").write_text("".join(f"{when - launched:9.3f} {line}\n" for when, line in lines))
    return RunResult(command, job.returncode, launched, wall, lines, str(log_path), timed_out, peaks)


def _kill_group(job: subprocess.Popen) -> None:
    try:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def epoch_rates(result: RunResult) -> list[tuple[int, float, float]]:
    """(epoch, images/s, arrival time) of every driver epoch line."""
    rates = []
    for when, line in result.lines:
        match = EPOCH_LINE.match(line)
        if match:
            rates.append((int(match.group(1)), float(match.group(3)), when))
    return rates


def history_rates(export_dir: Path | str, fs: Any = None) -> list[float]:
    """images/s per epoch from the export's history.json; with `fs` (fsspec), export_dir is its URL."""
    if fs is not None:
        rows = json.loads(fs.cat_file(f"{str(export_dir).rstrip('/')}/history.json"))
    else:
        rows = json.loads((Path(export_dir) / "history.json").read_text())
    return [float(row["images_per_s"]) for row in rows if "images_per_s" in row]


def steady(rates: list[float]) -> list[float]:
    """Steady state: every epoch but the first (which traces the graph)."""
    if len(rates) < 2:
        raise RuntimeError(f"need at least 2 epochs for a steady-state rate, got {len(rates)}")
    return rates[1:]


def median(values: list[float]) -> float:
    if not values:
        raise RuntimeError("no values to take a median of")
    return float(statistics.median(values))


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        memory_gb = None
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": memory_gb,
        "load_average_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow"),
        "tf_keras": _version("tf_keras"),
        "pyspark": _version("pyspark"),
        "tensorflowonspark": _version("tensorflowonspark"),
        "pillow": _version("pillow"),
        "numpy": _version("numpy"),
    }
