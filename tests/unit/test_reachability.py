"""The network pre-flight checks of reachability.py, on loopback: one line naming the setting, the host and the fix."""

from __future__ import annotations

import socket
import time

import pytest

from tfos_facecnn.config import ConfigError
from tfos_facecnn.reachability import check_bind_address, check_master, master_endpoints


def test_a_bind_address_of_this_host_passes():
    check_bind_address("127.0.0.1")
    check_bind_address(None)


@pytest.mark.parametrize("address", ["192.0.2.254", "10.231.0.77"])  # IP literals: no name lookup leaves the host
def test_a_bind_address_no_interface_has_is_named_with_the_host(address: str):
    host = socket.gethostname()
    with pytest.raises(ConfigError, match=rf"--bind-address {address}: no interface of this host \({host}\)"
                       r" has that address .*its addresses are .*127\.0\.0\.1.*: give one of them, or auto"):
        check_bind_address(address)


def test_master_endpoints_of_standby_masters():
    assert master_endpoints("spark://a:7077,b:7078") == [("a", 7077), ("b", 7078)]
    assert master_endpoints("spark://h") == [("h", 7077)]


@pytest.mark.timeout(30)
def test_a_master_port_nobody_listens_on_fails_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"--master spark://127\.0\.0\.1:{port}: 127\.0\.0\.1 answers but nothing "
                                          rf"listens on port {port}"):
        check_master(f"spark://127.0.0.1:{port}")
    assert time.monotonic() - started < 5


def test_a_listening_master_passes_and_other_masters_are_not_probed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_master(f"spark://127.0.0.1:{s.getsockname()[1]}")
    check_master("local[2]")
    check_master("yarn")

