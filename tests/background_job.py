"""A spark-submit job in the background, its output collected line by line as it comes: for tests that
act on a job while it runs (kill a node, interrupt it, start a second run beside it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from tests.conftest import REPO, job_command, spark_env

T = TypeVar("T")
POLL_S = 0.1  # how often a wait looks again when no output arrives (the condition may be a file)


class BackgroundJob:
    """`train.py` (or another job) on `master`, in its own process session so that a signal can go to
    its whole process group, as a terminal's Ctrl-C does."""

    def __init__(self, *args: str, master: str = "local[*]", job: str = "train.py",
                 env_extra: dict[str, str] | None = None, command: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        """`command` and `env`: another command line and environment than spark-submit of `job` with `args`."""
        self.process = subprocess.Popen(command or job_command(job, master, *args),
                                        env={**(env or spark_env()), **(env_extra or {})}, cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.lines: list[str] = []
        self.times: list[float] = []  # monotonic arrival of each line
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.times.append(time.monotonic())
                self.changed.notify_all()

    def wait_until(self, condition: Callable[[], T], timeout_s: float, what: str) -> T:
        """Polls `condition()` (a real one: a line, a file) whenever output arrives or every POLL_S."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                found = condition()
                if found:
                    return found
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"never saw {what}:\n" + "\n".join(self.lines[-40:]))
                self.changed.wait(POLL_S)

    def line(self, pattern: str) -> re.Match | None:
        return next((m for m in (re.search(pattern, line) for line in self.lines) if m), None)

    def wait_for_line(self, pattern: str, timeout_s: float) -> re.Match:
        return self.wait_until(lambda: self.line(pattern), timeout_s, f"a line like {pattern!r}")

    def interrupt(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise

    @property
    def output(self) -> str:
        return "\n".join(self.lines)
