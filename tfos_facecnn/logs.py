"""Each run's logs in one place, and a console that shows only the job.

Every process of a job writes to its file descriptors 1 and 2: Python's logging (TFoS logs at INFO),
Python warnings, and TF's C++ logs (absl's start-up lines, which no TF setting silences). `LineCapture`
takes over fds 1 and 2 of a process with a pipe, so all of that is read line by line, whoever wrote it.

- On the driver (`driver_console`): the job's own lines (print) still go to the terminal; everything
  else goes to MODEL_DIR/logs/RUN/driver.log (and to the terminal too with --verbose).
- In a TF node and in the executors' Python workers (node start, feeding, shutdown tasks): the lines
  travel to the driver as "log" events over the event channel (as TorchDistributor streams its workers'
  output), so a cluster's logs land beside the driver's whatever storage MODEL_DIR is on. On a cluster
  they are also kept in the executor's own stderr; on a local master that stderr is the terminal.

The driver writes each role's lines into its own file (`RunLogs`), each line stamped with the time it
was read, and redacts every secret it knows (the event token, TFoS's authkeys, storage credentials).
"""

from __future__ import annotations

import collections
import io
import logging
import os
import re
import select
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import storage
from .config import ConfigError

if TYPE_CHECKING:
    from .events import EventsEndpoint

LOGS_DIR = "logs"  # in MODEL_DIR: one folder per run of the job
FLUSH_S = 1.0  # a captured line reaches the driver within about this long
MAX_LINES_PER_EVENT = 400  # lines in one "log" event: far below the event server's size limit
MAX_LINE_CHARS = 2000  # a longer line (a tensor printed whole) is cut
TAIL_LINES = 40  # what a failure report carries of a process's last lines
READ_BYTES = 65536
REDACTED = "<redacted>"
# Environment variables whose values are credentials of the storage backends (storage/schemes.py
# forwards them to executors): their values never reach a log.
SECRET_ENV = re.compile(r"(?i)secret|password|token|access[._]?key|account[._]?key|connection[._]?string|credential")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# A line that its writer stamped already (Python logging's asctime, to the millisecond) keeps that stamp
# alone; the capture stamps every other line (TF's C++ logs, prints) with the second it read it.
WRITER_STAMPED = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")

Sink = Callable[[list[str]], None]


def capture_stamp() -> str:
    """The stamp the capture gives a line it reads: the local time, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())


def stamped(line: str, stamp: str) -> str:
    """The line as a log file holds it: with one timestamp at its start."""
    return line if WRITER_STAMPED.match(line) else f"{stamp} {line}"


class LineCapture:
    """Fds 1 and 2 of this process into a pipe; a thread hands complete lines (stamped with the time they
    were read, unless their writer stamped them: `stamped`) to `sink` in batches. `echo`: also write them
    to where fd 2 went before. Keeps the last TAIL_LINES for a failure report. `stop()` restores the fds
    and delivers what is left. A child that inherited the pipe (TFoS forks a SPARK-mode node from its
    start task) takes over its own fds at once (node.main_fun); what it writes before that reaches the
    reader while it runs."""

    def __init__(self, sink: Sink, echo: bool = False) -> None:
        self.sink = sink
        self.echo = echo
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._saved: tuple[int, int] | None = None
        self._reader = -1
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LineCapture:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self._saved = (os.dup(1), os.dup(2))
        self._reader, writer = os.pipe()
        os.dup2(writer, 1)
        os.dup2(writer, 2)
        os.close(writer)
        self._thread = threading.Thread(target=self._run, name="tfos-facecnn-output", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        partial = b""
        pending: list[str] = []
        last_flush = time.monotonic()
        while True:
            ready, _, _ = select.select([self._reader], [], [], FLUSH_S)
            chunk = os.read(self._reader, READ_BYTES) if ready else b""
            if ready and not chunk:  # every writer has closed: nothing more can come
                break
            *lines, partial = (partial + chunk).split(b"\n")
            stamp = capture_stamp()
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")[:MAX_LINE_CHARS]
                self.tail.append(line)
                pending.append(stamped(line, stamp))
                if self.echo:
                    self._echo_line(raw + b"\n")
            if pending and (len(pending) >= MAX_LINES_PER_EVENT or time.monotonic() - last_flush >= FLUSH_S
                            or self._stopping.is_set()):
                self._deliver(pending)
                pending, last_flush = [], time.monotonic()
            if self._stopping.is_set() and not ready:
                break
        if partial:
            pending.append(stamped(partial.decode("utf-8", "replace"), capture_stamp()))
        self._deliver(pending)
        os.close(self._reader)

    def _echo_line(self, data: bytes) -> None:
        saved = self._saved
        if saved is None:
            return
        try:
            os.write(saved[1], data)
        except OSError:  # the original stderr is gone (the executor closed it): the driver still has the line
            self.echo = False

    def _deliver(self, lines: list[str]) -> None:
        for start in range(0, len(lines), MAX_LINES_PER_EVENT):
            self.sink(lines[start:start + MAX_LINES_PER_EVENT])

    def stop(self) -> None:
        """Restores fds 1 and 2 and delivers what was read; lines still in the pipe follow within FLUSH_S."""
        if self._saved is None:
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        out, err = self._saved
        os.dup2(out, 1)
        os.dup2(err, 2)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * FLUSH_S)
        self._saved = None
        os.close(out)
        os.close(err)


def event_sink(endpoint: EventsEndpoint, role: str) -> Sink:
    """Lines -> "log" events to the driver. Never logs its own failures: anything it printed would be
    captured and sent again; a driver that is gone loses the lines, which is all that can happen then."""
    client = endpoint.client(role)

    def send(lines: list[str]) -> None:
        if lines:
            client.send("log", lines=lines, quiet=True)

    return send


@contextmanager
def captured(endpoint: EventsEndpoint | None, role: str, echo: bool) -> Iterator[LineCapture | None]:
    """Captures this process's output for the block (None endpoint: leaves it alone)."""
    if endpoint is None:
        yield None
        return
    capture = LineCapture(event_sink(endpoint, role), echo=echo).start()
    try:
        yield capture
    finally:
        capture.stop()


class Redactor:
    """Replaces every known secret in a line with <redacted>."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str | bytes | None) -> None:
        with self._lock:
            for secret in secrets:
                if isinstance(secret, bytes):
                    # as TFoS logs its authkeys (repr of bytes) and as hex
                    self._secrets.update({repr(secret)[2:-1], secret.hex()})
                elif secret and len(secret) >= 6:  # a short value would redact ordinary words
                    self._secrets.add(secret)

    def add_environment(self) -> None:
        """The values of credential variables in this process's environment (storage backends)."""
        self.add(*(value for name, value in os.environ.items() if SECRET_ENV.search(name)))

    def __call__(self, line: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        return line


def run_log_name() -> str:
    """A run's log folder: when it started (UTC, sortable) and a few random characters."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


class RunLogs:
    """MODEL_DIR/logs/RUN/: one file per role (driver, node-chief-0, executor-1, ...). Written locally
    (a folder uploaded when the run ends where MODEL_DIR is on remote storage)."""

    def __init__(self, model_dir: str, run: str, echo: Callable[[str], None] | None = None) -> None:
        from .storage.mirror import LocalMirror

        self.target = storage.join(model_dir, LOGS_DIR, run)
        self.redact = Redactor()
        self.redact.add_environment()
        self._echo = echo
        self._mirror = LocalMirror(self.target, "logs")
        self._files: dict[str, io.TextIOBase] = {}
        self._lock = threading.Lock()
        try:
            os.makedirs(self._mirror.local, exist_ok=True)
            probe = os.path.join(self._mirror.local, ".write-probe")
            with open(probe, "w", encoding="utf-8"):
                pass
            os.remove(probe)
        except OSError as e:
            raise ConfigError(f"cannot write the run's logs into {self.target} ({e.strerror}); choose a --model-dir "
                              "this user can write, or fix its permissions") from e

    def path(self, role: str) -> str:
        """Where a role's log is (a path or URI), as a user should look for it."""
        return storage.join(self.target, f"{file_name(role)}.log")

    def write(self, role: str, lines: Iterable[str], echo: bool = True) -> None:
        """Appends `lines` to the role's file; `echo=False` for lines the terminal has shown already."""
        cleaned = [self.redact(line) for line in lines]
        with self._lock:
            handle = self._files.get(role)
            if handle is None:
                handle = self._files[role] = open(os.path.join(self._mirror.local, f"{file_name(role)}.log"), "a",
                                                  encoding="utf-8")
            handle.writelines(line + "\n" for line in cleaned)
            handle.flush()
        if echo and self._echo is not None:
            for line in cleaned:
                self._echo(f"[{role}] {line}")

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()
        self._mirror.push()
        self._mirror.cleanup()


def file_name(role: str) -> str:
    """A role ('chief:0', 'executor 1') as a file name: node-chief-0, executor-1."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", role).strip("-")
    return f"node-{name}" if re.fullmatch(r"(chief|worker|ps|evaluator)-\d+", name) else name


_terminal_err: io.TextIOBase | None = None  # the terminal's stderr while a driver console captures fd 2


class JobLines(io.TextIOBase):
    """The job's own lines: to the terminal as they are written, and each whole line into driver.log as
    well, stamped, so that the log tells the whole run in order (a user reading it after the run sees
    the epochs and the error beside the libraries' lines)."""

    def __init__(self, terminal: io.TextIOBase, sink: Sink) -> None:
        self.terminal, self._sink, self._partial = terminal, sink, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.terminal.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            stamp = capture_stamp()
            self._sink([stamped(line, stamp) for line in lines])
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def fileno(self) -> int:
        return self.terminal.fileno()

    def close(self) -> None:
        if self._partial:
            self._sink([stamped(self._partial, capture_stamp())])
            self._partial = ""
        super().close()  # flushes the terminal first
        self.terminal.close()


def echo_to_terminal(line: str) -> None:
    """A log line shown live with --verbose: on the terminal only (its log file has it already)."""
    stream = sys.stdout
    print(line, file=getattr(stream, "terminal", stream), flush=True)


def to_terminal(line: str) -> None:
    """A job's own line for stderr (a failed node, an interrupt): the terminal, also while driver_console
    sends everything else written to stderr into driver.log."""
    print(line, file=_terminal_err or sys.stderr, flush=True)


@contextmanager
def driver_console(logs: RunLogs, verbose: bool) -> Iterator[None]:
    """On the driver: print() (sys.stdout) and to_terminal() keep the terminal, and driver.log gets those
    lines too; Python logging, warnings, whatever libraries write to sys.stderr and anything written to
    fds 1 and 2 below Python (TF's C++ logs) go to driver.log alone, and to the terminal as well with
    --verbose."""
    global _terminal_err

    def to_driver_log(lines: list[str]) -> None:
        # Never echoed: the job's lines are on the terminal already, and with --verbose the capture
        # shows the rest as it reads it.
        logs.write("driver", lines, echo=False)

    terminal_out = JobLines(os.fdopen(os.dup(1), "w", buffering=1), to_driver_log)
    terminal_err = JobLines(os.fdopen(os.dup(2), "w", buffering=1), to_driver_log)
    saved_stdout = sys.stdout
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level

    capture = LineCapture(to_driver_log, echo=verbose)
    capture.start()
    sys.stdout, _terminal_err = terminal_out, terminal_err
    logging.captureWarnings(True)
    handler = logging.StreamHandler(sys.stderr)  # fd 2: the capture now
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers, root.level = saved_handlers, saved_level
        logging.captureWarnings(False)
        sys.stdout, _terminal_err = saved_stdout, None
        capture.stop()
        terminal_out.close()
        terminal_err.close()


def spark_executor_id() -> str | None:
    """The id of the Spark executor running this process, to name its logs and to match Spark's
    executor losses to TF nodes: from the executor's log URL (standalone), SPARK_EXECUTOR_ID
    (Kubernetes), or the executor JVM's `--executor-id` a few processes up (YARN and standalone on
    Linux); 'driver' on a local master, whose executor is the driver."""
    found = re.search(r"[?&]executorId=([^&]+)", os.environ.get("SPARK_LOG_URL_STDERR", ""))
    if found:
        return found.group(1)
    if os.environ.get("SPARK_EXECUTOR_ID"):
        return os.environ["SPARK_EXECUTOR_ID"]
    pid = os.getppid()
    for _ in range(4):  # TF process (SPARK mode) -> Python worker -> pyspark.daemon -> executor JVM
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        if b"--executor-id" in argv[:-1]:
            return argv[argv.index(b"--executor-id") + 1].decode(errors="replace")
        if b"org.apache.spark.deploy.SparkSubmit" in argv:  # a local master: the driver is the executor
            return "driver"
        if parent <= 1:
            return None
        pid = parent
    return None


def executor_role() -> str:
    """The log role of an executor's Python worker: its node start, feeding and shutdown tasks."""
    return f"executor-{spark_executor_id() or os.getpid()}"
