"""The archives one run works on: where each comes from (the release table or --from files and URLs), its
expected size and sha256, and a verified local copy of it. A bad download is deleted so the next run fetches
it afresh; the user's own --from file is never deleted."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from .archives import Budget, unpack
from .disk import CHUNK, check_free_space, file_size
from .errors import BadArchiveError, DownloadError, UsageError
from .http import download
from .releases import Release, known_file


@dataclass(frozen=True)
class Source:
    location: str  # URL or local path
    name: str  # file name in the cache (URLs) or base name (local files)
    is_url: bool
    size: int | None
    sha256: str


def is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme.lower() in ("http", "https")


def _cache_name(location: str, index: int) -> str:
    # Stable across runs so a rerun finds its .part file; sanitised so a URL cannot name a path.
    base = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(location).path))
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return base or f"archive-{index}"


def _check_sha_arg(value: str) -> str:
    v = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        raise UsageError(f"--sha256 {value!r} is not a sha256 (64 hex digits); copy it from `sha256sum FILE`")
    return v


def plan_sources(release: Release, locations: Sequence[str], sha256: Sequence[str]) -> list[Source]:
    """The archives to fetch: the release table, or the --from list; each with its expected checksum."""
    if locations:
        names = [_cache_name(loc, i) if is_url(loc) else os.path.basename(loc) for i, loc in enumerate(locations)]
        entries = [known_file(n) for n in names]
        if len(set(names)) < len(names):  # two mirrors may use the same file name: keep both in the cache
            names = [f"{i}-{n}" for i, n in enumerate(names)]
        sources = []
        for loc, name, entry in zip(locations, names, entries, strict=True):
            if not is_url(loc) and not os.path.isfile(loc):
                raise UsageError(f"--from {loc!r}: no such file; pass an existing archive or an http(s) URL")
            sources.append(Source(loc, name, is_url(loc), entry.size if entry else None,
                                  entry.sha256 if entry else ""))
    else:
        sources = [Source(f.url, f.name, True, f.size, f.sha256) for f in release.files]
    if sha256:
        if len(sha256) != len(sources):
            raise UsageError(f"got {len(sha256)} --sha256 value(s) for {len(sources)} archive(s); "
                             "give one per archive, in the same order")
        sources = [Source(s.location, s.name, s.is_url, s.size, _check_sha_arg(h))
                   for s, h in zip(sources, sha256, strict=True)]
    return sources


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _reject(source: Source, path: str, why: str, deleted: str, kept: str,
            error: type[DownloadError] = DownloadError) -> DownloadError:
    """The error for a bad archive; a download is deleted first (`deleted` says so), a --from file is kept."""
    if source.is_url:
        os.remove(path)
        return error(f"{why}; {deleted}")
    return error(f"{why}; {kept}")


def verify(path: str, source: Source, out: TextIO) -> None:
    """Checks size and sha256; a bad download is deleted so the next run fetches it afresh."""
    deleted = "the file was deleted, run again to download it afresh"
    kept = f"check that --from {path!r} is the right file, or fix --sha256"
    size = os.path.getsize(path)
    if source.size is not None and size != source.size:
        raise _reject(source, path, f"{source.name} is {size} bytes, expected {source.size}", deleted, kept)
    if not source.sha256 and not source.is_url:
        return  # a local file with nothing to compare against: hashing 1 GB would only cost time
    digest = sha256_of(path)
    if not source.sha256:
        out.write(f"sha256 {digest}  {source.name} ({size} bytes; no recorded checksum: record it in "
                  "tfos_facecnn/fetch/releases.py RELEASES, or pass --sha256)\n")
    elif digest != source.sha256:
        raise _reject(source, path, f"sha256 mismatch for {source.name}: expected {source.sha256}, got {digest}",
                      deleted, kept)


def obtain(source: Source, cache_dir: str, retries: int, timeout: float, out: TextIO, err: TextIO) -> str:
    """The local path of a verified archive: the --from file, a cached download, or a fresh download."""
    if not source.is_url:
        verify(source.location, source, out)
        return source.location
    target = os.path.join(cache_dir, source.name)
    if os.path.exists(target):
        err.write(f"using {target} from an earlier run\n")
    else:
        if source.size is not None:
            check_free_space(cache_dir, source.size - file_size(target + ".part"), f"downloading {source.name}")
        err.write(f"downloading {source.location}\n")
        download(source.location, target, source.size, retries, timeout, err)
    verify(target, source, out)
    return target


def unpack_source(source: Source, path: str, into: str, budget: Budget) -> None:
    """unpack(), deleting a download that turns out unreadable so the next run fetches it afresh
    instead of failing on the cached copy again."""
    try:
        unpack(path, into, budget)
    except BadArchiveError as exc:
        raise _reject(source, path, str(exc), "the downloaded file was deleted: run again to fetch it afresh, "
                      "or pass a copy with --from", "check the file given to --from", BadArchiveError) from exc
