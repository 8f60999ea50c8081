"""Network settings that cannot work on a cluster of several hosts, found in seconds and named with the host
and address, instead of a Java stack trace, Spark's own minute of retries, or a job that waits for ever.

- `check_bind_address`: --bind-address must be an address of the driver's host (else Spark's driver dies
  with "Cannot assign requested address" after 16 bind retries);
- `check_master`: a spark:// master must accept a connection (else Spark retries for a minute and the
  job then waits for executors that never come);
- `missing_workers`: when fewer executors register than TF nodes, which workers gave none (their host
  cannot reach the driver's ports, typically a firewall);
- `check_executor_hosts`: a fixed --bind-address cannot serve executors on other hosts;
- `registration_refused`: a master that answers but does not register the driver (a cluster run with
  spark.authenticate, and a driver without its secret) is named with the fix, not with a Py4J traceback.
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from collections import Counter
from urllib.parse import urlparse

from .config import ConfigError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # a master on a reachable host accepts within milliseconds; a dropped SYN never does
MASTER_UI_PORT = 8080  # a standalone master's web UI (its /json/ lists the workers) unless spark.master.ui.port


def preflight(address: str | None, master_url: str) -> None:
    """The checks that need no Spark: before the session starts."""
    check_bind_address(address)
    check_master(master_url)


def host_addresses() -> list[str]:
    """The IPv4 addresses of this host's interfaces (this network namespace's)."""
    import psutil

    return sorted({a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET})


def check_bind_address(address: str | None) -> None:
    """Refuses a --bind-address no interface of this host has (ConfigError naming the host and its addresses)."""
    if address is None:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except (OSError, OverflowError) as e:
            raise ConfigError(
                f"--bind-address {address}: no interface of this host ({socket.gethostname()}) has that address "
                f"({getattr(e, 'strerror', None) or e}); its addresses are {', '.join(host_addresses())}: give one "
                "of them, or auto") from e


def master_endpoints(url: str) -> list[tuple[str, int]]:
    """host:port pairs of spark://H1:P1[,H2:P2] (standby masters too)."""
    endpoints = []
    for part in url.removeprefix("spark://").split(","):
        parsed = urlparse(f"spark://{part}")
        try:
            port = parsed.port or 7077
        except ValueError as e:
            raise ConfigError(f"--master {url}: {part!r} is not HOST:PORT") from e
        endpoints.append((parsed.hostname or "", port))
    return endpoints


def check_master(url: str) -> None:
    """A spark:// master must accept a TCP connection within CONNECT_TIMEOUT_S (one of them, for standbys)."""
    if not url.startswith("spark://"):
        return
    problems = []
    for host, port in master_endpoints(url):
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                return
        except socket.gaierror as e:
            problems.append(f"the host name {host!r} does not resolve ({e.strerror})")
        except ConnectionRefusedError:
            problems.append(f"{host} answers but nothing listens on port {port} (is the master running there?)")
        except TimeoutError:
            problems.append(f"{host}:{port} does not answer within {CONNECT_TIMEOUT_S:.0f} s (the host is down or "
                            "unreachable from this one, or a firewall drops the traffic)")
        except OSError as e:
            problems.append(f"{host}:{port} cannot be reached from this host ({e.strerror or e})")
    raise ConfigError(f"--master {url}: {'; '.join(problems)}; check the URL (spark://HOST:PORT of a running "
                      f"master) and that {socket.gethostname()} can reach it")


def _executor_hosts(sc) -> set[str]:
    """Hosts of the executors registered with the driver. Spark's list holds the driver too: one entry of the
    driver's host is taken off (an executor on the driver's host keeps that host in the set)."""
    infos = sc._jsc.sc().statusTracker().getExecutorInfos()
    hosts = Counter(str(info.host()) for info in infos)
    hosts[sc.getConf().get("spark.driver.host")] -= 1
    return {host for host, count in hosts.items() if count > 0}


def missing_workers(sc, master_url: str) -> str:
    """For the 'too few executors' error of a standalone job: the ALIVE workers of the master that gave it no
    executor, and why that usually is. Empty when the master cannot tell (not standalone, no web UI)."""
    if not master_url.startswith("spark://"):
        return ""
    host = master_endpoints(master_url)[0][0]
    ui_port = sc.getConf().get("spark.master.ui.port", str(MASTER_UI_PORT))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the master's host, never a proxy
    try:
        with opener.open(f"http://{host}:{ui_port}/json/", timeout=CONNECT_TIMEOUT_S) as answer:
            workers = {w["host"] for w in json.load(answer).get("workers", []) if w.get("state") == "ALIVE"}
    except (OSError, ValueError, KeyError) as e:
        logger.info("could not list the master's workers: %s", e)
        return ""
    missing = sorted(workers - _executor_hosts(sc))
    if not missing:
        return ""
    driver = sc.getConf().get("spark.driver.host")
    if _resolve(driver) != driver:
        driver = f"{driver} ({_resolve(driver)})"  # the name, and the address the workers must reach
    return (f"; no executor came from the worker(s) on {', '.join(missing)}: that host cannot reach the driver at "
            f"{driver} (spark.driver.port and spark.driver.blockManager.port, random ports unless set: open them "
            "to it, or set them to ports the firewall lets through), or its executors fail at start (see that "
            "worker's work dir)")


def _resolve(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:  # a name only the executors' hosts know: it is not this host
        return host


def check_executor_hosts(sc, address: str | None, master_url: str) -> None:
    """A fixed --bind-address pins every TF node to it: executors on other hosts than the driver's cannot bind it."""
    if address is None or not master_url.startswith("spark://"):
        return
    here = set(host_addresses())
    others = sorted(h for h in _executor_hosts(sc) if _resolve(h) not in here | {address})
    if others:
        raise ConfigError(f"--bind-address {address}: executors run on other hosts ({', '.join(others)}), where "
                          "no interface has that address, and every TF node would bind it; use --bind-address auto "
                          "on a cluster of several hosts")


def registration_refused(master_url: str, conf: dict[str, str], error: Exception) -> RuntimeError | None:
    """The error for a SparkContext that Spark stopped while it was being made on a standalone master that
    accepts connections (check_master ran): the master did not register the driver. None for anything else."""
    if not master_url.startswith("spark://") or "stopped SparkContext" not in str(error):
        return None
    if conf.get("spark.authenticate", "false").lower() == "true":
        why = "this driver has spark.authenticate on: check that spark.authenticate.secret is the cluster's secret"
    else:
        why = ("a cluster run with Spark's authentication (spark.authenticate) refuses a driver without its secret: "
               "give the same one with --conf spark.authenticate=true --conf spark.authenticate.secret=...")
    return RuntimeError(f"--master {master_url}: the master answers but did not register this driver (Spark gave "
                        f"up: 'All masters are unresponsive'); {why}; the master's log says why it refused")
