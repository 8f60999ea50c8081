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
