"""Spark masters, the session settings TFoS needs, and the executor count check."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass

from .config import ConfigError, TrainConfig

LOCAL_RE = re.compile(r"^local(\[(\*|\d+)(,\s*\d+)?\])?$")
LOCAL_CLUSTER_RE = re.compile(r"^local-cluster\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]$")
LOOPBACK = "127.0.0.1"
# Spark's default (secret|password|token|access[.]?key) plus the names of Azure's and AWS's secrets.
REDACTION_REGEX = r"(?i)secret|password|token|access[._]?key|account[._]?key|connection[._]?string|credential"


@dataclass(frozen=True)
class Master:
    url: str
    kind: str  # local | local-cluster | standalone | yarn | k8s | other
    executors: int | None  # known executor count, None when Spark decides at run time
    cores_per_executor: int | None

    @property
    def is_local_machine(self) -> bool:
        if self.kind in ("local", "local-cluster"):
            return True
        return self.kind == "standalone" and re.match(r"^spark://(127\.|localhost[:/])", self.url) is not None


@dataclass(frozen=True)
class Cluster:
    """Where a run's TF nodes go: the master, how many nodes (one per executor), and the address every
    TFoS and TF socket uses (None: TFoS's own routing choice)."""

    master: Master
    nodes: int
    address: str | None


def parse_master(url: str) -> Master:
    local = LOCAL_RE.match(url)
    if local:
        threads = local.group(2)
        cores = (os.cpu_count() or 1) if threads in (None, "*") else int(threads)
        return Master(url, "local", 1, cores)
    cluster = LOCAL_CLUSTER_RE.match(url)
    if cluster:
        return Master(url, "local-cluster", int(cluster.group(1)), int(cluster.group(2)))
    if url.startswith("spark://"):
        return Master(url, "standalone", None, None)
    if url == "yarn":
        return Master(url, "yarn", None, None)
    if url.startswith("k8s://"):
        return Master(url, "k8s", None, None)
    return Master(url, "other", None, None)


def node_threads(master: Master, conf: dict[str, str]) -> int:
    """The size of each TF node's intra- and inter-op thread pools: the executor's cores (the node is
    the one long task of its executor; feeding tasks beside it take ~0.1-0.3 of a core). From the
    master URL on local masters, else spark.executor.cores; 0 (TF's default: every core of the host)
    only when neither says, e.g. standalone executors that take a whole worker."""
    if master.cores_per_executor:
        return master.cores_per_executor
    cores = conf.get("spark.executor.cores", "")
    return int(cores) if cores.strip().isdigit() and int(cores) > 0 else 0


def bind_address(setting: str, master: Master) -> str | None:
    """The address every TFoS/TF socket of the job uses (--bind-address: an address, or 'auto'); None
    lets TFoS route as it does by default."""
    if setting != "auto":
        return setting
    return LOOPBACK if master.is_local_machine else None


def expected_nodes(cfg: TrainConfig, master: Master, conf: dict[str, str]) -> int:
    """How many TF nodes to start; refuses what TFoS cannot do before any executor starts."""
    if master.kind == "local":
        if cfg.cluster_size not in (None, 1):
            raise ConfigError(
                f"--cluster-size {cfg.cluster_size} needs {cfg.cluster_size} executors, but master {master.url} "
                "has one executor (TFoS runs one TF node per executor); use --master "
                f"'local-cluster[{cfg.cluster_size},1,2048]' or a real cluster"
            )
        return 1
    if cfg.cluster_size is not None:
        if master.executors is not None and cfg.cluster_size > master.executors:
            raise ConfigError(
                f"--cluster-size {cfg.cluster_size} is more than the {master.executors} executors of "
                f"{master.url}; lower --cluster-size or start more executors"
            )
        return cfg.cluster_size
    if master.executors is not None:
        return master.executors
    if "spark.executor.instances" in conf:
        return int(conf["spark.executor.instances"])
    if "spark.cores.max" in conf:
        per_executor = int(conf.get("spark.executor.cores", "1"))
        return max(1, int(conf["spark.cores.max"]) // per_executor)
    raise ConfigError(
        f"cannot tell how many executors {master.url} will give; pass --cluster-size N "
        "(or set spark.executor.instances / spark.cores.max)"
    )


def session_settings(master: Master, address: str | None, conf: dict[str, str],
                     executor_env: dict[str, str] | None = None) -> dict[str, str]:
    """Settings TFoS needs, applied only where the user has not set them (spark-defaults/--conf win).
    `executor_env`: storage credentials and endpoints set on the driver, which executors on other
    machines need too (local executors inherit the driver's environment)."""
    wanted = {
        # TFoS: a failed TF node must fail the job, not be retried onto a half-built TF cluster.
        "spark.task.maxFailures": "1",
        # TFoS pins one TF node to each executor for the whole job.
        "spark.dynamicAllocation.enabled": "false",
        # InputMode.SPARK: any free executor must feed its node at once. Waiting for the executor that
        # caches a partition would hand every epoch the same uneven split and starve one node.
        "spark.locality.wait": "0",
        # InputMode.SPARK runs TF in a background process of a reused Python worker.
        "spark.python.worker.reuse": "true",
        # Spark's cleaner must not wait on a host that is gone: blocking (the default), a broadcast cleanup under
        # way held SparkContext.stop() for spark.rpc.askTimeout (120 s) after a worker host was cut off.
        "spark.cleaner.referenceTracking.blocking": "false",
        "spark.executorEnv.TF_USE_LEGACY_KERAS": "1",
        "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "1",
    }
    if master.kind in ("local", "local-cluster"):
        # Executors on this machine run the driver's interpreter (the venv with TF installed).
        wanted["spark.pyspark.python"] = sys.executable
    if master.kind == "local" and master.cores_per_executor:
        # The node task and the feeding tasks share the one local executor.
        wanted["spark.task.cpus"] = "1"
    if master.kind != "local":
        for name, value in (executor_env or {}).items():
            wanted[f"spark.executorEnv.{name}"] = value
        if executor_env:
            # Spark's UI and event log redact conf values whose keys match this; the default misses
            # Azure's account keys and connection strings.
            wanted["spark.redaction.regex"] = REDACTION_REGEX
    if address is not None:
        wanted["spark.driver.host"] = address
        wanted["spark.driver.bindAddress"] = address
        wanted["spark.executorEnv.SPARK_LOCAL_IP"] = address
    return {k: v for k, v in wanted.items() if k not in conf}


EXECUTOR_GPUS = "spark.executor.resource.gpu.amount"
TASK_GPUS = "spark.task.resource.gpu.amount"
MAX_GPU_SHARE = 0.5  # Spark's own rule: a task takes a GPU share of at most 1/2 (several tasks per GPU) or whole GPUs


def check_gpu_amounts(conf: dict[str, str]) -> None:
    """GPUs through Spark's resource scheduling: a TF node is one task on its executor and uses the GPU
    addresses Spark gives that task (TFoS sets them as CUDA_VISIBLE_DEVICES), so both amounts must be set
    and the executor's GPUs must split into whole tasks. Refuses what would idle GPUs or start no task."""
    given = {key: conf[key].strip() for key in (EXECUTOR_GPUS, TASK_GPUS) if conf.get(key, "").strip()}
    if not given:
        return
    amounts: dict[str, float] = {}
    for key, value in given.items():
        try:
            amounts[key] = float(value)
        except ValueError as e:
            raise ConfigError(f"{key}={value} is not a number; give the GPUs as a number, e.g. {key}=1") from e
        if amounts[key] <= 0:
            raise ConfigError(f"{key}={value} must be above 0; remove it to run without GPUs")
    executor, task = amounts.get(EXECUTOR_GPUS), amounts.get(TASK_GPUS)
    if executor is None:
        raise ConfigError(f"{TASK_GPUS}={given[TASK_GPUS]} needs {EXECUTOR_GPUS}: set it to the GPUs of each "
                          f"executor (a multiple of {given[TASK_GPUS]})")
    if not executor.is_integer():
        raise ConfigError(f"{EXECUTOR_GPUS}={given[EXECUTOR_GPUS]} must be a whole number of GPUs")
    if task is None:
        raise ConfigError(f"{EXECUTOR_GPUS}={given[EXECUTOR_GPUS]} without {TASK_GPUS}: Spark would give the TF "
                          f"node's task no GPU address; set {TASK_GPUS}={int(executor)}")
    if task > executor:
        raise ConfigError(f"{TASK_GPUS}={given[TASK_GPUS]} is more than {EXECUTOR_GPUS}={given[EXECUTOR_GPUS]}: "
                          f"no task could start; set {TASK_GPUS}={int(executor)}")
    if task < 1:
        if task > MAX_GPU_SHARE:
            raise ConfigError(f"{TASK_GPUS}={given[TASK_GPUS]}: a task's share of a GPU must be at most "
                              f"{MAX_GPU_SHARE} (or whole GPUs); set {TASK_GPUS}={int(executor)}")
    elif not task.is_integer() or executor % task:
        raise ConfigError(f"{EXECUTOR_GPUS}={given[EXECUTOR_GPUS]} does not split into tasks of {TASK_GPUS}="
                          f"{given[TASK_GPUS]}: GPUs would sit idle; set {TASK_GPUS}={int(executor)}")


def registered_executors(sc) -> int:
    """Executors registered with the driver (the driver itself is not counted, except in local mode)."""
    count = sc._jsc.sc().getExecutorMemoryStatus().size()
    return 1 if sc.master.startswith("local[") or sc.master == "local" else count - 1


def wait_for_executors(sc, wanted: int, timeout_s: float) -> int:
    """Polls the executor count until `wanted` have registered or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        have = registered_executors(sc)
        if have >= wanted or time.monotonic() > deadline:
            return have
        time.sleep(0.2)  # polling the driver's own executor table, not waiting on another process blindly
