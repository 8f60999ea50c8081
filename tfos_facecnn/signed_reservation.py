"""TFoS's reservation channel, signed and bounded.

TFoS 2.2.5's reservation server (reservation.Server, in the driver) unpickles every message it
receives, so any process that can reach its port runs code in the driver as the submitting user: a
pickled payload sent from loopback created a file. Its single select() thread also reads each message
to the end with no deadline and trusts the 4-byte length, so one slow client stalls every node's
reservation.

Here every message carries an HMAC-SHA256 of its pickle under a key made per cluster on the driver
and handed to the executors inside the Spark task closures (the way the event token travels): the
receiver checks the signature before it unpickles, and drops and logs a message without it. The
server binds only the driver's chosen address, reads each connection in its own thread, and bounds a
message's size and the time it may take to arrive. The message protocol itself (REG/QUERY/QINFO/STOP,
pickled dicts) is TFoS's, so TFoS's client and server code run unchanged on top of it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
import socket
import struct
import sys
import threading
import time
from typing import Any

logger = logging.getLogger("tfos_facecnn.reservation")

SIGNATURE_BYTES = hashlib.sha256().digest_size
# The largest message: QINFO's cluster_info is a few hundred bytes per node.
MAX_MESSAGE_BYTES = 1 << 20
# A message, once its first byte arrives, must be complete within this (TFoS sends each in one write).
MESSAGE_DEADLINE_S = 10.0
# TFoS's clients keep their connection between messages (a QUERY every second while nodes register);
# one silent for this long is closed.
IDLE_CONNECTION_S = 120.0
MAX_CONNECTIONS = 64  # concurrent clients: a node registers over one connection at a time
ACCEPT_POLL_S = 0.5  # how often the accept loop looks at the server's done flag
# How often the driver, and each registering node, look whether every node has registered. TFoS sleeps
# 1 s between looks on both sides, and its client once more after the answer is yes: ~1.5 s of every
# cluster's start. A look is one small signed message on a kept connection.
RESERVATION_POLL_S = 0.1


class UnsignedMessage(ValueError):
    """A message without the cluster's signature, or malformed: dropped, never unpickled."""


def sign(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def encode(key: bytes, message: Any) -> bytes:
    payload = pickle.dumps(message)
    body = sign(key, payload) + payload
    return struct.pack(">I", len(body)) + body


def _read_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UnsignedMessage(f"message incomplete after {MESSAGE_DEADLINE_S} s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(65536, size - len(data)))
        except TimeoutError as e:
            raise UnsignedMessage(f"message incomplete after {MESSAGE_DEADLINE_S} s") from e
        if not chunk:
            raise ConnectionError("socket closed")
        data += chunk
    return bytes(data)


def receive(key: bytes, sock: socket.socket, idle_s: float | None = None) -> Any:
    """One signed message from `sock`; raises UnsignedMessage (and logs) for anything else.
    `idle_s`: how long to wait for the message's first byte (None: as long as it takes)."""
    sock.settimeout(idle_s)
    try:
        first = sock.recv(1)
    except TimeoutError as e:
        raise ConnectionError(f"no message for {idle_s} s") from e
    if not first:
        raise ConnectionError("socket closed")
    deadline = time.monotonic() + MESSAGE_DEADLINE_S
    (size,) = struct.unpack(">I", first + _read_exactly(sock, 3, deadline))
    if not SIGNATURE_BYTES < size <= MAX_MESSAGE_BYTES:
        raise UnsignedMessage(f"message of {size} bytes (the limit is {MAX_MESSAGE_BYTES})")
    body = _read_exactly(sock, size, deadline)
    signature, payload = body[:SIGNATURE_BYTES], body[SIGNATURE_BYTES:]
    if not hmac.compare_digest(signature, sign(key, payload)):
        raise UnsignedMessage("message without the cluster's signature")
    return pickle.loads(payload)  # signed by a holder of this cluster's key: the driver's own tasks


def install(key: bytes) -> None:
    """Signs and checks every TFoS reservation message of this process (driver or executor Python
    worker) with `key`: TFoS's Client and Server both call MessageSocket.send/receive."""
    from tensorflowonspark import reservation

    def send(self, sock, msg):
        sock.sendall(encode(key, msg))

    def receive_signed(self, sock):
        return receive(key, sock)

    def await_reservations(self):
        while not self._request("QUERY"):
            time.sleep(RESERVATION_POLL_S)
        return self.get_reservations()

    reservation.MessageSocket.send = send
    reservation.MessageSocket.receive = receive_signed
    reservation.Client.await_reservations = await_reservations


def server_class(addresses: Any, key: bytes) -> type:
    """reservation.Server bound to the address `addresses()` returns as (bind, advertised) when TFoS
    starts the server (never all interfaces, as TFoS binds), one thread per client, signed messages only."""
    from tensorflowonspark import reservation

    class SignedServer(reservation.Server):
        def get_server_ip(self) -> str:
            return self._advertised

        def start_listening_socket(self) -> socket.socket:
            bind, self._advertised = addresses()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((bind, 0))
            sock.listen(16)
            return sock

        def start(self) -> tuple[str, int]:
            listener = self.start_listening_socket()
            slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
            listener.settimeout(ACCEPT_POLL_S)

            def accept() -> None:
                with listener:
                    while not self.done:
                        try:
                            client, peer = listener.accept()
                        except TimeoutError:
                            continue
                        if not slots.acquire(blocking=False):
                            logger.warning("reservation server: %d clients already, refused %s", MAX_CONNECTIONS, peer)
                            client.close()
                            continue
                        threading.Thread(target=self._serve_client, args=(client, peer, slots), daemon=True,
                                         name="tfos-facecnn-reservation-client").start()

            threading.Thread(target=accept, daemon=True, name="tfos-facecnn-reservations").start()
            address = (self._advertised, listener.getsockname()[1])
            logger.info("listening for signed reservations at %s", address)
            return address

        def await_reservations(self, sc, status=None, timeout=600):
            """TFoS's, looking every RESERVATION_POLL_S instead of every second."""
            status = {} if status is None else status
            deadline = time.monotonic() + timeout
            while not self.reservations.done():
                if "error" in status:  # a node's start task failed: as TFoS, stop here (run_cluster explains)
                    sc.cancelAllJobs()
                    sc.stop()
                    sys.exit(1)
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.reservations.remaining()} of {self.reservations.required} TF node(s) did not "
                        f"start within reservation_timeout ({timeout} s): Spark must give one executor per TF "
                        "node; raise reservation_timeout in the job's config file (--config) if executors "
                        "start slowly")
                time.sleep(RESERVATION_POLL_S)
            logger.info("all %d reservations completed", self.reservations.required)
            return self.reservations.get()

        def _serve_client(self, client: socket.socket, peer: Any, slots: threading.BoundedSemaphore) -> None:
            try:
                with client:
                    while not self.done:
                        try:
                            message = receive(key, client, idle_s=IDLE_CONNECTION_S)
                        except UnsignedMessage as e:
                            logger.warning("reservation server: dropped a message from %s: %s", peer, e)
                            return
                        except (ConnectionError, OSError) as e:
                            logger.debug("reservation client %s left: %s", peer, e)
                            return
                        if not isinstance(message, dict) or "type" not in message:
                            logger.warning("reservation server: dropped a malformed message from %s", peer)
                            return
                        client.settimeout(MESSAGE_DEADLINE_S)  # the reply, too, within a deadline
                        self._handle_message(client, message)
            finally:
                slots.release()

    return SignedServer
