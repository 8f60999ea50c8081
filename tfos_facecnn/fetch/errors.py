"""The errors of `python -m tfos_facecnn download`: each message names the culprit and the fix, and the
dispatcher in tfos_facecnn/__main__.py turns it into one `error: ...` line and an exit code."""

from __future__ import annotations


class DownloadError(RuntimeError):
    """A download or unpack failed; the message names the culprit and the fix. The CLI exits 1."""


class BadArchiveError(DownloadError):
    """The file is not a readable tar/zip (an HTML error page, a truncated copy): a download of it is deleted."""


class UsageError(DownloadError):
    """Bad arguments (unknown version, unusable --dest, ...). The CLI exits 2."""
