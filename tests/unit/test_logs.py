"""What a run's log files hold: each captured line with one timestamp, its writer's where it has one."""

from __future__ import annotations

import logging
import os
import re
import threading

from tfos_facecnn.logs import LOG_FORMAT, LineCapture, stamped

SECOND = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"


def test_a_line_gets_the_capture_stamp_unless_its_writer_stamped_it():
    assert stamped("I0000 cuda_platform.cc:52] failed call", "2026-12-06 18:21:05") == \
        "2026-12-06 18:21:05 I0000 cuda_platform.cc:52] failed call"
    python_logging = "2026-12-06 18:21:05,436 INFO (MainThread-23560) Using MirroredStrategy"
    assert stamped(python_logging, "2026-12-06 18:21:06") == python_logging


def test_captured_output_carries_one_timestamp_per_line():
    received: list[str] = []
    done = threading.Event()

    def sink(lines: list[str]) -> None:
        received.extend(lines)
        if any("last" in line for line in lines):
            done.set()

    logger = logging.getLogger("tfos_facecnn.test_logs")
    capture = LineCapture(sink).start()
    try:
        handler = logging.StreamHandler(os.fdopen(os.dup(2), "w", buffering=1))
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.warning("from python logging")
        os.write(2, b"from below python\nlast\n")
        assert done.wait(10), received
    finally:
        logger.removeHandler(handler)
        handler.close()
        capture.stop()
    logged = [line for line in received if line.endswith("from python logging")]
    below = [line for line in received if line.endswith("from below python")]
    assert len(logged) == 1 and re.fullmatch(rf"{SECOND},\d{{3}} tfos_facecnn.test_logs WARNING from python logging",
                                             logged[0]), received
    assert len(below) == 1 and re.fullmatch(rf"{SECOND} from below python", below[0]), received


def test_the_jobs_own_lines_reach_the_terminal_as_written_and_the_log_whole_and_stamped(tmp_path):
    from tfos_facecnn.logs import JobLines

    logged: list[str] = []
    terminal = open(tmp_path / "terminal", "w", buffering=1)  # a real file: flushing a closed one raises
    lines = JobLines(terminal, logged.extend)
    lines.write("epoch 1/2 loss=0.69")
    lines.flush()
    assert (tmp_path / "terminal").read_text() == "epoch 1/2 loss=0.69" and logged == []  # half a line waits
    lines.write(" accuracy=0.5\nexported model to /x\ndone: ")
    assert [line[20:] for line in logged] == ["epoch 1/2 loss=0.69 accuracy=0.5", "exported model to /x"]
    assert all(re.match(rf"{SECOND} ", line) for line in logged), logged
    lines.close()  # the last line, unterminated, still reaches the log; the terminal is closed with it
    assert logged[-1][20:] == "done: " and lines.closed and terminal.closed
    assert (tmp_path / "terminal").read_text() == "epoch 1/2 loss=0.69 accuracy=0.5\nexported model to /x\ndone: "
