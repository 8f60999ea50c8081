"""Shared test helpers: the embedded sample, synthetic image trees, and a loopback-only Spark env."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.class_data import DRIVER_ARCHIVE, EXECUTOR_ARCHIVE, archive_options, write_archives
from tfos_facecnn import sample_data_dir

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(sample_data_dir())
# Each tier's folder marks its tests, so a tier runs alone: pytest -m reliability, -m "not bench"...
TIER_OF_FOLDER = {"smoke": "smoke", "cluster": "cluster", "reliability": "reliability", "bench": "bench"}


def pytest_configure(config) -> None:
    # A shell without job control starts background commands (`make test &`, nohup) with SIGINT ignored,
    # and children inherit an ignored signal: the Ctrl-C tests' jobs would never see theirs. A handler
    # here is reset to the default in every child at exec, so each Python child gets KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in TIER_OF_FOLDER:
            item.add_marker(TIER_OF_FOLDER[folder])
    for item in items:  # after the tier marks: the groups read them
        group = parallel_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def parallel_group(item) -> str | None:
    """Under `pytest -n N --dist loadgroup` (make test), the tests that must share one process: those of
    a module whose fixture lives for the module (a trained model, a standalone cluster: set up once, not
    once per process), and every multi-host test (one network of namespaces, fixed names and subnet,
    exists at a time on a machine)."""
    if item.get_closest_marker("multihost"):
        return "multihost"
    definitions = getattr(item, "_fixtureinfo", None)
    if definitions and any(defs[-1].scope in ("module", "class", "package")
                           for defs in definitions.name2fixturedefs.values()):
        return item.module.__name__
    return None


def write_image(path: Path, size: int = 32, mode: str = "RGB", fmt: str = "JPEG", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    return path


def make_dataset(root: Path, pairs: int = 6, nest: tuple[str, ...] = ()) -> Path:
    """A face2comics layout of synthetic images, optionally nested under `nest` folders."""
    base = root.joinpath(*nest)
    for i in range(pairs):
        write_image(base / "faces" / f"{i}.jpg", seed=i)
        write_image(base / "comics" / f"{i}.jpg", seed=100 + i)
    return base


# Tests only: Spark's JVMs compile with C1 alone and collect garbage on one thread. In a test's short
# jobs they do little but start and pass bytes along, and C2's compiler threads took more of the 2 cores
# than they gave back: a tiny local-cluster[2,1,1024] run took 43 s instead of 57. The jobs' own settings
# (conf/spark-defaults.conf) are not changed, and bench/ run by hand keeps the JVM's defaults (the bench
# tests' quick runs, whose figures prove nothing, start their drivers with this).
FAST_START_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# Tests only, too: each JVM maps the Spark classes it needs from a class-data archive (AppCDS) that the
# session writes once (tests/class_data.py) instead of parsing and verifying thousands of classes from
# jars at every start. Drivers and executors load different sets, so each has its own archive. A JVM
# whose archive is missing or stale (another JDK or Spark) loads its classes as usual, silently.
DRIVER_JVM = f"{FAST_START_JVM} {archive_options(DRIVER_ARCHIVE)}"
EXECUTOR_JVM = f"{FAST_START_JVM} {archive_options(EXECUTOR_ARCHIVE)}"
FAST_START_CONF = {"spark.driver.defaultJavaOptions": DRIVER_JVM,
                   "spark.executor.defaultJavaOptions": EXECUTOR_JVM}


def spark_env() -> dict[str, str]:
    """Environment for spark-submit: every Spark, TFoS and TF socket on 127.0.0.1; the fast-start JVM
    options for the standalone daemons, every spark-submit's driver and SparkSessions a test's own
    script opens."""
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        TF_USE_LEGACY_KERAS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("SPARK_DAEMON_JAVA_OPTS", EXECUTOR_JVM)  # a master and workers: no SQL, like executors
    env.setdefault("SPARK_SUBMIT_OPTS", DRIVER_JVM)  # the driver JVM of a spark-submit not from job_command
    env.setdefault("PYSPARK_SUBMIT_ARGS", " ".join(
        f"--conf {shlex.quote(f'{key}={value}')}" for key, value in FAST_START_CONF.items()) + " pyspark-shell")
    return env


@pytest.fixture(scope="session", autouse=True)
def class_data_archives(request) -> None:
    """Writes the JVMs' class-data archives once, before the first test that starts Spark (the fast
    tier's lone smoke run would not earn back the minute it takes)."""
    starts_spark = any(item.get_closest_marker(tier) and not item.get_closest_marker("smoke")
                       for item in request.session.items
                       for tier in ("spark", "cluster", "reliability", "bench", "multihost"))
    if starts_spark:
        write_archives(spark_env(), job_command, FAST_START_JVM)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while choosing, so two picks never coincide)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def spark_submit() -> str:
    found = Path(sys.executable).parent / "spark-submit"
    return str(found) if found.exists() else shutil.which("spark-submit") or "spark-submit"


def job_command(job: str, master: str, *args: str, conf: tuple[str, ...] = ()) -> list[str]:
    """spark-submit of jobs/JOB; `conf` adds Spark settings (KEY=VALUE) before the script."""
    fast = tuple(f"{key}={value}" for key, value in FAST_START_CONF.items())
    extra = [item for setting in fast + conf for item in ("--conf", setting)]
    return [
        spark_submit(), "--master", master, "--properties-file", str(REPO / "conf" / "spark-defaults.conf"),
        "--conf", "spark.ui.enabled=false", *extra,
        str(REPO / "jobs" / job), *args,
    ]


def train_command(master: str, *args: str) -> list[str]:
    return job_command("train.py", master, *args)


def run_job(job: str, master: str, *args: str, timeout: int = 600, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        job_command(job, master, *args), env=spark_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def run_train_job(master: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_job("train.py", master, *args, timeout=timeout)


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    target = tmp_path / "sample"
    shutil.copytree(SAMPLE, target)
    return target


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One real S3 server (SeaweedFS) on 127.0.0.1 for the whole session; tests take their own buckets."""
    from tests.s3server import start_s3_server, stop_s3_server

    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    stop_s3_server(server)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The S3 server's variables in this process (inherited by spark-submit children) and a fresh bucket."""
    import uuid

    from tfos_facecnn import storage

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    storage.configure({})
    bucket = s3_server.make_bucket(f"t-{uuid.uuid4().hex[:10]}")
    return S3Bucket(s3_server, bucket)


class S3Bucket:
    def __init__(self, server, url: str) -> None:
        self.server, self.url = server, url
        self.fs = server.filesystem()

    def upload_tree(self, local: Path, prefix: str) -> str:
        files = sorted(p for p in local.rglob("*") if p.is_file())
        target = f"{self.url}/{prefix}"
        self.fs.put([str(p) for p in files], [f"{target}/{p.relative_to(local).as_posix()}" for p in files])
        return target

    def keys(self, prefix: str = "") -> list[str]:
        root = f"{self.url[5:]}/{prefix}".rstrip("/")
        return sorted(p[len(root) + 1:] for p in self.fs.find(root) if p != root)
