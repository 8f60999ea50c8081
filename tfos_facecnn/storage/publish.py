"""Publishing a finished output folder so that a reader never takes a partial one for complete.

Locally and on HDFS the staging folder is renamed into place (an atomic directory rename). Object
stores have no directory rename: the staging prefix is copied into place server-side, with the file
that marks completion (`_SUCCESS`, a prepared set's manifest) removed first and copied last, as
Hadoop's output committers do. A crash at any point leaves the target without its marker.
"""

from __future__ import annotations

import os

from . import exists, filesystem, is_local, local_path, remove_tree, require, translated


def publish_tree(staging: str, target: str, last: str, run_id: str) -> None:
    """Makes the complete folder `staging` (whose file `last` marks it complete) the new `target`;
    an older `target` is replaced only once the new one is whole."""
    if is_local(target) or require(target).directories:
        _publish_by_rename(staging, target, run_id)
    else:
        _publish_by_copy(staging, target, last)


def _rename(src: str, dst: str) -> None:
    if is_local(src):
        os.replace(local_path(src), local_path(dst))
        return
    fs, src_key = filesystem(src)
    _, dst_key = filesystem(dst)
    with translated(src, f"rename to {dst}"):
        fs.mv(src_key, dst_key, recursive=True)


def _publish_by_rename(staging: str, target: str, run_id: str) -> None:
    retired = f"{target.rstrip('/')}.old-{run_id}"
    had_old = exists(target)
    if had_old:
        _rename(target, retired)
    _rename(staging, target)
    if had_old:
        remove_tree(retired)


def _publish_by_copy(staging: str, target: str, last: str) -> None:
    fs, staging_key = filesystem(staging)
    _, target_key = filesystem(target)
    staging_key, target_key = staging_key.rstrip("/"), target_key.rstrip("/")
    with translated(target, "publish"):
        if fs.exists(f"{target_key}/{last}"):
            fs.rm_file(f"{target_key}/{last}")  # first: the old output no longer looks complete
        if fs.exists(target_key):
            fs.rm(target_key, recursive=True)
        files = sorted(fs.find(staging_key))
        marker = f"{staging_key}/{last}"
        if marker not in files:
            raise FileNotFoundError(f"{staging} holds no {last}: it is not a finished output")
        body = [path for path in files if path != marker]
        if body:
            fs.copy(body, [target_key + path[len(staging_key):] for path in body])
        fs.copy(marker, f"{target_key}/{last}")  # last: now the output is complete
        fs.rm(staging_key, recursive=True)
