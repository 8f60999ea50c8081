"""Keeps TensorFlowOnSpark 2.2.5 on the address we choose.

TFoS picks a node's address by routing toward a public address and binds its reservation server on
all interfaces. For local masters (and whenever --bind-address is set) we pin both: the driver's
reservation server binds to the address, and every executor-side TFoS function reports it as the
node's host, so the TF cluster spec (TF_CONFIG) and all TFoS traffic use it. Worker-node TFoS
managers already listen on a Unix socket with a random 16-byte authkey.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator


def pin_executor_address(address: str) -> None:
    """Runs inside an executor's Python worker before any TFoS code reads the node address."""
    from tensorflowonspark import util

    util.get_ip_address = lambda: address


def _pinned(mapfn: Callable, address: str) -> Callable:
    def run_on_address(iterator):
        from tfos_facecnn.tfos_compat import pin_executor_address as pin

        pin(address)
        return mapfn(iterator)

    return run_on_address


@contextlib.contextmanager
def pinned_address(address: str | None) -> Iterator[None]:
    """Patches TFoS in this (driver) process for the block; address None leaves TFoS as it is."""
    if address is None:
        yield
        return
    from tensorflowonspark import TFSparkNode, reservation

    originals = {name: getattr(TFSparkNode, name) for name in ("run", "train", "inference", "shutdown")}
    original_server = reservation.Server
    original_env = os.environ.get(reservation.TFOS_SERVER_HOST)

    class LoopbackServer(original_server):
        def start_listening_socket(self):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, 0))
            sock.listen(16)
            return sock

    def wrap(name: str) -> Callable:
        original = originals[name]
        return lambda *args, **kwargs: _pinned(original(*args, **kwargs), address)

    try:
        for name in originals:
            setattr(TFSparkNode, name, wrap(name))
        reservation.Server = LoopbackServer
        os.environ[reservation.TFOS_SERVER_HOST] = address
        yield
    finally:
        for name, original in originals.items():
            setattr(TFSparkNode, name, original)
        reservation.Server = original_server
        if original_env is None:
            os.environ.pop(reservation.TFOS_SERVER_HOST, None)
        else:
            os.environ[reservation.TFOS_SERVER_HOST] = original_env
