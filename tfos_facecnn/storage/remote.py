"""fsspec filesystems for storage URIs: options from the `storage:` config section, errors that name the
URI and what to check. TF 2.21's tf.io.gfile implements neither s3:// nor hdfs:// nor abfs://, so
every remote read and write of the project goes through here (fsspec is the ecosystem's layer)."""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .schemes import SCHEMES, Scheme, UnknownSchemeError, scheme_for

_OPTIONS: dict[str, dict[str, Any]] = {}  # config section -> fsspec options, set by configure()
_MADE_UNDER: dict[str, str | None] = {}  # the schemes' variables when the cached filesystems were made
# Errors that mean "this path is not there / not what you think": callers handle them as on local disk.
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)


class StorageError(OSError):
    """A storage request failed for a reason other than a missing path: credentials, endpoint, backend."""


def configure(options: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Sets the fsspec options per scheme (the `storage:` config section); runs on the driver, in every
    executor function and in every TF node, since the options travel as plain values."""
    _OPTIONS.clear()
    for section, values in (options or {}).items():
        _OPTIONS[section] = dict(values)
    _forget_filesystems_made_under_another_environment()


def _forget_filesystems_made_under_another_environment() -> None:
    """fsspec reuses a filesystem made with the same options (its cache key), but s3fs/gcsfs read their
    endpoint and keys from the environment once, when made: after those variables change (a notebook
    pointed at another store, tests with one S3 server each) the next request must get a new filesystem,
    not a client of the last endpoint. Unchanged, the cached ones stay: configure() runs in every task."""
    import fsspec

    environment = {name: os.environ.get(name) for scheme in SCHEMES for name in scheme.env}
    if environment == _MADE_UNDER:
        return
    for backend in set(fsspec.registry.values()):  # only the backends imported so far
        backend.clear_instance_cache()
    _MADE_UNDER.clear()
    _MADE_UNDER.update(environment)


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def require(uri: str) -> Scheme:
    """The URI's scheme, with its backend importable; a one-line error naming the extra otherwise."""
    from ..config import ConfigError

    try:
        scheme = scheme_for(uri)
    except UnknownSchemeError as e:
        raise ConfigError(str(e)) from e
    try:
        importlib.import_module(scheme.module)
    except ImportError as e:
        raise ConfigError(
            f"{uri!r} needs the {scheme.module} package for {scheme.names[0]}://: "
            f"pip install 'tfos-facecnn[{scheme.extra}]' on the driver and every executor"
        ) from e
    return scheme


def options_for(scheme: Scheme) -> dict[str, Any]:
    return _merged(scheme.defaults, _OPTIONS.get(scheme.names[0], {}))


def filesystem(uri: str):
    """(fsspec filesystem, path without the protocol) for a URI; fsspec caches the instances."""
    import fsspec

    scheme = require(uri)
    with translated(uri, "open the filesystem of", scheme):
        return fsspec.core.url_to_fs(uri, **options_for(scheme))


def _libhdfs_message(e: BaseException) -> str | None:
    text = str(e)
    if any(word in text for word in ("libhdfs", "libjvm", "HDFS connection", "JAVA_HOME", "CLASSPATH")):
        return (f"the HDFS client could not be loaded ({_first_line(e)}): install the Hadoop client on every "
                "node, point ARROW_LIBHDFS_DIR at the folder of libhdfs.so (or set HADOOP_HOME), set JAVA_HOME "
                "(libjvm.so) and CLASSPATH=$(hadoop classpath --glob)")
    return None


@contextmanager
def translated(uri: str, action: str, scheme: Scheme | None = None) -> Iterator[None]:
    """Re-raises a backend's failure as one StorageError line naming the URI and what to check; missing
    paths stay FileNotFoundError (callers treat them as on local disk)."""
    try:
        yield
    except PATH_ERRORS:
        raise
    except StorageError:
        raise
    except Exception as e:
        scheme = scheme or scheme_for(uri)
        if isinstance(e, PermissionError):
            reason = f"access denied ({_first_line(e)})"
        elif isinstance(e, TypeError):
            reason = (f"bad option in the storage: {scheme.names[0]}: config section ({_first_line(e)}); "
                      "see the fsspec backend's documentation")
        else:
            reason = _libhdfs_message(e) or f"{type(e).__name__}: {_first_line(e)}"
        raise StorageError(f"could not {action} {uri}: {reason}; {scheme.hint}") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def forwarded_env(uris: list[str]) -> dict[str, str]:
    """The variables of the schemes in use that are set on the driver: what every executor needs too."""
    wanted: list[str] = []
    for uri in uris:
        try:
            wanted += scheme_for(uri).env
        except UnknownSchemeError:
            continue
    return {name: os.environ[name] for name in dict.fromkeys(wanted) if os.environ.get(name)}
