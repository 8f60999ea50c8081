"""`python -m tfos_facecnn.cluster start|stop|status`: the command line of the standalone cluster launcher.

Errors are one `error: ...` line on stderr (errors.py): exit code 2 for bad settings (ConfigError), 1 for failures
(RuntimeError: a cluster already running, a busy port, a cluster that did not come up).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import cluster, netns
from ..config import ConfigError
from ..errors import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tfos_facecnn.cluster",
        description="A Spark standalone cluster on this machine (one master, N workers) for TFoS jobs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    start = sub.add_parser("start", help="start a master and N workers; returns once every worker registered")
    start.add_argument("--workers", type=int, default=None,
                       help="worker processes; one TF node each (default 2; with --netns N, N - 1)")
    start.add_argument("--cores", type=int, default=1, help="cores per worker (default 1)")
    start.add_argument("--memory", default="2g", help="memory per worker for executors, e.g. 2g or 512m (default 2g)")
    start.add_argument("--host", default="127.0.0.1", help="address every process binds (default 127.0.0.1)")
    start.add_argument("--port", type=int, default=7077, help="master port (default 7077)")
    start.add_argument("--webui-port", type=int, default=8080, help="master web UI port (default 8080)")
    start.add_argument("--allow-oversubscribe", action="store_true",
                       help="allow more worker cores in total than this machine has")
    start.add_argument("--netns", type=int, default=0, metavar="N",
                       help=f"N hosts as network namespaces on a private bridge ({netns.SUBNET}; needs root): the "
                            "master on the first, one worker on each other, every process bound to its host's "
                            "address (default 0: one host, --host)")
    start.add_argument("--auth-secret-file", metavar="FILE",
                       help="turn on Spark's authentication (spark.authenticate) with the secret in FILE (mode 600); "
                            "a driver must then give the same secret")
    start.add_argument("--timeout", type=float, default=cluster.START_TIMEOUT_S,
                       help=f"seconds to wait for the workers to register (default {cluster.START_TIMEOUT_S:.0f})")
    for name, help_line in (("stop", "stop the recorded cluster (SIGTERM, then SIGKILL) and remove its state"),
                            ("status", "show the recorded cluster; exit 0 only when all its processes run")):
        sub.add_parser(name, help=help_line)
    on_host = sub.add_parser("exec", help="run a command on one host of a --netns cluster: in its network namespace, "
                                          "with its host name (e.g. the driver on the master's host)")
    on_host.add_argument("host", help="the host's name, as `start` printed it (e.g. tfmh1); --state-dir goes before it")
    on_host.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND ...", help="the command and its arguments")
    for command in sub.choices.values():
        command.add_argument("--state-dir", default=".spark-cluster",
                             help="state file, logs and worker dirs (default .spark-cluster)")
    return parser


def _start(args: argparse.Namespace) -> int:
    workers = args.workers if args.workers is not None else (args.netns - 1 if args.netns else 2)
    info = cluster.start_cluster(
        workers=workers, cores=args.cores, memory=args.memory, host=args.host, port=args.port,
        webui_port=args.webui_port, state_dir=args.state_dir, allow_oversubscribe=args.allow_oversubscribe,
        timeout_s=args.timeout, say=lambda line: print(line, flush=True), netns=args.netns,
        auth_secret_file=args.auth_secret_file,
    )
    print(f"started a Spark standalone cluster: {info.workers} worker(s) x {info.cores} core(s), {info.memory} each")
    print(f"master URL: {info.master_url}")
    print(f"web UI:     {info.webui_url}")
    print(f"logs:       {info.log_dir}")
    if info.network:
        hosts = netns.Network.from_dict(info.network).hosts
        for n, host in enumerate(hosts):
            role = "master + driver" if n == 0 else f"worker-{n}"
            print(f"host {host.name}: {host.address} ({role}); a shell there: python -m tfos_facecnn.cluster exec "
                  f"--state-dir {args.state_dir} {host.name} bash")
        print(f"driver:     python -m tfos_facecnn.cluster exec --state-dir {args.state_dir} {hosts[0].name} "
              f"spark-submit --master {info.master_url} ...")
    if info.auth_secret_file:
        print("driver settings: --conf spark.authenticate=true --conf spark.authenticate.secret=<the secret>")
    print(f"stop it:    python -m tfos_facecnn.cluster stop --state-dir {args.state_dir}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    if cluster.read_state(args.state_dir) is None:
        print(f"no cluster recorded in {args.state_dir}: nothing to stop")
        return 0
    stopped = cluster.stop_cluster(args.state_dir)
    if stopped:
        print(f"stopped {len(stopped)} process(es): {' '.join(map(str, stopped))}")
    else:
        print("no process of the recorded cluster was running; removed its stale state file")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = cluster.cluster_status(args.state_dir)
    if status.info is None:
        print(f"stopped: no cluster recorded in {args.state_dir}")
        return 1
    info = status.info
    registered = "?" if status.registered_workers is None else status.registered_workers
    print(f"{status.state}: {info.master_url} (web UI {info.webui_url}), {registered} of {info.workers} "
          f"worker(s) registered, logs in {info.log_dir}")
    for proc in info.processes:
        print(f"  {proc.role:<10} pid {proc.pid:<8} {'running' if status.alive[proc.role] else 'gone'}")
    if status.state == "stale":
        print(f"  nothing runs: `python -m tfos_facecnn.cluster stop --state-dir {args.state_dir}` cleans up")
    return 0 if status.state == "running" else 1


def _exec(args: argparse.Namespace) -> int:
    info = cluster.read_state(args.state_dir)
    if info is None or not info.network:
        raise ConfigError(f"no --netns cluster recorded in {args.state_dir}: start one with start --netns N")
    hosts = {h.name: h for h in netns.Network.from_dict(info.network).hosts}
    if args.host not in hosts:
        raise ConfigError(f"host {args.host!r}: the cluster's hosts are {', '.join(hosts)}")
    if not args.argv:
        raise ConfigError("give the command to run on the host, e.g. bash")
    command = netns.host_command(hosts[args.host], args.argv)
    # As for the cluster's own processes: Spark binds the host's address (a SPARK_LOCAL_IP of this machine's,
    # e.g. the Makefile's 127.0.0.1, would keep a driver unreachable from the other hosts).
    env = {**os.environ, "SPARK_LOCAL_IP": hosts[args.host].address}
    os.execvpe(command[0], command, env)  # replaces this process: the command's exit status is ours
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = {"start": _start, "stop": _stop, "status": _status, "exec": _exec}[args.command]
    return run_command(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
