"""The multi-host harness without making namespaces: why it cannot run, the command a host runs, a subnet that
collides, and the skip that CI turns into a failure."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import multihost
from tfos_facecnn import netns


def test_without_root_the_reason_says_so(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "need root" in netns.unavailable_reason()
    with pytest.raises(netns.NetnsUnavailable, match="need root"):
        netns.create_network(3)


def test_a_host_runs_its_command_in_its_namespace_with_its_name():
    host = netns.Host("tfmh2", "tfmh2", "10.231.0.2", "tfmh2r")
    command = netns.host_command(host, ["spark-submit", "--master", "spark://10.231.0.1:7077"])
    assert command[:5] == ["ip", "netns", "exec", "tfmh2", "unshare"]
    assert command[-4:] == ["tfmh2", "spark-submit", "--master", "spark://10.231.0.1:7077"]


def test_the_subnet_and_gateway_are_private_and_distinct():
    assert netns.SUBNET.is_private and netns.GATEWAY in {str(a) for a in netns.SUBNET}
    assert len(f"{netns.PREFIX}{netns.MAX_HOSTS}r") <= 15  # Linux interface names


def test_a_subnet_in_use_on_this_machine_is_refused(monkeypatch):
    addresses = [{"ifname": "eth9", "addr_info": [{"local": "10.231.0.40"}]}]

    def fake_ip(*args, check=True):
        listed = addresses if "addr" in args else []
        return subprocess.CompletedProcess(["ip", *args], 0, json.dumps(listed), "")

    monkeypatch.setattr(netns, "_ip", fake_ip)
    with pytest.raises(RuntimeError, match=r"10\.231\.0\.0/24 collides with 10\.231\.0\.40 \(addr of eth9\); "
                                           r"change netns\.SUBNET"):
        netns.check_subnet_free()


@pytest.mark.parametrize("required", ["", "1"])
def test_a_machine_without_namespaces_skips_except_where_ci_requires_them(monkeypatch, required: str):
    monkeypatch.setattr(netns, "unavailable_reason", lambda: "network namespaces need root")
    monkeypatch.setenv(multihost.REQUIRE_ENV, required)
    expected = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(expected, match="network namespaces need root"):
        multihost.require_netns()
