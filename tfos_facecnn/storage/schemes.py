"""The storage schemes the project reads and writes, one entry each: which fsspec backend serves it,
which install extra brings that backend, which environment variables every node needs, and what to
check when it fails. Adding a scheme is one more entry here. Imports no backend (pure data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

LOCAL_SCHEMES = ("", "file")


@dataclass(frozen=True)
class Scheme:
    names: tuple[str, ...]  # URI schemes served (the first is the key of its `storage:` config section)
    protocol: str  # the fsspec protocol
    extra: str  # pip install 'tfos-facecnn[EXTRA]'
    module: str  # the package that implements it; importing it proves the extra is installed
    env: tuple[str, ...]  # variables a node may need; forwarded to executors with spark.executorEnv.*
    directories: bool  # real directories (HDFS) or key prefixes that exist only through their objects
    hint: str  # what to check when a request fails
    defaults: Mapping[str, Any] = field(default_factory=dict)  # fsspec options unless `storage:` sets them


AWS_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE", "AWS_EC2_METADATA_DISABLED",
)
AZURE_ENV = (
    "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID",
)
HADOOP_ENV = ("HADOOP_CONF_DIR", "HADOOP_HOME", "HADOOP_HDFS_HOME", "ARROW_LIBHDFS_DIR", "CLASSPATH", "JAVA_HOME")

SCHEMES: tuple[Scheme, ...] = (
    Scheme(
        ("s3", "s3a"), "s3", "s3", "s3fs", AWS_ENV, directories=False,
        hint="check AWS_ENDPOINT_URL (S3-compatible stores), the credentials (AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY or ~/.aws) and the bucket name",
        # botocore's defaults retry a dead endpoint for minutes (60 s connect timeout, legacy retries):
        # 5 s per connection attempt and 3 attempts make an unreachable store an error within ~20 s.
        # No listing cache: the driver and the nodes write into the same prefixes from different
        # processes, and s3fs would answer exists() from a listing taken before the other's write.
        defaults={"config_kwargs": {"connect_timeout": 5, "read_timeout": 60,
                                    "retries": {"max_attempts": 3, "mode": "standard"}},
                  "use_listings_cache": False},
    ),
    Scheme(
        ("gs", "gcs"), "gcs", "gcs", "gcsfs", ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"),
        directories=False,
        hint="check GOOGLE_APPLICATION_CREDENTIALS (or the node's service account) and the bucket name",
    ),
    Scheme(
        ("abfs", "abfss", "az"), "abfs", "azure", "adlfs", AZURE_ENV, directories=False,
        hint="check AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY (or a connection string, SAS "
        "token or service principal) and the container name",
    ),
    Scheme(
        ("hdfs", "viewfs"), "hdfs", "hdfs", "pyarrow", HADOOP_ENV, directories=True,
        hint="check that libhdfs.so is found (ARROW_LIBHDFS_DIR or HADOOP_HOME/lib/native), that "
        "CLASSPATH=$(hadoop classpath --glob) and JAVA_HOME are set on every node, and HADOOP_CONF_DIR",
    ),
)
BY_NAME: dict[str, Scheme] = {name: scheme for scheme in SCHEMES for name in scheme.names}
CONFIG_SECTIONS = tuple(scheme.names[0] for scheme in SCHEMES)  # the keys of the `storage:` config section


class UnknownSchemeError(ValueError):
    """A URI whose scheme no entry serves."""


def scheme_of(uri: str) -> str:
    return urlparse(uri).scheme.lower()


def is_local(path: str) -> bool:
    return scheme_of(path) in LOCAL_SCHEMES or (len(path) > 1 and path[1] == ":")


def scheme_for(uri: str) -> Scheme:
    name = scheme_of(uri)
    if name not in BY_NAME:
        known = ", ".join(f"{n}://" for n in BY_NAME)
        raise UnknownSchemeError(f"{uri!r}: storage scheme '{name}://' is not supported; use a local path, file://, "
                                 f"or one of {known}")
    return BY_NAME[name]
