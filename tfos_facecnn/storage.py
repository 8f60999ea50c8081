"""File access for local paths and storage URIs (hdfs://, s3://, gs://, file://).

Local paths use the os module (no TensorFlow import on the driver or in Spark feeders); any other
scheme goes through tf.io.gfile, which is what the TF nodes use, so both sides see the same files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

LOCAL_SCHEMES = ("", "file")


def is_local(path: str) -> bool:
    return urlparse(path).scheme in LOCAL_SCHEMES or (len(path) > 1 and path[1] == ":")


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


def _gfile():
    import tensorflow as tf  # only for remote URIs: executors and the driver stay light otherwise

    return tf.io.gfile


def exists(path: str) -> bool:
    return os.path.exists(local_path(path)) if is_local(path) else _gfile().exists(path)


def isdir(path: str) -> bool:
    return os.path.isdir(local_path(path)) if is_local(path) else _gfile().isdir(path)


def listdir(path: str) -> list[str]:
    if is_local(path):
        return sorted(os.listdir(local_path(path)))
    return sorted(name.rstrip("/") for name in _gfile().listdir(path))


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
    gfile = _gfile()
    for dirpath, _dirnames, filenames in gfile.walk(root):
        rel = dirpath[len(root.rstrip("/")):].strip("/")
        for name in sorted(filenames):
            yield name if not rel else f"{rel}/{name}"


def read_bytes(path: str) -> bytes:
    if is_local(path):
        with open(local_path(path), "rb") as handle:
            return handle.read()
    with _gfile().GFile(path, "rb") as handle:
        return handle.read()


def makedirs(path: str) -> None:
    if is_local(path):
        os.makedirs(local_path(path), exist_ok=True)
    else:
        _gfile().makedirs(path)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes under a temporary name beside the target, then renames: readers never see half a file."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    if is_local(path):
        with open(local_path(tmp), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(local_path(tmp), local_path(path))
        return
    gfile = _gfile()
    with gfile.GFile(tmp, "wb") as handle:
        handle.write(data)
    gfile.rename(tmp, path, overwrite=True)


def remove_tree(path: str) -> None:
    if is_local(path):
        import shutil

        shutil.rmtree(local_path(path), ignore_errors=False)
    else:
        _gfile().rmtree(path)


def remove_file(path: str) -> None:
    if is_local(path):
        os.remove(local_path(path))
    else:
        _gfile().remove(path)


def rename(src: str, dst: str) -> None:
    if is_local(src):
        os.replace(local_path(src), local_path(dst))
    else:
        _gfile().rename(src, dst, overwrite=False)
