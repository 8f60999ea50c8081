"""Every Spark socket of a job on a local master on the job's address, without the user setting
SPARK_LOCAL_IP.

spark.driver.host/bindAddress (which the job sets, spark_env.session_settings) cover the driver's RPC
and block manager only. Spark's web UI binds to SPARK_LOCAL_IP or else 0.0.0.0, and local-cluster's
in-process master and workers (and the executors they start) to SPARK_LOCAL_IP or else the machine's
outside address: both read the environment of the driver JVM, which spark-submit started before any
of our code ran. So on a local master without SPARK_LOCAL_IP the job starts its driver again, once,
with SPARK_LOCAL_IP set (a second spark-submit with the same settings and arguments), and exits
with its exit code. Before any SparkContext exists the first JVM listens only on py4j's loopback port.
Run outside spark-submit (python jobs/train.py), the job sets SPARK_LOCAL_IP before pyspark starts
its JVM instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

LOCAL_IP_ENV = "SPARK_LOCAL_IP"
# spark-submit stamps these itself: passing them back would only restate or stale them.
_RESTAMPED = {"spark.master", "spark.app.submitTime", "spark.submit.deployMode"}


def under_spark_submit() -> bool:
    """True when pyspark joins a JVM that spark-submit started (it exports the gateway port)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def relaunch_command(master_url: str, user_conf: dict[str, str], argv: list[str]) -> list[str]:
    """spark-submit with the master, every setting the first spark-submit resolved (its --conf,
    --properties-file and defaults, --py-files...), the script and its arguments."""
    spark_home = os.environ.get("SPARK_HOME")
    submit = str(Path(spark_home) / "bin" / "spark-submit") if spark_home else "spark-submit"
    settings = [item for key, value in sorted(user_conf.items()) if key not in _RESTAMPED
                for item in ("--conf", f"{key}={value}")]
    return [submit, "--master", master_url, *settings, str(Path(argv[0]).resolve()), *argv[1:]]


def relaunch_on(address: str, master_url: str, user_conf: dict[str, str]) -> None:
    """Runs this job again under spark-submit with SPARK_LOCAL_IP=address and exits with its code."""
    command = relaunch_command(master_url, user_conf, sys.argv)
    print(f"{LOCAL_IP_ENV} is not set: starting the driver again with {LOCAL_IP_ENV}={address} so that Spark's "
          f"UI, master, workers and executors listen on {address} only (set {LOCAL_IP_ENV} yourself to skip "
          "this step)", flush=True)
    # the gateway variables name the first JVM: the second spark-submit makes its own
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY_")}
    # the terminal's streams: a job's console may have taken this process's fds 1 and 2 (logs.driver_console)
    child = subprocess.Popen(command, env={**env, LOCAL_IP_ENV: address}, stdout=sys.stdout, stderr=sys.stderr)

    def forward(signum, _frame):
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    raise SystemExit(child.wait())
