"""Safe unpacking of tar and zip archives: every member is checked before a byte is written (no absolute or
'..' paths, no links, devices or fifos, no encrypted zip entries), the member count and unpacked bytes are
capped over a whole run (tar/zip bombs), and files are written here rather than by tarfile/zipfile's own
extract, so no link or mode trick gets through."""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from .disk import CHUNK, check_free_space, format_bytes, write
from .errors import BadArchiveError, DownloadError

_LINKS_REFUSED = "links are refused: a link can point outside the destination"
# A damaged .tar.gz raises zlib.error, a truncated one EOFError.
_DAMAGED = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError)


class Budget:
    """Caps the member count and the bytes written, over all archives of one run (tar/zip bombs)."""

    def __init__(self, max_bytes: int, max_members: int) -> None:
        self.max_bytes, self.max_members = max_bytes, max_members
        self.bytes = self.members = 0

    def add(self, archive: str, member: str, size: int) -> None:
        self.members += 1
        self.bytes += size
        if self.members > self.max_members:
            raise DownloadError(f"{archive}: more than {self.max_members} members (at {member!r}); "
                                "refusing to unpack; raise --max-members if the archive is trusted")
        if self.bytes > self.max_bytes:
            raise DownloadError(f"{archive}: unpacking would write more than {format_bytes(self.max_bytes)} "
                                f"(--max-bytes {self.max_bytes}, reached at member {member!r}); free space and "
                                "raise --max-bytes if the archive is trusted")


@dataclass(frozen=True)
class _Entry:
    """One checked member, the same for tar and zip: where it goes and how to read it."""

    member: str  # its name in the archive, for messages
    rel: str  # clean relative path under the unpack folder
    is_dir: bool
    size: int  # bytes to write (0 for a folder): the budget counted exactly this
    open: Callable[[], IO[bytes] | None]


def _refuse(archive: str, member: str, why: str) -> DownloadError:
    return DownloadError(f"{archive}: refused member {member!r}: {why}; nothing was unpacked into --dest")


def safe_member_path(archive: str, name: str) -> str:
    """A member name as a clean relative path ('' for the archive root), or a refusal naming it."""
    if "\x00" in name:
        raise _refuse(archive, name, "NUL byte in its name")
    norm = name.replace("\\", "/")  # a Windows-made archive may use backslashes: check those as separators too
    if norm.startswith("/") or re.match(r"[A-Za-z]:", norm):
        raise _refuse(archive, name, "absolute path")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(archive, name, "'..' in its path would write outside the destination")
    return "/".join(parts)


def _target(root: str, rel: str) -> str:
    # Second line of defence after safe_member_path: the resolved path must stay under root.
    path = os.path.realpath(os.path.join(root, rel))
    if not path.startswith(os.path.realpath(root) + os.sep):
        raise DownloadError(f"member {rel!r} resolves outside the unpack folder; refusing it")
    return path


def archive_kind(path: str) -> str:
    """'tar' or 'zip', by content: a Kaggle download may be called archive.zip, a mirror may drop suffixes."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[257:262] == b"ustar":
        return "tar"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or tarfile.is_tarfile(path):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    hint = " (it looks like an HTML page: the URL served a web page, not the file)" if b"<" in head[:64] else ""
    raise BadArchiveError(f"{os.path.basename(path)} is neither a tar nor a zip archive{hint}; "
                          "pass the face2comics .tar or .zip")


def _plan_tar(archive: str, tf: tarfile.TarFile, budget: Budget) -> list[_Entry]:
    plan = []
    for member in tf:  # iterating (not getmembers) lets the member cap stop a header bomb early
        rel = safe_member_path(archive, member.name)
        if member.issym() or member.islnk():
            raise _refuse(archive, member.name, f"link to {member.linkname!r} ({_LINKS_REFUSED})")
        if member.ischr() or member.isblk() or member.isfifo():
            raise _refuse(archive, member.name, "device or fifo")
        if not (member.isreg() or member.isdir()):
            raise _refuse(archive, member.name, f"unsupported member type {member.type!r}")
        if not rel:
            if member.isdir():
                continue  # './' itself
            raise _refuse(archive, member.name, "empty file name")
        size = member.size if member.isreg() else 0
        budget.add(archive, member.name, size)
        plan.append(_Entry(member.name, rel, member.isdir(), size, lambda m=member: tf.extractfile(m)))
    return plan


def _plan_zip(archive: str, zf: zipfile.ZipFile, budget: Budget) -> list[_Entry]:
    plan = []
    for info in zf.infolist():
        rel = safe_member_path(archive, info.filename)
        mode = info.external_attr >> 16  # Unix mode bits, when a Unix zip wrote them
        if stat.S_ISLNK(mode):
            raise _refuse(archive, info.filename, f"symlink ({_LINKS_REFUSED})")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(archive, info.filename, "device, fifo or socket")
        if info.flag_bits & 0x1:
            raise _refuse(archive, info.filename, "encrypted")
        if not rel:
            continue
        size = 0 if info.is_dir() else info.file_size  # from the central directory; writes are capped to it
        budget.add(archive, info.filename, size)
        plan.append(_Entry(info.filename, rel, info.is_dir(), size, lambda i=info: zf.open(i)))
    return plan


def _copy_member(src: IO[bytes], path: str, size: int) -> None:
    # Writes at most `size` bytes, so a member cannot exceed what the budget counted.
    with open(path, "xb") as out:
        left = size
        while left > 0:
            block = src.read(min(CHUNK, left))
            if not block:
                break
            write(out, block)
            left -= len(block)


def _extract(archive: str, plan: list[_Entry], into: str) -> None:
    check_free_space(into, sum(e.size for e in plan if not e.is_dir), f"unpacking {archive}")
    for entry in plan:
        target = _target(into, entry.rel)
        if entry.is_dir:
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        src = entry.open()
        if src is None:
            raise _refuse(archive, entry.member, "unreadable member")
        with src:
            _copy_member(src, target, entry.size)


def unpack(path: str, into: str, budget: Budget) -> None:
    """Unpacks the tar or zip at path into the new folder `into`, checking every member before writing any."""
    os.makedirs(into)
    kind = archive_kind(path)
    name = os.path.basename(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                _extract(name, _plan_zip(name, zf, budget), into)
        else:
            with tarfile.open(path, "r:*") as tf:
                _extract(name, _plan_tar(name, tf, budget), into)
    except _DAMAGED as exc:
        raise BadArchiveError(f"{name} is damaged ({exc})") from exc
    except FileExistsError as exc:
        raise DownloadError(f"{name} holds {exc.filename!r} twice; refusing an ambiguous archive") from exc
    except OSError as exc:  # e.g. a file and a folder of the same name, or the disk filling up
        raise DownloadError(f"cannot unpack {name} ({exc}); check the archive and the free space") from exc
