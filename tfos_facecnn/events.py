"""A small authenticated channel from the TF nodes to the driver: epoch progress, completion, failure.

Users watch the spark-submit console, not executor logs, and TFoS alone can swallow a crashed chief:
every node reports here, so the driver prints progress, notices a failure at once and can stop the job.
One JSON object per line, one connection per event; a random token keeps strangers' lines out.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # a node never blocks longer than this on reporting
MAX_EVENT_BYTES = 1 << 20  # one event (a failure with its log tail) fits well below this
EVENT_DEADLINE_S = 10.0  # a node sends its event in one write: the whole of it must arrive within this
MAX_CONNECTIONS = 64  # events being received at once (nodes send one at a time each)
ACCEPT_POLL_S = 0.5  # how often the server looks for its stop flag and expired connections


@dataclass
class _Pending:
    """A connection whose event is still arriving."""

    sequence: int
    deadline: float
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass(frozen=True)
class EventsEndpoint:
    """Where the TF nodes report: the driver's event server and the run's token."""

    host: str
    port: int
    token: str = field(repr=False)  # a secret: kept out of reprs and logs

    def client(self, node: str) -> EventClient:
        return EventClient((self.host, self.port), self.token, node)


@dataclass
class NodeEvents:
    """What the driver has heard, guarded by one condition so waiters wake on every event."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    started: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)  # node -> monotonic time of its last event
    # node -> (batches done, phase, monotonic time the batch count last changed), from heartbeats
    progress: dict[str, tuple[int, str, float]] = field(default_factory=dict)


class EventServer:
    """Listens on (host, any free port) in a daemon thread; `on_event` runs for each accepted event."""

    def __init__(self, host: str, on_event: Callable[[dict[str, Any]], None] | None = None,
                 on_log: Callable[[str, list[str]], None] | None = None) -> None:
        self.token = secrets.token_hex(16)
        self.state = NodeEvents()
        self.changed = threading.Condition()
        self.on_event = on_event
        self.on_log = on_log  # (role, lines) of every "log" event: a process's captured output (logs.py)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self.address = (host, self._sock.getsockname()[1])
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tfos-facecnn-events", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> EventsEndpoint:
        return EventsEndpoint(self.address[0], self.address[1], self.token)

    def _serve(self) -> None:
        """One thread reads every connection at once (non-blocking, selectors): a client that sends
        slowly delays only its own event, and is dropped at its deadline (a per-recv timeout alone let
        a client sending a byte every 5 s hold the server for ever). Events that complete together are
        recorded in the order their connections were accepted, so one node's events keep their order."""
        selector = selectors.DefaultSelector()
        self._sock.setblocking(False)
        selector.register(self._sock, selectors.EVENT_READ)
        pending: dict[socket.socket, _Pending] = {}
        accepted = 0
        try:
            while not self._stopping.is_set():
                complete = []
                for key, _ in selector.select(timeout=ACCEPT_POLL_S):
                    if key.fileobj is self._sock:
                        accepted += 1
                        self._accept(selector, pending, accepted)
                        continue
                    conn = key.fileobj
                    item = pending[conn]
                    try:
                        chunk = conn.recv(65536)
                    except OSError as e:
                        self._drop(selector, pending, conn, f"malformed node event: {e}")
                        continue
                    if chunk:
                        item.chunks.append(chunk)
                        item.size += len(chunk)
                        if item.size > MAX_EVENT_BYTES:
                            self._drop(selector, pending, conn, "node event larger than the limit")
                        continue
                    complete.append(item)
                    self._drop(selector, pending, conn, None)
                for item in sorted(complete, key=lambda p: p.sequence):
                    self._accept_event(b"".join(item.chunks))
                now = time.monotonic()
                for conn in [c for c, item in pending.items() if item.deadline < now]:
                    self._drop(selector, pending, conn, f"node event incomplete after {EVENT_DEADLINE_S} s")
        finally:
            for conn in list(pending):
                conn.close()
            selector.close()
            self._sock.close()

    def _accept(self, selector, pending: dict, sequence: int) -> None:
        try:
            conn, peer = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(pending) >= MAX_CONNECTIONS:
            logger.warning("dropped a node event from %s: %d connections already open", peer, MAX_CONNECTIONS)
            conn.close()
            return
        conn.setblocking(False)
        pending[conn] = _Pending(sequence, time.monotonic() + EVENT_DEADLINE_S)
        selector.register(conn, selectors.EVENT_READ)

    @staticmethod
    def _drop(selector, pending: dict, conn: socket.socket, reason: str | None) -> None:
        if reason is not None:
            logger.warning("dropped a %s", reason)
        selector.unregister(conn)
        del pending[conn]
        conn.close()

    def _accept_event(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError as e:
            logger.warning("dropped a malformed node event: %s", e)
            return
        if not isinstance(event, dict) or not secrets.compare_digest(str(event.pop("token", "")), self.token):
            logger.warning("dropped a node event without the job's token")
            return
        self._record(event)

    def _record(self, event: dict[str, Any]) -> None:
        kind, node = event.get("kind"), str(event.get("node"))
        if kind == "log":
            lines = event.get("lines")
            if self.on_log is not None and isinstance(lines, list):
                self.on_log(node, [str(line) for line in lines])
            with self.changed:  # a node's output is a sign of life too
                if node in self.state.last_seen:
                    self.state.last_seen[node] = time.monotonic()
            return
        with self.changed:
            now = self.state.last_seen[node] = time.monotonic()
            if kind == "heartbeat":
                batches, phase = int(event.get("batches", 0)), str(event.get("phase", ""))
                previous = self.state.progress.get(node)
                changed = now if previous is None or previous[0] != batches else previous[2]
                self.state.progress[node] = (batches, phase, changed)
            elif kind == "epoch":
                self.state.epochs.append(event)
            elif kind == "done":
                self.state.done[node] = event
            elif kind == "failed":
                self.state.failures.append(event)
            elif kind == "started":
                self.state.started[node] = event
            self.changed.notify_all()
        if self.on_event is not None:
            self.on_event(event)

    def record_failure(self, node: str, error: str) -> None:
        """A failure the driver itself found (a node that went silent), reported like a node's own."""
        self._record({"kind": "failed", "node": node, "error": error, "log_tail": []})

    def record_lost(self, node: str, cause: str, evidence: list[str], last_heard: float) -> None:
        """A node the driver found gone (blame.py): a failure that says what happened, with the evidence
        and when the node was last heard from (monotonic; recording this event resets last_seen)."""
        self._record({"kind": "failed", "node": node, "error": f"{cause} ({'; '.join(evidence)})", "log_tail": [],
                      "lost": cause, "evidence": list(evidence), "last_heard": last_heard})

    def snapshot(self) -> NodeEvents:
        """A copy of what the driver has heard so far, taken under the lock."""
        with self.changed:
            return NodeEvents(**{f.name: copy.copy(getattr(self.state, f.name)) for f in fields(NodeEvents)})

    def wait_for_event(self, timeout_s: float) -> None:
        """Returns when the next node event is recorded, or after timeout_s."""
        with self.changed:
            self.changed.wait(timeout_s)

    def silent_nodes(self, timeout_s: float) -> list[tuple[str, float, float]]:
        """Started nodes, neither done nor failed, not heard from for longer than timeout_s:
        (node, seconds silent, when last heard on the monotonic clock)."""
        now = time.monotonic()
        with self.changed:
            failed = {str(f.get("node")) for f in self.state.failures}
            return [(node, now - self.state.last_seen[node], self.state.last_seen[node]) for node in self.state.started
                    if node not in self.state.done and node not in failed
                    and now - self.state.last_seen[node] > timeout_s]

    def stalled_nodes(self, timeout_s: float) -> list[tuple[str, int, float]]:
        """Nodes alive but training no further: in the training phase, batch count unchanged for
        longer than timeout_s (a dead peer's collective, a starved feed)."""
        now = time.monotonic()
        with self.changed:
            failed = {str(f.get("node")) for f in self.state.failures}
            return [(node, batches, now - changed) for node, (batches, phase, changed) in self.state.progress.items()
                    if phase == "train" and node not in self.state.done and node not in failed
                    and now - changed > timeout_s]

    def wait_for(self, predicate: Callable[[NodeEvents], bool], timeout_s: float) -> bool:
        """Waits until predicate(state) holds or a failure arrives; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not predicate(self.state) and not self.state.failures:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
            return predicate(self.state)

    def stop(self) -> None:
        self._stopping.set()  # the serving thread closes its sockets within ACCEPT_POLL_S
        self._thread.join(timeout=5)


class EventClient:
    """Used inside a TF node. Reporting must never kill training, so send() logs instead of raising."""

    last_success: float = 0.0

    def __init__(self, address: tuple[str, int] | list, token: str, node: str) -> None:
        self.address = (str(address[0]), int(address[1]))
        self.token = token
        self.node = node

    def send(self, kind: str, *, quiet: bool = False, **fields: Any) -> bool:
        """Sends one event; False when the driver could not be reached (logged, unless `quiet`: the log
        channel's own sends, whose warnings would only be captured and sent again)."""
        event = {"kind": kind, "node": self.node, "token": self.token, "time": time.time(), **fields}
        try:
            with socket.create_connection(self.address, timeout=CONNECT_TIMEOUT_S) as conn:
                conn.sendall(json.dumps(event, default=str).encode("utf-8"))
            self.last_success = time.monotonic()
            return True
        except OSError as e:
            if not quiet:
                logger.warning("could not report %r to the driver at %s:%d: %s", kind, *self.address, e)
            return False
