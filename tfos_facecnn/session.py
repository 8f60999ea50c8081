"""Where every job's SparkSession comes from: one builder for the jobs, or the caller's own session.

A job (spark-submit jobs/X.py) runs its checks first and starts its session only once they pass: a
`JobSession` reads spark-submit's settings (or --master) without starting Spark, and builds the
session with the settings TFoS needs (spark_env.session_settings) and the job's bind address when the
job opens it; it stops it at the end. Called from Python with a SparkSession the caller built (a
notebook, a pyspark shell), a `GivenSession` uses it as it is, refuses settings TFoS cannot work
with, and never stops it.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .config import ConfigError
from .loopback import LOCAL_IP_ENV, relaunch_on, under_spark_submit
from .reachability import preflight, registration_refused
from .spark_env import LOOPBACK, Master, bind_address, check_gpu_amounts, parse_master, session_settings

logger = logging.getLogger(__name__)
DEFAULT_MASTER = "local[*]"  # spark-submit's own default, for a job run with plain `python`
# Settings a caller's session must not have: TFoS pins one TF node to each executor for the whole job.
REFUSED_SETTINGS = {
    "spark.dynamicAllocation.enabled": ("true", "executors must not come and go under the TF nodes"),
    "spark.python.worker.reuse": ("false", "InputMode.SPARK runs TF in a background process of a reused "
                                  "Python worker"),
}


class SessionSource(ABC):
    """A job's Spark: its master and settings, known before any session starts, and the session itself."""

    master: Master
    conf: dict[str, str]  # the Spark settings in force (spark-submit's, the properties file's, the caller's)

    def address(self, setting: str) -> str | None:
        """The address of the job's TFoS and TF sockets for --bind-address `setting`."""
        return bind_address(setting, self.master)

    @abstractmethod
    def open(self, app: str, address: str | None, executor_env: dict[str, str]) -> Any:
        """A context manager that yields the SparkSession."""


class JobSession(SessionSource):
    """The job's own session, started after the job's checks and stopped when the job ends."""

    def __init__(self, master_url: str | None = None) -> None:
        from pyspark import SparkConf, SparkContext

        local = parse_master(master_url or DEFAULT_MASTER).is_local_machine
        if local and not under_spark_submit() and LOCAL_IP_ENV not in os.environ:
            os.environ[LOCAL_IP_ENV] = LOOPBACK  # the JVM pyspark starts next inherits it (see loopback.py)
        SparkContext._ensure_initialized()  # joins spark-submit's JVM, so SparkConf sees its settings
        conf = SparkConf()
        if master_url:
            conf.setMaster(master_url)
        self.conf = dict(conf.getAll())
        self.master = parse_master(self.conf.get("spark.master", DEFAULT_MASTER))

    @contextmanager
    def open(self, app: str, address: str | None, executor_env: dict[str, str]) -> Iterator[Any]:
        from pyspark.sql import SparkSession

        preflight(address, self.master.url)  # a bind address or master that cannot work: one line, not a hang
        if address is not None and self.master.is_local_machine and LOCAL_IP_ENV not in os.environ \
                and under_spark_submit():
            relaunch_on(address, self.master.url, self.conf)  # exits with the relaunched job's code
        builder = SparkSession.builder.appName(app).master(self.master.url)
        for key, value in session_settings(self.master, address, self.conf, executor_env).items():
            builder = builder.config(key, value)
        try:
            spark = builder.getOrCreate()
        except Exception as e:  # py4j's error when Spark gave up on the master
            refused = registration_refused(self.master.url, self.conf, e)
            if refused is None:
                raise
            raise refused from e
        spark.sparkContext.setLogLevel("WARN")  # the console is for the job's own progress lines
        try:
            yield spark
        except KeyboardInterrupt:
            _silence_the_shutdown(spark)
            raise
        finally:
            spark.stop()


def _silence_the_shutdown(spark: Any) -> None:
    """After Ctrl-C or SIGTERM the job has said where it stopped; stopping Spark under running tasks then
    logs errors that only describe the stop itself (tasks rejected by closed pools, an executor whose
    SparkEnv is gone, Python workers killed by the signal), a different set on each run and Spark version.
    So the driver JVM's console goes quiet before Spark stops, instead of filtering each message."""
    from py4j.protocol import Py4JError

    try:
        spark.sparkContext.setLogLevel("OFF")
    except Py4JError as e:  # Ctrl-C reached spark-submit's JVM too, and its gateway is already gone
        logger.debug("could not quiet Spark's console before it stops: %s", e)


class GivenSession(SessionSource):
    """A session the caller built: used as it is (its settings cannot change once it runs), never stopped."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        sc = spark.sparkContext
        self.conf = dict(sc.getConf().getAll())
        self.master = parse_master(sc.master)

    @contextmanager
    def open(self, app: str, address: str | None, executor_env: dict[str, str]) -> Iterator[Any]:
        for key, (refused, why) in REFUSED_SETTINGS.items():
            if self.conf.get(key, "").strip().lower() == refused:
                raise ConfigError(f"this SparkSession has {key}={refused}, but {why}; build the session with "
                                  f"{key}={'false' if refused == 'true' else 'true'}")
        missing = [name for name in executor_env if f"spark.executorEnv.{name}" not in self.conf]
        if missing and self.master.kind not in ("local", "local-cluster"):
            logger.warning("executors on other machines may lack %s: build the session with "
                           "spark.executorEnv.%s set", ", ".join(missing), missing[0])
        yield self.spark


def session_source(spark: Any = None, master_url: str | None = None) -> SessionSource:
    """The caller's session when given one, else the job's own (from spark-submit's settings or master_url)."""
    if isinstance(spark, SessionSource):
        return spark
    source = JobSession(master_url) if spark is None else GivenSession(spark)
    check_gpu_amounts(source.conf)  # before any session starts: each TF node gets its task's GPUs
    return source
