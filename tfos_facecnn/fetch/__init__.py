"""Fetches the full face2comics data set and unpacks it into the layout the training job reads.

`python -m tfos_facecnn download --version v2 --dest data/face2comics` downloads the author's release
tars (github.com/Sxela/face2comics), resumes an interrupted download with HTTP Range requests, verifies
size and sha256, unpacks with its own member checks into a temporary folder beside --dest and moves the
result into place only when it is complete: --dest ends up holding faces/*.jpg and comics/*.jpg, or is
left as it was. `--from FILE_OR_URL` takes archives already on disk (the Kaggle zip too) or a mirror.

Standard library only (plus the class names and image extensions of tfos_facecnn.data.discover), so the
command works in the training venv without new dependencies. One job per module:

- errors: DownloadError (exit 1), UsageError (exit 2), BadArchiveError
- disk: byte sizes, free-space and writability checks
- releases: the release table and --version
- progress, http: the progress display and the resumable download
- sources: the archives of a run, checksums, a verified local copy of each
- archives: safe tar/zip unpacking under member and byte caps
- install: --dest checks, finding faces/ and comics/, the atomic move into --dest
- cli: DownloadOptions, run() and the argparse options
"""

from .archives import Budget, archive_kind, safe_member_path, unpack
from .cli import (
    DEFAULT_DEST,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMBERS,
    DownloadOptions,
    Result,
    command,
    configure_parser,
    run,
)
from .disk import format_bytes, parse_size
from .errors import BadArchiveError, DownloadError, UsageError
from .http import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, download
from .install import CLASS_DIRS, TRAIN_COMMAND, check_dest, train_command
from .progress import Progress, format_duration
from .releases import RELEASES, Release, ReleaseFile, known_file, resolve_version
from .sources import Source, obtain, plan_sources, sha256_of, verify

__all__ = [
    "BadArchiveError", "Budget", "CLASS_DIRS", "DEFAULT_DEST", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_MEMBERS",
    "DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S", "DownloadError", "DownloadOptions", "Progress", "RELEASES", "Release",
    "ReleaseFile", "Result", "Source", "TRAIN_COMMAND", "UsageError", "archive_kind", "check_dest", "command",
    "configure_parser", "download", "format_bytes", "format_duration", "known_file", "obtain", "parse_size",
    "plan_sources", "resolve_version", "run", "safe_member_path", "sha256_of", "train_command", "unpack", "verify",
]
