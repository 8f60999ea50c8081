"""Local folders standing in for storage folders, for writers that only take local paths.

Keras' BackupAndRestore and model.save, TensorBoard's event writer and TFRecordWriter go through
tf.io.gfile, which has no s3://, hdfs:// or abfs:// on TF 2.21. They write into a local folder
under Spark's local dirs; `push()` uploads what changed (and deletes what was deleted), `pull()`
brings the storage folder's files down first. For a local path the folder is the path itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from . import filesystem, is_local, local_path, translated


def scratch_root() -> str:
    """Spark's local dirs on this executor (standalone: SPARK_EXECUTOR_DIRS, YARN: LOCAL_DIRS), else the
    temporary folder: the disk Spark itself spills to, not the home folder."""
    for name in ("SPARK_EXECUTOR_DIRS", "SPARK_LOCAL_DIRS", "LOCAL_DIRS"):
        for candidate in os.environ.get(name, "").replace(",", os.pathsep).split(os.pathsep):
            if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK):
                return candidate
    return tempfile.gettempdir()


class LocalMirror:
    def __init__(self, target: str, label: str = "mirror") -> None:
        self.target = target
        self.remote = not is_local(target)
        if self.remote:
            self.local = tempfile.mkdtemp(prefix=f"facecnn-{label}-", dir=scratch_root())
        else:
            self.local = local_path(target)
        self._pushed: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) last uploaded

    def _local_files(self) -> dict[str, tuple[int, int]]:
        found = {}
        for dirpath, _dirs, files in os.walk(self.local):
            for name in files:
                full = os.path.join(dirpath, name)
                stat = os.stat(full)
                found[os.path.relpath(full, self.local).replace(os.sep, "/")] = (stat.st_size, stat.st_mtime_ns)
        return found

    def pull(self) -> int:
        """Downloads the storage folder's files (a resumed run's state); returns how many."""
        if not self.remote:
            return 0
        fs, key = filesystem(self.target)
        key = key.rstrip("/")
        with translated(self.target, "download"):
            if not fs.exists(key):
                return 0
            remote_files = sorted(fs.find(key))
            local_files = [os.path.join(self.local, *path[len(key) + 1:].split("/")) for path in remote_files]
            for path in local_files:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            if remote_files:
                fs.get(remote_files, local_files)
        self._pushed = self._local_files()
        return len(remote_files)

    def push(self) -> int:
        """Uploads new and changed files, deletes on storage those deleted here; returns files uploaded."""
        if not self.remote:
            return 0
        now = self._local_files()
        changed = sorted(rel for rel, stamp in now.items() if self._pushed.get(rel) != stamp)
        gone = sorted(set(self._pushed) - set(now))
        fs, key = filesystem(self.target)
        key = key.rstrip("/")
        with translated(self.target, "upload to"):
            if changed:
                fs.put([os.path.join(self.local, *rel.split("/")) for rel in changed],
                       [f"{key}/{rel}" for rel in changed])
            if gone:
                fs.rm([f"{key}/{rel}" for rel in gone])
        self._pushed = now
        return len(changed)

    def cleanup(self) -> None:
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)  # scratch only: the storage copy is what counts
