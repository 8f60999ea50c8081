"""Every file the project reads or writes: local paths (plain os calls) and storage URIs (fsspec).

Local paths and file:// use the os module, so the driver and Spark feeders stay light. s3://, gs://,
abfs:// and hdfs:// go through fsspec backends (schemes.py says which and which extra installs it).
Writers that only take local paths (Keras, TFRecordWriter, TensorBoard) write into a local folder that
is uploaded (mirror.py); outputs are published with a marker written last (publish.py).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from .remote import StorageError, configure, filesystem, forwarded_env, require, translated
from .schemes import LOCAL_SCHEMES, is_local

__all__ = [
    "LOCAL_SCHEMES", "StorageError", "absolute", "configure", "download_file", "exists", "forwarded_env",
    "glob", "is_local", "isdir", "join", "listdir", "local_copy", "local_path", "makedirs", "read_bytes", "remove_file",
    "remove_tree", "require", "upload_file", "walk_files", "write_bytes_atomic", "writing",
]


def local_path(path: str) -> str:
    """'file:///a/b' -> '/a/b'; plain paths unchanged."""
    return urlparse(path).path if path.startswith("file:") else path


def absolute(path: str) -> str:
    """Local paths made absolute on the driver: executors run in other working directories."""
    return os.path.abspath(local_path(path)) if is_local(path) else path


def join(base: str, *parts: str) -> str:
    if is_local(base):
        return os.path.join(local_path(base), *parts)
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(local_path(path))
    fs, key = filesystem(path)
    with translated(path, "look up"):
        return fs.exists(key)


def isdir(path: str) -> bool:
    if is_local(path):
        return os.path.isdir(local_path(path))
    fs, key = filesystem(path)
    with translated(path, "look up"):
        return fs.isdir(key)


def listdir(path: str) -> list[str]:
    if is_local(path):
        return sorted(os.listdir(local_path(path)))
    fs, key = filesystem(path)
    with translated(path, "list"):
        return sorted(name.rstrip("/").rsplit("/", 1)[-1] for name in fs.ls(key, detail=False))


def walk_files(root: str) -> Iterator[str]:
    """Yields every file below root as a path relative to root, '/'-separated, in sorted order.

    Symlinked directories are not followed, so a symlink loop cannot make the walk endless.
    """
    if is_local(root):
        base = local_path(root)
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames.sort()
            rel = os.path.relpath(dirpath, base)
            for name in sorted(filenames):
                yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
        return
    fs, key = filesystem(root)
    prefix = key.rstrip("/") + "/"
    with translated(root, "list"):
        found = fs.find(key)  # one recursive listing: on object stores a single paginated request
    yield from sorted(path[len(prefix):] for path in found if path.startswith(prefix))


def glob(pattern: str) -> list[str]:
    if is_local(pattern):
        import glob as local_glob

        return sorted(local_glob.glob(local_path(pattern)))
    fs, key = filesystem(pattern)
    with translated(pattern, "list"):
        return sorted(fs.unstrip_protocol(path) for path in fs.glob(key))


def read_bytes(path: str) -> bytes:
    if is_local(path):
        with open(local_path(path), "rb") as handle:
            return handle.read()
    fs, key = filesystem(path)
    with translated(path, "read"):
        return fs.cat_file(key)


def makedirs(path: str) -> None:
    """Creates a folder; on object stores a no-op (a prefix exists through its objects, and creating
    a bucket by accident from a mistyped URI is worse than an error on the first write)."""
    if is_local(path):
        os.makedirs(local_path(path), exist_ok=True)
        return
    scheme = require(path)
    if scheme.directories:
        fs, key = filesystem(path)
        with translated(path, "create the folder"):
            fs.makedirs(key, exist_ok=True)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Readers never see half a file: locally a temporary name and a rename; on storage one PUT
    (objects appear whole) or, on HDFS, a temporary name and a rename."""
    if is_local(path):
        tmp = f"{local_path(path)}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, local_path(path))
        return
    scheme = require(path)
    fs, key = filesystem(path)
    with translated(path, "write"):
        if scheme.directories:
            tmp = f"{key}.tmp-{uuid.uuid4().hex[:8]}"
            fs.pipe_file(tmp, data)
            fs.mv(tmp, key)
        else:
            fs.pipe_file(key, data)


def upload_file(local: str, path: str) -> None:
    """A finished local file -> path (local: an atomic move)."""
    if is_local(path):
        os.replace(local, local_path(path))
        return
    fs, key = filesystem(path)
    with translated(path, "upload to"):
        fs.put_file(local, key)


def download_file(path: str, local: str) -> None:
    """path -> a local file, written under a temporary name first (never half a file)."""
    tmp = f"{local}.part-{uuid.uuid4().hex[:8]}"
    if is_local(path):
        shutil.copyfile(local_path(path), tmp)
    else:
        fs, key = filesystem(path)
        with translated(path, "download"):
            fs.get_file(key, tmp)
    os.replace(tmp, local)


@contextmanager
def writing(path: str, scratch: str | None = None) -> Iterator[str]:
    """A local file name for writers that only take local paths (TFRecordWriter, savefig, Keras): it
    becomes `path` only when the block succeeds (renamed locally, uploaded otherwise)."""
    import tempfile

    if is_local(path):
        tmp = f"{local_path(path)}.tmp-{uuid.uuid4().hex[:8]}"
    else:
        handle, tmp = tempfile.mkstemp(prefix="facecnn-upload-", dir=scratch)
        os.close(handle)
    try:
        yield tmp
        upload_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def local_copy(path: str, scratch: str | None = None) -> Iterator[str]:
    """A local file with path's content, for readers that only open local files (TFRecordDataset):
    the file itself when it is local, else a downloaded copy deleted after the block."""
    import tempfile

    if is_local(path):
        yield local_path(path)
        return
    handle, tmp = tempfile.mkstemp(prefix="facecnn-download-", dir=scratch)
    os.close(handle)
    try:
        download_file(path, tmp)
        yield tmp
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_tree(path: str) -> None:
    if is_local(path):
        shutil.rmtree(local_path(path), ignore_errors=False)
        return
    fs, key = filesystem(path)
    with translated(path, "delete"):
        fs.rm(key, recursive=True)


def remove_file(path: str) -> None:
    if is_local(path):
        os.remove(local_path(path))
        return
    fs, key = filesystem(path)
    with translated(path, "delete"):
        fs.rm_file(key)
