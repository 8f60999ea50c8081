"""Checks on the driver, before Spark starts, that each storage URI of a job can be used: the backend
is installed, the endpoint answers, the credentials work, the bucket exists, outputs can be written.
Each failure is one line naming the option, the URI and what to check (bounded by the backends'
timeouts: an unreachable endpoint fails within ~20 s)."""

from __future__ import annotations

import uuid

from ..config import ConfigError
from . import StorageError, filesystem, is_local, require, translated

PROBE_PREFIX = ".tfos-facecnn-write-probe-"  # written and deleted again by check_writable


def _check_container(uri: str, option: str) -> None:
    """Object stores: the bucket (container) must exist; a missing one is named, never created."""
    scheme = require(uri)
    if scheme.directories:
        return
    fs, key = filesystem(uri)
    bucket = key.split("/", 1)[0]
    try:
        with translated(uri, "reach the bucket of"):
            fs.info(bucket)  # raises for bad credentials and dead endpoints, where exists() says False
        found = True
    except FileNotFoundError:
        found = False
    if not found:
        raise ConfigError(f"{option} {uri!r}: bucket {bucket!r} does not exist (or these credentials cannot see "
                          f"it); create it or fix the URI; {scheme.hint}")


def check_readable(uri: str, option: str) -> None:
    if is_local(uri):
        return
    try:
        _check_container(uri, option)
        fs, key = filesystem(uri)
        with translated(uri, "read"):
            found = fs.exists(key)
    except StorageError as e:
        raise ConfigError(f"{option}: {e}") from e
    if not found:
        raise ConfigError(f"{option} {uri!r} does not exist; check the URI")


def check_writable(uri: str, option: str) -> None:
    """Writes and deletes a small probe object beside uri: denied writes fail here, not after training."""
    if is_local(uri):
        return
    try:
        _check_container(uri, option)
        fs, key = filesystem(uri)
        with translated(uri, "write under"):
            if fs.isfile(key):
                raise ConfigError(f"{option} {uri!r} is a file, not a folder; choose a folder URI")
            # Beside the target, not in it: some stores (SeaweedFS, HDFS) keep the folder a deleted
            # probe lived in, and a job would then find its output "already exists".
            parent = key.rstrip("/").rsplit("/", 1)[0]
            probe = f"{parent}/{PROBE_PREFIX}{uuid.uuid4().hex[:8]}"
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
    except StorageError as e:
        raise ConfigError(f"{option}: {e}") from e


def prepare_storage(options, read: dict[str, str], write: dict[str, str]) -> dict[str, str]:
    """The driver's storage set-up for a job: applies the `storage:` options, checks every input URI
    (option -> URI) can be read and every output URI written, and returns the credential and endpoint
    variables set here that the executors need too (for spark.executorEnv.*)."""
    from . import configure, forwarded_env

    configure(options)
    for option, uri in read.items():
        check_readable(uri, option)
    for option, uri in write.items():
        check_writable(uri, option)
    return forwarded_env([*read.values(), *write.values()])
