"""Ctrl-C and SIGTERM (#20): one line saying where the run stopped and where the same command resumes, no
traceback, exit 130 / 143, every process of the job gone within 15 s; the same command then resumes."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.background_job import BackgroundJob
from tests.conftest import run_train_job

pytestmark = pytest.mark.spark
EPOCHS = 12  # the resumed run must still be training when the second signal comes
RUN = ["--input-mode", "spark", "--epochs", str(EPOCHS), "--image-size", "48", "--batch-size", "8", "--no-report"]
STOPPED_WITHIN_S = 15
INTERRUPTED = re.compile(rf"^error: (stopped by SIGTERM: )?interrupted during epoch (\d+)/{EPOCHS}; run the same "
                         rf"command to resume from epoch (\d+) of {EPOCHS}$")
NOTE = re.compile(rf"^note: the TF nodes saved more before they stopped: ()interrupted during epoch (\d+)/{EPOCHS}; "
                  rf"run the same command to resume from epoch (\d+) of {EPOCHS}$")


def session_processes(session: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session:
                found.append(process)
        except (ProcessLookupError, PermissionError):  # gone while we looked, or not ours to ask
            continue
    return found


def wait_until_gone(session: int) -> list[psutil.Process]:
    deadline = time.monotonic() + STOPPED_WITHIN_S
    while time.monotonic() < deadline:
        left = session_processes(session)
        if not left:
            return []
        psutil.wait_procs(left, timeout=0.5)
    return session_processes(session)


def interrupt(job: BackgroundJob, how: str, after_line: str) -> re.Match:
    """Interrupts the job once it printed a line matching `after_line`; checks its exit and its last lines
    and that every process of it is gone; returns the match of the line saying where it resumes."""
    try:
        job.wait_for_line(after_line, 400)
        if how == "ctrl-c":
            job.interrupt()  # SIGINT to the whole process group, as a terminal's Ctrl-C
        else:  # SIGTERM to the job's Python driver (what `kill PID` of the job's process does)
            driver = next(p for p in session_processes(job.process.pid)
                          if p.name().startswith("python") and any(a.endswith("train.py") for a in p.cmdline()))
            driver.send_signal(signal.SIGTERM)
        code = job.wait(STOPPED_WITHIN_S + 30)
    finally:
        if job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGKILL)
    assert code == (130 if how == "ctrl-c" else 143), f"exit code {code}:\n{job.output[-3000:]}"
    assert "Traceback" not in job.output, job.output[-3000:]
    errors = [line for line in job.lines if line.startswith("error:")]
    # the line printed at once, then, if the nodes saved another epoch before Spark stopped them, a note
    last = job.lines[-1]
    assert len(errors) == 1 and (errors[0] == last or (last.startswith("note: ") and errors[0] == job.lines[-2])), \
        job.output[-3000:]
    stopped = INTERRUPTED.match(errors[0])
    assert stopped and stopped.group(2) == stopped.group(3), errors[0]
    assert bool(stopped.group(1)) == (how == "sigterm"), errors[0]
    if last.startswith("note: "):
        stopped = NOTE.match(last)
        assert stopped and stopped.group(2) == stopped.group(3), last
    assert not wait_until_gone(job.process.pid)
    return stopped


@pytest.mark.timeout(900)
def test_ctrl_c_then_sigterm_each_say_where_the_run_stopped_and_the_same_command_resumes_there(tmp_path: Path):
    """One run stopped twice: Ctrl-C during training, then SIGTERM during the resumed run, then the same
    command trains to the end from where the second stop left it."""
    args = [*RUN, "--model-dir", str(tmp_path / "model"), "--export-dir", str(tmp_path / "export")]
    first = interrupt(BackgroundJob(*args), "ctrl-c", r"^epoch 2/")

    resumed = BackgroundJob(*args)
    second = interrupt(resumed, "sigterm", r"^epoch \d+/")
    assert f"resuming at epoch {first.group(3)} of {EPOCHS}" in resumed.output, resumed.output[-3000:]
    assert int(second.group(3)) > int(first.group(3)), (first.group(0), second.group(0))

    again = run_train_job("local[*]", *args, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming at epoch {second.group(3)} of {EPOCHS}" in again.stdout
