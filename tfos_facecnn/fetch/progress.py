"""The download progress display: a plain-text bar with bytes, rate and time left, redrawn in place on a
terminal and written as occasional whole lines to log files and CI."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from .disk import format_bytes


def format_duration(seconds: float) -> str:
    """75 -> '1:15', 3700 -> '1:01:40'."""
    s = int(max(0, seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A plain-text progress bar: \\r updates on a terminal, a line every `line_interval` seconds otherwise
    (log files and CI would fill up with \\r frames)."""

    def __init__(self, label: str, total: int | None, start: int = 0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, line_interval: float = 10.0) -> None:
        self.label, self.total, self.start = label, total, start
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.interval = 0.25 if self.tty else line_interval
        self.t0 = self.last = clock()
        self.done = start

    def text(self, done: int) -> str:
        elapsed = self.clock() - self.t0
        rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
        parts = [self.label]
        if self.total:
            pct = 100.0 * done / self.total
            width = 24
            filled = int(width * min(done, self.total) / self.total)
            parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {pct:5.1f}%")
            parts.append(f"{format_bytes(done)} / {format_bytes(self.total)}")
        else:
            parts.append(format_bytes(done))
        parts.append(f"{format_bytes(rate)}/s")
        if self.total and rate > 0:
            parts.append(f"{format_duration((self.total - done) / rate)} left")
        return "  ".join(parts)

    def update(self, done: int) -> None:
        self.done = done
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._emit(done, final=False)

    def finish(self) -> None:
        self._emit(self.done, final=True)

    def _emit(self, done: int, final: bool) -> None:
        if self.tty:
            self.stream.write("\r" + self.text(done) + ("\n" if final else ""))
        else:
            self.stream.write(self.text(done) + "\n")
        self.stream.flush()
