"""The suite's settings and shared state: the data sets every measurement uses, and one training run
through spark-submit with its figures (per-epoch images/s, start-up times, peak memory per role)."""

from __future__ import annotations

import os
import re
import shutil
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    STARTED_LINE,
    RunResult,
    epoch_rates,
    history_rates,
    job_command,
    run_streaming,
    spark_env,
)

STEPS_LINE = re.compile(r"^starting (\d+) TF node\(s\) on .*: (\d+) steps/epoch x (\d+) epochs, global batch (\d+)")
MB = 2**20


@dataclass
class Settings:
    images: int = 256  # generated full-size images (half faces, half comics)
    raw_size: int = 1024  # side of the generated JPEGs (face2comics v2: 1024 px)
    image_size: int = 350  # training size (the reference CNN's input)
    batch_size: int = 32
    # epoch 1 traces the graph; epochs 2.. are the steady state: 7 epochs of 6 steps (~1 s each, single
    # epochs swing by 10-20% on 2 cores), so the median compares figures within a few per cent
    epochs: int = 8
    # e: on the memory_factor x N set (716 training images: 20-22 steps of 32 per node and epoch), so a
    # node's feed buffers (~220 images) serve a small part of a run; 3 steady epochs
    scaling_epochs: int = 4
    memory_epochs: int = 2
    memory_factor: int = 4  # g: N vs memory_factor x N images
    predict_paths: int = 1536  # h: the N images listed until this many paths: 6 tasks of 4 batches of 64
    repeats: int = 1
    run_timeout_s: int = 600  # every subprocess
    matmul_size: int = 2048
    quick: bool = False

    @classmethod
    def quick_settings(cls, **overrides: Any) -> Settings:
        # memory_epochs = epochs: g's N run is c's (measure_g); 768 paths are 3 predict tasks, one more
        # than local[*]'s 2 slots, the least that leaves h a steady state
        base = cls(images=16, raw_size=256, image_size=48, batch_size=8, epochs=3, scaling_epochs=3,
                   memory_epochs=3, predict_paths=768, run_timeout_s=300, matmul_size=1024, quick=True)
        for key, value in overrides.items():
            setattr(base, key, value)
        return base

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainRun:
    """One spark-submit of jobs/train.py and what it measured."""

    name: str
    result: RunResult
    export_dir: Path | str  # a storage URL when the run wrote to one
    rates: list[float]  # images/s per epoch (history.json, else the console lines)
    startup: dict[str, float | None]
    memory_mb: dict[str, float | None]
    nodes: int | None = None
    steps_per_epoch: int | None = None
    master: str = ""

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "master": self.master, "wall_s": round(self.result.wall_s, 2),
                "images_per_s": self.rates, "startup_s": self.startup, "peak_rss_mb": self.memory_mb,
                "nodes": self.nodes, "steps_per_epoch": self.steps_per_epoch}


@dataclass
class Suite:
    settings: Settings
    work: Path
    data: dict[str, Any] = field(default_factory=dict)  # data set facts, paths
    runs: dict[str, list[TrainRun]] = field(default_factory=dict)  # measurement key -> its training runs
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def raw_dir(self) -> Path:
        return self.work / "data" / f"face2comics-{self.settings.raw_size}px"

    @property
    def raw_x_dir(self) -> Path:
        return self.work / "data" / f"face2comics-{self.settings.raw_size}px-x{self.settings.memory_factor}"

    @property
    def prepared_dir(self) -> Path:
        return self.work / "data" / f"prepared-{self.settings.image_size}px"

    @property
    def sized_dir(self) -> Path:
        """The prepared records' images written back out at the training size (SPARK mode input)."""
        return self.work / "data" / f"face2comics-{self.settings.image_size}px"

    @property
    def sized_x_dir(self) -> Path:
        return self.work / "data" / f"face2comics-{self.settings.image_size}px-x{self.settings.memory_factor}"

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    @property
    def prepared_x_dir(self) -> Path:
        return self.work / "data" / f"prepared-{self.settings.image_size}px-x{self.settings.memory_factor}"

    def train(self, name: str, master: str, mode: str, data_dir: Path | str, epochs: int | None = None,
              memory: bool = False, batch_size: int | None = None, env: dict[str, str] | None = None,
              output_root: str | None = None, fs: Any = None, conf: dict[str, str] | None = None,
              job_args: tuple[str, ...] = ()) -> TrainRun:
        """One jobs/train.py run. `env`: extra variables for spark-submit (over spark_env()); `output_root`:
        a storage URL (s3://...) that holds the run's model/ and export/ instead of work/runs/NAME, with `fs`
        the fsspec filesystem to read its history.json back; `job_args`: more jobs/train.py options."""
        s = self.settings
        batch_size = batch_size or s.batch_size
        if output_root:
            model, export = f"{output_root.rstrip('/')}/model", f"{output_root.rstrip('/')}/export"
        else:
            root = self.work / "runs" / name
            # a kept --work-dir: a model dir holding a finished run would not train again (and its old
            # history would be read as this run's)
            shutil.rmtree(root, ignore_errors=True)
            model, export = root / "model", root / "export"
        command = job_command(
            "train.py", master, "--input-mode", mode, "--data-dir", str(data_dir),
            "--image-size", str(s.image_size), "--batch-size", str(batch_size),
            "--epochs", str(epochs or s.epochs), "--model-dir", str(model),
            "--export-dir", str(export), "--no-report", *job_args, conf=conf,
        )
        run_env = {**spark_env(), **env} if env else None
        result = run_streaming(command, s.run_timeout_s, self.log(name), memory=memory,
                               env=run_env).check(f"training run {name}")
        run = TrainRun(name, result, export, [], {}, {}, master=master)
        for _, line in result.lines:
            match = STEPS_LINE.match(line)
            if match:
                run.nodes, run.steps_per_epoch = int(match.group(1)), int(match.group(2))
                break
        try:
            run.rates = history_rates(export, fs)
        except (OSError, ValueError, KeyError):
            run.rates = [rate for _, rate, _ in epoch_rates(result)]
        run.startup = startup_times(result, run.steps_per_epoch, batch_size)
        if memory:
            run.memory_mb = memory_by_role(result)
        self.runs.setdefault(name.split("-")[0], []).append(run)
        return run


def startup_times(result: RunResult, steps: int | None, batch: int) -> dict[str, float | None]:
    """Seconds from launching spark-submit to: the chief's 'started' line; fit's start (the first epoch
    line's arrival minus epoch 1's training time, steps x batch / its images/s); the first training step
    done (the first epoch line minus the other steps of epoch 1 at the steady-state rate: tracing and the
    wait for the first batch count as start-up); the first epoch line. The first two estimates are upper
    bounds: the epoch line also waits for epoch 1's validation."""
    started = next((when for when, line in result.lines
                    if (m := STARTED_LINE.match(line)) and m.group(1).startswith("chief")), None)
    epochs = epoch_rates(result)
    first_epoch = epochs[0][2] if epochs else None
    fit_start = first_step = None
    if epochs and steps:
        fit_start = first_epoch - steps * batch / max(epochs[0][1], 1e-9)
        steady_rate = statistics.median([rate for _, rate, _ in epochs[1:]]) if len(epochs) > 1 else epochs[0][1]
        first_step = first_epoch - (steps - 1) * batch / max(steady_rate, 1e-9)

    def since(when: float | None) -> float | None:
        return None if when is None else round(when - result.launched, 3)

    return {"to_tf_node_started": since(started), "to_fit_start": since(fit_start),
            "to_first_step": since(first_step), "to_first_epoch_end": since(first_epoch)}


def memory_by_role(result: RunResult) -> dict[str, float | None]:
    """Peak RSS of the chief's TF node (its pid from the 'started' line), of the executors' other Python
    workers (pyspark.daemon forks: the feeders), and of the driver's Python process."""
    tf_pid = next((int(m.group(2)) for _, line in result.lines
                   if (m := STARTED_LINE.match(line)) and m.group(1).startswith("chief")), None)
    tf_node = workers = driver = None
    for pid, (rss, cmd) in result.peaks.items():
        mb = rss / MB
        if pid == tf_pid:
            tf_node = mb
        elif "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
            workers = max(workers or 0.0, mb)
        elif "jobs/train.py" in cmd and os.path.basename(cmd.split(" ")[0]).startswith("python"):
            driver = max(driver or 0.0, mb)
    return {"tf_node": tf_node, "python_worker": workers, "driver_python": driver, "tf_node_pid": tf_pid}
