"""Spark masters, the session settings TFoS needs, and the executor count check."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass

from .config import ConfigError, TrainConfig
from .loopback import LOCAL_IP_ENV, relaunch_on, under_spark_submit
from .reachability import preflight, registration_refused

LOCAL_RE = re.compile(r"^local(\[(\*|\d+)(,\s*\d+)?\])?$")
LOCAL_CLUSTER_RE = re.compile(r"^local-cluster\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]$")
LOOPBACK = "127.0.0.1"
# Spark's default (secret|password|token|access[.]?key) plus the names of Azure's and AWS's secrets.
REDACTION_REGEX = r"(?i)secret|password|token|access[._]?key|account[._]?key|connection[._]?string|credential"
EXECUTOR_WAIT_S = 60  # local-cluster/standalone executors register within seconds; this bounds a no-show


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


def bind_address(cfg: TrainConfig, master: Master) -> str | None:
    """The address every TFoS/TF socket of the job uses; None lets TFoS route as it does by default."""
    if cfg.bind_address != "auto":
        return cfg.bind_address
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


def registered_executors(sc) -> int:
    """Executors registered with the driver (the driver itself is not counted, except in local mode)."""
    count = sc._jsc.sc().getExecutorMemoryStatus().size()
    return 1 if sc.master.startswith("local[") or sc.master == "local" else count - 1


def wait_for_executors(sc, wanted: int, timeout_s: float = EXECUTOR_WAIT_S) -> int:
    """Polls the executor count until `wanted` have registered or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        have = registered_executors(sc)
        if have >= wanted or time.monotonic() > deadline:
            return have
        time.sleep(0.2)  # polling the driver's own executor table, not waiting on another process blindly


def spark_conf(master_url: str | None) -> tuple[Master, dict[str, str]]:
    """The master and the user's Spark settings (spark-submit's --master/--conf/properties file)."""
    from pyspark import SparkConf, SparkContext

    local = parse_master(master_url or "local[*]").is_local_machine
    if local and not under_spark_submit() and LOCAL_IP_ENV not in os.environ:
        os.environ[LOCAL_IP_ENV] = LOOPBACK  # the JVM pyspark starts next inherits it (see loopback.py)
    SparkContext._ensure_initialized()  # joins spark-submit's JVM, so SparkConf sees its settings
    conf = SparkConf()
    if master_url:
        conf.setMaster(master_url)
    user_conf = dict(conf.getAll())
    return parse_master(user_conf.get("spark.master", "local[*]")), user_conf


def start_session(app_name: str, master: Master, address: str | None, user_conf: dict[str, str],
                  executor_env: dict[str, str] | None = None):
    from pyspark.sql import SparkSession

    preflight(address, master.url)  # a bind address or master that cannot work: one line, not a hang
    if address is not None and master.is_local_machine and LOCAL_IP_ENV not in os.environ and under_spark_submit():
        relaunch_on(address, master.url, user_conf)  # exits with the relaunched job's code
    builder = SparkSession.builder.appName(app_name).master(master.url)
    for key, value in session_settings(master, address, user_conf, executor_env).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # py4j's error when Spark gave up on the master
        refused = registration_refused(master.url, user_conf, e)
        if refused is None:
            raise
        raise refused from e
    spark.sparkContext.setLogLevel("WARN")  # the console is for the job's own progress lines
    return spark
