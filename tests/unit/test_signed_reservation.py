"""The signed reservation server: TFoS's protocol works on it, nothing unsigned is unpickled, and a slow
or oversized client neither stalls the others nor lives past its deadline."""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import time
from pathlib import Path

import pytest

from tfos_facecnn import signed_reservation

KEY = b"k" * 32


class _Payload:
    """What an attacker sends TFoS's server: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def server():
    from tensorflowonspark import reservation

    saved = reservation.MessageSocket.send, reservation.MessageSocket.receive, reservation.Client.await_reservations
    signed_reservation.install(KEY)
    server = signed_reservation.server_class(lambda: ("127.0.0.1", "127.0.0.1"), KEY)(2)
    address = server.start()
    yield server, address
    server.stop()
    reservation.MessageSocket.send, reservation.MessageSocket.receive, reservation.Client.await_reservations = saved


def _register(address, executor_id: int) -> list:
    from tensorflowonspark import reservation

    client = reservation.Client(address)
    try:
        client.register({"executor_id": executor_id, "host": "127.0.0.1"})
        return client.get_reservations()
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_tfos_clients_register_over_signed_messages_on_the_chosen_address(server):
    srv, address = server
    assert address[0] == "127.0.0.1"
    _register(address, 0)
    assert [node["executor_id"] for node in _register(address, 1)] == [0, 1]
    assert srv.reservations.done()


@pytest.mark.timeout(60)
def test_both_sides_see_the_last_registration_within_a_poll_not_a_second(server):
    import threading

    from tensorflowonspark import reservation

    srv, address = server
    _register(address, 0)
    waiter = reservation.Client(address)
    seen: dict[str, float] = {}

    def node_waits() -> None:
        seen["node"] = len(waiter.await_reservations())
        seen["node_at"] = time.monotonic()

    thread = threading.Thread(target=node_waits)
    thread.start()
    time.sleep(0.3)  # the node looks a few times first: the second registration is what it waits for
    registered = time.monotonic()
    _register(address, 1)
    nodes = srv.await_reservations(sc=None, status={}, timeout=5)
    driver_at = time.monotonic()
    thread.join(timeout=5)
    waiter.close()
    assert [node["executor_id"] for node in nodes] == [0, 1] and seen["node"] == 2
    # TFoS's looked once a second on both sides, and its client slept once more after the answer
    assert driver_at - registered < 0.5 and seen["node_at"] - registered < 0.5


@pytest.mark.timeout(60)
def test_nodes_that_never_register_time_out_naming_the_setting(server):
    srv, address = server
    _register(address, 0)
    with pytest.raises(TimeoutError, match=r"1 of 2 TF node\(s\) did not start within reservation_timeout \(1 s\): "
                                           r"Spark must give one executor per TF node"):
        srv.await_reservations(sc=None, status={}, timeout=1)


@pytest.mark.timeout(60)
def test_an_unsigned_pickle_is_dropped_and_logged_never_unpickled(server, tmp_path, caplog):
    _, address = server
    marker = tmp_path / "pwned"
    data = pickle.dumps({"type": "REG", "data": _Payload(marker)})
    with caplog.at_level(logging.WARNING, logger="tfos_facecnn.reservation"):
        with socket.create_connection(address, timeout=5) as attacker:
            attacker.sendall(struct.pack(">I", len(data)) + data)
            assert attacker.recv(1) == b""  # the server hung up without a reply
        # a forged signature is no better than none
        forged = b"\0" * signed_reservation.SIGNATURE_BYTES + data
        with socket.create_connection(address, timeout=5) as attacker:
            attacker.sendall(struct.pack(">I", len(forged)) + forged)
            assert attacker.recv(1) == b""
    assert not marker.exists()
    assert caplog.text.count("dropped a message from") == 2
    assert "without the cluster's signature" in caplog.text
    _register(address, 0)  # and the server still serves the job's own nodes


@pytest.mark.timeout(60)
def test_a_byte_by_byte_client_stalls_nobody_and_is_dropped_at_its_deadline(server, monkeypatch, caplog):
    monkeypatch.setattr(signed_reservation, "MESSAGE_DEADLINE_S", 2.0)
    _, address = server
    slow = socket.create_connection(address, timeout=10)
    slow.sendall(b"\0")  # the first byte of a length header, then nothing more for now
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tfos_facecnn.reservation"):
        _register(address, 0)  # served while the slow client holds its connection
        assert time.monotonic() - started < 2.0
        slow.sendall(b"\0")
        assert slow.recv(1) == b""  # closed once its message was not complete within the deadline
    slow.close()
    assert "message incomplete after 2.0 s" in caplog.text


@pytest.mark.timeout(60)
def test_an_oversized_message_is_refused_before_it_is_read(server, caplog):
    _, address = server
    with caplog.at_level(logging.WARNING, logger="tfos_facecnn.reservation"):
        with socket.create_connection(address, timeout=5) as client:
            client.sendall(struct.pack(">I", 1 << 30))
            assert client.recv(1) == b""
    assert f"(the limit is {signed_reservation.MAX_MESSAGE_BYTES})" in caplog.text


def test_tfos_logs_print_no_authkey(caplog):
    from tfos_facecnn.tfos_compat import redact_tfos_logs

    redact_tfos_logs()
    redact_tfos_logs()  # idempotent: one filter
    logger = logging.getLogger("tensorflowonspark.TFSparkNode")
    assert sum(type(f).__name__ == "RedactAuthkeys" for f in logger.filters) == 1
    node = {"executor_id": 0, "authkey": b"x\xdb'\"\\q", "port": 43655}
    with caplog.at_level(logging.INFO, logger="tensorflowonspark.TFSparkNode"):
        logger.info("TFSparkNode.reserve: {0}".format(node))  # noqa: UP030, UP032 (TFoS's own call, as it logs)
        logger.info("node: %s", {"authkey": b"abc"})
    assert "TFSparkNode.reserve: {'executor_id': 0, 'authkey': <redacted>, 'port': 43655}" in caplog.text
    assert "node: {'authkey': <redacted>}" in caplog.text
    assert "xdb" not in caplog.text and "abc" not in caplog.text
