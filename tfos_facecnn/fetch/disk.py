"""Byte counts and the local disk: sizes for people ('1.5 KiB', '8GiB'), free-space and writability checks
that fail before minutes of work, and writes that fail with a clear message instead of a traceback."""

from __future__ import annotations

import os
import re
import shutil
from typing import IO

from .errors import DownloadError, UsageError

CHUNK = 1024 * 1024  # bytes per read and write, for downloads, checksums and unpacking alike


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}


def parse_size(text: str) -> int:
    """'8GiB', '500M', '1000' -> bytes; argparse turns the ValueError into a usage error."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 8GiB, 500M, 1000000)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def file_size(path: str) -> int:
    """The size of path, 0 when it does not exist (a .part file not yet started)."""
    return os.path.getsize(path) if os.path.exists(path) else 0


def write(out: IO[bytes], data: bytes) -> None:
    """out.write(data), with a full disk or a read-only folder reported as a DownloadError."""
    try:
        out.write(data)
    except OSError as exc:
        raise DownloadError(f"cannot write {getattr(out, 'name', 'file')!r} ({exc.strerror}); "
                            "free some space or pick another folder") from exc


def check_free_space(folder: str, needed: int, what: str) -> None:
    """Fails early, with numbers, rather than with ENOSPC after minutes of downloading."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(f"{what} needs {format_bytes(needed)} but only {format_bytes(free)} is free in "
                            f"{folder!r}; free some space or pick a folder on a bigger disk")


def ensure_writable_dir(folder: str, what: str) -> None:
    """Creates folder if needed; a UsageError when it cannot be created or written."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {folder!r} cannot be created ({exc.strerror}); pick a writable location") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {folder!r} is not writable; pick a writable location or fix its permissions")
