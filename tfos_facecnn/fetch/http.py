"""Resumable HTTP(S) download of one file: through a .part file, continued with Range requests after a
dropped connection (in this run, up to --retries times, or in a later run), with every HTTP and network
failure turned into one DownloadError that says what to do next."""

from __future__ import annotations

import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import BinaryIO, TextIO

from .disk import CHUNK, check_free_space, file_size, write
from .errors import DownloadError
from .progress import Progress

DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT_S = 60.0
USER_AGENT = "tfos-facecnn-download/0.1"


class _Interrupted(Exception):
    """The connection broke mid-file: worth another request from where the .part file ends."""


class _Restart(_Interrupted):
    """The .part file does not match the server's file: start it again from zero."""


def _range_total(value: str | None) -> int | None:
    """'bytes */1000' (a 416 answer) -> 1000."""
    m = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", value or "")
    return int(m.group(1)) if m else None


def parse_content_range(value: str | None) -> tuple[int, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); total None when the server sends '*'."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        raise DownloadError(f"the server sent an unreadable Content-Range {value!r}; try another mirror with --from")
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _http_error(url: str, exc: urllib.error.HTTPError) -> DownloadError:
    hint = ("the file is not there: check --version, or download it elsewhere and pass it with --from"
            if exc.code in (403, 404, 410) else "try again later, or pass a copy or a mirror with --from")
    return DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}; {hint}")


def _url_error(url: str, exc: urllib.error.URLError | OSError) -> DownloadError:
    host = urllib.parse.urlsplit(url).netloc or url
    reason = getattr(exc, "reason", exc)
    return DownloadError(f"cannot reach {host} ({reason}); check the network or proxy, "
                         "or download the archive elsewhere and pass it with --from FILE")


def _open(url: str, have: int, timeout: float) -> http.client.HTTPResponse | None:
    """Opens the request, resuming at `have`; None when the server says the range is past the end."""
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # asked past the end: the .part file may already be complete
            total = _range_total(exc.headers.get("Content-Range"))
            exc.close()
            if total == have:
                return None
            raise _Restart(f"the server refused to resume at byte {have} (file size {total})") from exc
        raise _http_error(url, exc) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _url_error(url, exc) from exc


def _start_offset(url: str, resp: http.client.HTTPResponse, have: int, err: TextIO) -> tuple[int, int | None]:
    """(offset the body starts at, total file size or None) from a 200 or 206 answer."""
    if resp.status == 206:
        start, total = parse_content_range(resp.headers.get("Content-Range"))
        if start != have:
            raise DownloadError(f"{url} resumed at byte {start} instead of {have}; delete the .part file "
                                "in the download cache and run again")
        return have, total
    if have:
        err.write(f"{url}: the server ignored the resume request (HTTP {resp.status}); restarting from zero\n")
    length = resp.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _transfer(url: str, part: str, expected_size: int | None, timeout: float, err: TextIO) -> None:
    """One request: appends to `part` (or restarts it) until the body ends. _Interrupted on a cut."""
    have = file_size(part)
    resp = _open(url, have, timeout)
    if resp is None:
        return  # 416: the caller compares the .part size with the expected one
    with resp:
        offset, total = _start_offset(url, resp, have, err)
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(f"{url} is {total} bytes, but the release table says {expected_size}; "
                                "the file changed upstream: pass --sha256 of the new file or use --from")
        if total is not None:
            check_free_space(os.path.dirname(part), total - offset, f"downloading {os.path.basename(part)}")
        progress = Progress(os.path.basename(part)[:-5], total, start=offset, stream=err)
        done = offset
        try:
            with open(part, "ab" if offset else "wb") as out:
                done = _copy_body(resp, out, done, progress)
        finally:
            progress.finish()
    if total is not None and done < total:
        raise _Interrupted(f"the connection closed after {done} of {total} bytes")
    if total is not None and done > total:
        raise DownloadError(f"{url} sent {done} bytes, more than the announced {total}; try another mirror")


def _copy_body(resp: http.client.HTTPResponse, out: BinaryIO, done: int, progress: Progress) -> int:
    while True:
        try:
            chunk = resp.read(CHUNK)
        except (http.client.HTTPException, OSError) as exc:  # reads are network only: a cut, not a disk error
            raise _Interrupted(f"{type(exc).__name__}: {exc}") from exc
        if not chunk:
            return done
        write(out, chunk)
        done += len(chunk)
        progress.update(done)


def download(url: str, target: str, expected_size: int | None = None, retries: int = DEFAULT_RETRIES,
             timeout: float = DEFAULT_TIMEOUT_S, err: TextIO | None = None) -> None:
    """Downloads url to target through target.part, resuming with Range after a cut (here, up to `retries`
    times in a row, and in a later run from the .part file left behind)."""
    err = err if err is not None else sys.stderr
    part = target + ".part"
    cuts = 0
    while True:
        try:
            _transfer(url, part, expected_size, timeout, err)
            break
        except _Interrupted as exc:
            if isinstance(exc, _Restart):
                os.remove(part)
            cuts += 1
            if cuts > retries:
                again = "start it afresh" if isinstance(exc, _Restart) else f"resume from {part}"
                raise DownloadError(f"the download of {url} was cut off ({exc}); run the same command again to "
                                    f"{again}") from exc
            err.write(f"{exc}; resuming from byte {file_size(part)} (retry {cuts} of {retries})\n")
    have = file_size(part)
    if expected_size is not None and have != expected_size:
        os.remove(part)
        raise DownloadError(f"{url}: got {have} bytes, expected {expected_size}; the partial file was deleted, "
                            "run again to download it afresh")
    os.replace(part, target)
