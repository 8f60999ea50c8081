"""Several hosts on one machine: Linux network namespaces on a private bridge (needs root and `ip netns`).

Each host is a network namespace with its own address on SUBNET, `lo` up and a default route through the
bridge, and its own hostname (every process is started in a fresh UTS namespace with it, and the host's
/etc/hosts, bind-mounted by `ip netns exec`, names every host of the network). The bridge's address in the
root namespace (GATEWAY) reaches every host, and forwarding is off on the bridge, so no packet of a host
ever leaves the machine. `cut` takes a host's cable out (its packets are dropped silently, as on a real
network), `reconnect` puts it back, `kill_host` ends every process in its namespace at once.
Used by the cluster launcher (`python -m tfos_facecnn.cluster start --netns N`) and by the tests.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import ConfigError

# Private and, on the machines this project runs on, free: `create_network` refuses it when any address or
# route of the root namespace overlaps it (the dev machine has 192.0.2.2/24 on eth0, loopback and nothing else).
SUBNET = ipaddress.ip_network("10.231.0.0/24")
GATEWAY = str(SUBNET[254])  # the bridge's address in the root namespace: the default route of every host
PREFIX = "tfmh"  # names of our namespaces, bridge and links (tfmh1.., tfmhbr, tfmh1r..): 15 characters at most
NETNS_ETC = Path("/etc/netns")  # `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc/*
MAX_HOSTS = 200  # host addresses .1 to .200; .254 is the gateway
COMMAND_TIMEOUT_S = 30.0  # one `ip` command; it returns in milliseconds unless the kernel is wedged
KILL_WAIT_S = 10.0  # for SIGKILLed processes to leave the namespace


class NetnsUnavailable(RuntimeError):
    """This machine cannot make namespaces: not root, or no `ip`/`unshare`. The message says which."""


@dataclass(frozen=True)
class Host:
    name: str  # the network namespace, e.g. tfmh1
    hostname: str  # what gethostname() says inside, e.g. tfmh1
    address: str  # e.g. 10.231.0.1
    link: str  # the root-namespace end of its cable (a veth on the bridge); down = host cut off


@dataclass(frozen=True)
class Network:
    prefix: str
    bridge: str
    gateway: str
    hosts: tuple[Host, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(raw: dict) -> Network:
        return Network(raw["prefix"], raw["bridge"], raw["gateway"], tuple(Host(**h) for h in raw["hosts"]))


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (None when they can): the skip reason of the tests."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add): run as root, as CI does"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (apt-get install iproute2 util-linux)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def _sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value)


def check_subnet_free(prefix: str = PREFIX) -> None:
    """Refuses SUBNET when an address or route of this machine (other than our own bridge) overlaps it."""
    bridge = f"{prefix}br"
    for kind in ("addr", "route"):
        listed = json.loads(_ip("-j", kind, "show").stdout or "[]")
        for entry in listed:
            if entry.get("ifname", entry.get("dev")) == bridge:
                continue
            found = [a.get("local") for a in entry.get("addr_info", [])] if kind == "addr" else [entry.get("dst")]
            for text in found:
                if not text or text == "default":
                    continue
                with contextlib.suppress(ValueError):
                    if ipaddress.ip_network(text, strict=False).overlaps(SUBNET):
                        raise RuntimeError(f"{SUBNET} collides with {text} ({kind} of "
                                           f"{entry.get('ifname', entry.get('dev'))}); change netns.SUBNET")


def leftovers(prefix: str = PREFIX) -> list[str]:
    """Namespaces and links of ours still present (a run killed before its teardown)."""
    links = [link["ifname"] for link in json.loads(_ip("-j", "link", "show").stdout or "[]")]
    return namespaces(prefix) + [name for name in links if name.startswith(prefix)]


def namespaces(prefix: str = PREFIX) -> list[str]:
    """Our network namespaces present on this machine."""
    listed = [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]
    return [name for name in listed if name.startswith(prefix)]


def clear_idle_leftovers(prefix: str = PREFIX, say: Callable[[str], None] | None = None) -> list[str]:
    """Removes what a killed run left (namespaces nothing runs in, their links, the bridge) and returns the names;
    raises RuntimeError, naming the PIDs, when a process still runs in one (a cluster that is up: never touched).
    A launcher between creating its namespaces and spawning its master (well under a second) looks idle too:
    two clusters started at the same instant on one machine are not guarded against."""
    found = leftovers(prefix)
    if not found:
        return []
    busy = {name: pids(Host(name, name, "", "")) for name in namespaces(prefix)}
    busy = {name: found_pids for name, found_pids in busy.items() if found_pids}
    if busy:
        running = "; ".join(f"{name}: pid {' '.join(map(str, found_pids))}" for name, found_pids in busy.items())
        raise RuntimeError(f"a multi-host cluster already runs on this machine ({running}); stop it first: "
                           "python -m tfos_facecnn.cluster stop --state-dir DIR (the cluster's)")
    destroy_leftovers(prefix)
    still = leftovers(prefix)
    if still:
        raise RuntimeError("namespaces/links of an earlier multi-host cluster could not be removed "
                           f"({', '.join(still)}); remove them by hand: ip netns delete NAME, ip link delete NAME")
    if say:
        say("removed what an earlier multi-host cluster left behind, with nothing running in it: "
            f"{', '.join(sorted(found))}")
    return found


def create_network(hosts: int, prefix: str = PREFIX, say: Callable[[str], None] | None = None) -> Network:
    """`hosts` namespaces on a new bridge; raises NetnsUnavailable, or RuntimeError when the subnet is taken or
    a cluster runs in namespaces of ours. Idle ones a killed run left are removed first (`say` tells). On any
    failure everything already made is removed again."""
    reason = unavailable_reason()
    if reason:
        raise NetnsUnavailable(reason)
    if not 1 <= hosts <= MAX_HOSTS:
        raise ConfigError(f"--netns {hosts}: give 1 to {MAX_HOSTS} hosts")
    check_subnet_free(prefix)
    clear_idle_leftovers(prefix, say)
    bridge = f"{prefix}br"
    members = tuple(Host(f"{prefix}{i}", f"{prefix}{i}", str(SUBNET[i]), f"{prefix}{i}r") for i in range(1, hosts + 1))
    network = Network(prefix, bridge, GATEWAY, members)
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", bridge)
        _sysctl(f"net/ipv4/conf/{bridge}/forwarding", "0")  # nothing a host sends is routed off the machine
        _ip("link", "set", bridge, "up")
        for host in members:
            _add_host(network, host)
    except BaseException:
        destroy_network(network)
        raise
    return network


def _add_host(network: Network, host: Host) -> None:
    etc = NETNS_ETC / host.name
    etc.mkdir(parents=True, exist_ok=True)
    names = "".join(f"{h.address} {h.hostname}\n" for h in network.hosts)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{names}")
    # No resolver: a DNS query inside a host goes to its own loopback and is refused at once.
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    _ip("netns", "add", host.name)
    _ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.name)
    _ip("link", "set", host.link, "master", network.bridge, "up")
    _ip("-n", host.name, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", "eth0")
    _ip("-n", host.name, "link", "set", "eth0", "up")
    _ip("-n", host.name, "link", "set", "lo", "up")
    # TFoS finds a node's address by the route toward a public address (a UDP connect: no packet is sent).
    _ip("-n", host.name, "route", "add", "default", "via", network.gateway)


def host_command(host: Host, argv: list[str]) -> list[str]:
    """argv run on `host`: in its namespace, with its hostname, its /etc/hosts. The PID stays the same
    (ip, unshare and sh each exec the next), so a caller may record Popen's PID as the program's."""
    return ["ip", "netns", "exec", host.name, "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"',
            host.hostname, *argv]


def pids(host: Host) -> list[int]:
    """Every process in the host's namespace."""
    done = _ip("netns", "pids", host.name, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def kill_host(host: Host, timeout_s: float = KILL_WAIT_S) -> list[int]:
    """SIGKILL to every process in the host at once (a machine that died), then waits for them to go."""
    killed = pids(host)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while pids(host) and time.monotonic() < deadline:
        time.sleep(0.1)  # polls the namespace's process list, with a deadline
    left = pids(host)
    if left:
        raise RuntimeError(f"processes {left} of host {host.name} survived SIGKILL for {timeout_s:.0f} s")
    return killed


def cut(host: Host) -> None:
    """Takes the host off the network: its end of the bridge goes down, packets both ways are dropped."""
    _ip("link", "set", host.link, "down")


def reconnect(host: Host) -> None:
    _ip("link", "set", host.link, "up")


def destroy_network(network: Network) -> list[int]:
    """Kills every process of every host, removes the namespaces, links, bridge and /etc/netns entries.
    Idempotent: what is already gone is skipped. Returns the PIDs killed."""
    killed: list[int] = []
    survivors: list[str] = []
    for host in network.hosts:
        if host.name in _ip("netns", "list", check=False).stdout.split():
            try:
                killed += kill_host(host)
            except RuntimeError as e:  # a process stuck in the kernel: remove the rest all the same
                survivors.append(str(e))
            _ip("netns", "delete", host.name, check=False)  # takes its eth0, and so the veth pair, with it
        _ip("link", "delete", host.link, check=False)
        shutil.rmtree(NETNS_ETC / host.name, ignore_errors=True)
    _ip("link", "delete", network.bridge, check=False)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only when empty: other users' entries stay
    if survivors:
        raise RuntimeError("; ".join(survivors) + "; the namespaces and links are removed: kill them by PID")
    return killed


def destroy_leftovers(prefix: str = PREFIX) -> list[str]:
    """Removes namespaces, links and /etc/netns entries named with `prefix` (a crashed run's), killing what runs
    in them."""
    found = leftovers(prefix)
    hosts = tuple(Host(name, name, "", f"{name}r") for name in namespaces(prefix))
    destroy_network(Network(prefix, f"{prefix}br", GATEWAY, hosts))
    for link in found:
        _ip("link", "delete", link, check=False)
    for etc in NETNS_ETC.glob(f"{prefix}*") if NETNS_ETC.is_dir() else []:
        shutil.rmtree(etc, ignore_errors=True)
    return found
