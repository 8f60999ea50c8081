"""Shared test helpers: the embedded sample, synthetic image trees, and a loopback-only Spark env."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfos_facecnn import sample_data_dir

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(sample_data_dir())


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


def spark_env() -> dict[str, str]:
    """Environment for spark-submit: every Spark, TFoS and TF socket on 127.0.0.1."""
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        TF_USE_LEGACY_KERAS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    return env


def spark_submit() -> str:
    found = Path(sys.executable).parent / "spark-submit"
    return str(found) if found.exists() else shutil.which("spark-submit") or "spark-submit"


def job_command(job: str, master: str, *args: str, conf: tuple[str, ...] = ()) -> list[str]:
    """spark-submit of jobs/JOB; `conf` adds Spark settings (KEY=VALUE) before the script."""
    extra = [item for setting in conf for item in ("--conf", setting)]
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
