"""A TF node's local copies of its prepared shards on storage, fetched in the background.

TF 2.21's TFRecordDataset cannot open s3://, hdfs:// or abfs://. A node's reader asks `local(path)`
for each shard it opens: the cache starts downloading every shard of the node at once (a few in
parallel, in the order given: train first) when the node starts, so the first epoch waits only for
the shards it opens before they arrive, and every later epoch reads local disk. The node's shards
must fit in `limit_mb` and in the free space of Spark's local dir; local shards are read in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from . import download_file, filesystem, is_local, local_path, translated
from .mirror import scratch_root

PARALLEL_DOWNLOADS = 4  # enough to fill a node's link from an object store; each is one GET stream
FREE_DISK_RESERVE_MB = 512  # left free on the local dir for Spark's own spills and the node's logs


class ShardCache:
    def __init__(self, paths: Sequence[str], limit_mb: int, label: str = "shards") -> None:
        self._remote = list(dict.fromkeys(p for p in paths if not is_local(p)))
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()
        self.dir: str | None = None
        self.bytes = 0
        if not self._remote:
            return
        self.bytes = self._check_room(limit_mb)
        self.dir = tempfile.mkdtemp(prefix=f"facecnn-{label}-", dir=scratch_root())
        self._pool = ThreadPoolExecutor(PARALLEL_DOWNLOADS, thread_name_prefix="facecnn-shard-download")
        for index, path in enumerate(self._remote):
            target = os.path.join(self.dir, f"{index:06d}-{path.rstrip('/').rsplit('/', 1)[-1]}")
            self._futures[path] = self._pool.submit(self._fetch, path, target)

    def _check_room(self, limit_mb: int) -> int:
        fs, _ = filesystem(self._remote[0])
        with translated(self._remote[0], "look up the shards of"):
            sizes = [int(fs.info(filesystem(path)[1])["size"]) for path in self._remote]
        need = sum(sizes)
        if limit_mb and need > limit_mb * 2**20:
            raise RuntimeError(
                f"this node's {len(sizes)} shards take {need / 2**20:.0f} MB, over shard_cache_mb {limit_mb}: "
                "raise shard_cache_mb in the config, or train on more nodes (each caches only its share)"
            )
        free = shutil.disk_usage(scratch_root()).free
        if need > free - FREE_DISK_RESERVE_MB * 2**20:
            raise RuntimeError(
                f"this node's shards take {need / 2**20:.0f} MB but {scratch_root()} has {free / 2**20:.0f} MB "
                "free: give Spark a larger local dir (spark.local.dir / SPARK_LOCAL_DIRS) or train on more nodes"
            )
        return need

    @staticmethod
    def _fetch(path: str, target: str) -> str:
        download_file(path, target)
        return target

    def local(self, path: str) -> str:
        """The local file of a shard; waits for its download (and re-raises its failure)."""
        if is_local(path):
            return local_path(path)
        future = self._futures.get(path)
        if future is None:
            raise KeyError(f"{path} is not one of this node's cached shards")
        return future.result()

    def close(self) -> None:
        if self.dir is None:
            return
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.dir, ignore_errors=True)  # scratch copies only
        self.dir = None
