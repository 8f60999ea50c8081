"""The `python -m tfos_facecnn download` command: its options (DownloadOptions and the argparse parser that
fills them), and run(), which checks the arguments, fetches and verifies the archives, unpacks them into
--dest, cleans up the download cache and prints how to train on the result."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from .archives import Budget
from .disk import ensure_writable_dir, parse_size
from .errors import UsageError
from .http import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S
from .install import check_dest, train_command, unpack_all
from .releases import resolve_version
from .sources import obtain, plan_sources

DEFAULT_DEST = os.path.join("data", "face2comics")
DEFAULT_MAX_BYTES = 8 * 1024**3  # v2 unpacks to about 2 GB; 8 GiB leaves room yet stops a tar bomb
DEFAULT_MAX_MEMBERS = 100_000  # v2 holds 20,000 images plus folders


@dataclass
class DownloadOptions:
    """One field per command-line option, named like argparse's dest for it."""

    version: str = "v2"
    dest: str = DEFAULT_DEST
    sources: list[str] = field(default_factory=list)  # --from: local archives or mirror URLs
    cache_dir: str | None = None  # default: <dest>.download
    sha256: list[str] = field(default_factory=list)  # one per archive, in order
    overwrite: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT_S
    keep_archives: bool = False


@dataclass
class Result:
    dest: str
    counts: dict[str, int]
    command: str


def _cleanup_cache(downloaded: Sequence[str]) -> None:
    # Only the archives this command downloaded: a --cache-dir may hold the user's other files.
    for path in downloaded:
        if os.path.exists(path):
            os.remove(path)


def run(opts: DownloadOptions, out: TextIO | None = None, err: TextIO | None = None) -> Result:
    """The whole command: check arguments, fetch and verify, unpack safely, move into place, clean up."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    release = resolve_version(opts.version)
    dest = os.path.abspath(opts.dest)
    if opts.max_bytes <= 0 or opts.max_members <= 0 or opts.retries < 0:
        raise UsageError("--max-bytes and --max-members must be positive and --retries not negative")
    check_dest(dest, opts.overwrite)
    sources = plan_sources(release, opts.sources, opts.sha256)
    cache_dir = os.path.abspath(opts.cache_dir or dest.rstrip(os.sep) + ".download")
    downloads = any(s.is_url for s in sources)
    # Ours to remove when empty: the default <dest>.download, or a --cache-dir this run created.
    own_cache = downloads and (opts.cache_dir is None or not os.path.isdir(cache_dir))
    if downloads:
        ensure_writable_dir(cache_dir, "--cache-dir")
    try:
        archives = [obtain(s, cache_dir, opts.retries, opts.timeout, out, err) for s in sources]
        counts = unpack_all(sources, archives, dest, Budget(opts.max_bytes, opts.max_members), opts.overwrite, err)
        if not opts.keep_archives:
            _cleanup_cache([a for s, a in zip(sources, archives, strict=True) if s.is_url])
    finally:  # no empty cache folder left behind by a failure; a .part file to resume from keeps it
        if own_cache and os.path.isdir(cache_dir) and not os.listdir(cache_dir):
            os.rmdir(cache_dir)
    command = train_command(dest)
    what = "face2comics" if opts.sources else f"face2comics {release.tag} ({release.pixels} px)"
    out.write(f"{what} is ready in {dest}: {counts['faces']} faces, {counts['comics']} comics\n"
              f"Train on it with:\n  {command}\n")
    out.flush()
    return Result(dest, counts, command)


def configure_parser(p: argparse.ArgumentParser) -> None:
    """The options of `python -m tfos_facecnn download`; each dest is a DownloadOptions field."""
    p.add_argument("--version", default="v2",
                   help="v2 (two ~1 GB tars, 1024 px, default) or v1 (one ~700 MB tar, 512 px)")
    p.add_argument("--dest", default=DEFAULT_DEST, help=f"folder to create with faces/ and comics/ "
                   f"(default {DEFAULT_DEST})")
    p.add_argument("--from", dest="sources", action="append", default=[], metavar="FILE_OR_URL",
                   help="an archive on disk or a mirror URL instead of the GitHub release; repeat for v2's two "
                   "tars; the Kaggle zip works too")
    p.add_argument("--cache-dir", help="where downloads and their .part files live (default <dest>.download)")
    p.add_argument("--sha256", action="append", default=[], metavar="HEX",
                   help="expected sha256 of each archive, in order (default: the recorded ones)")
    p.add_argument("--overwrite", action="store_true", help="replace a data set already in --dest")
    p.add_argument("--max-bytes", type=parse_size, default=DEFAULT_MAX_BYTES,
                   help="refuse to unpack more than this (default 8GiB)")
    p.add_argument("--max-members", type=int, default=DEFAULT_MAX_MEMBERS,
                   help=f"refuse archives with more members (default {DEFAULT_MAX_MEMBERS})")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                   help=f"resume attempts after a dropped connection (default {DEFAULT_RETRIES})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds without data before a connection counts as dropped (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives in the cache")


def command(args: argparse.Namespace) -> int:
    """Runs `download` from parsed arguments; DownloadError propagates to the dispatcher."""
    run(DownloadOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DownloadOptions)}))
    return 0
