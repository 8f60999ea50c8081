"""One training run per MODEL_DIR and per EXPORT_DIR: a lock file that names its holder.

The lock is a small JSON file: the holder's host, pid, process start time (psutil's create_time, which
tells a live process from a recycled pid), a readable start time, the command and a random token.
`MODEL_DIR/run.lock` guards a model dir; `EXPORT_DIR.lock`, beside the export dir (which a finished
export replaces as a whole), guards an export dir and its `.staging-*` folders.

- **Taking it** is an exclusive create. Locally (and on NFS) a complete temporary file is hard-linked to
  the lock's name: the link fails when the lock exists and the lock never appears half written. On
  s3:// it is a conditional PUT (If-None-Match: *). Other stores (gs://, abfs://, hdfs://) check, write
  and read the lock back: best effort, two runs started within the same request time can both pass.
- **A held lock refuses the run** with one line naming the holder and the lock file (RunLockedError, a
  ConfigError: exit 2, nothing started).
- **Taken over only when the holder is provably gone**: it ran on this host and its pid is not running,
  or runs a process started at another time (a recycled pid). A holder on another host cannot be
  checked from here, so the run is refused and told to delete the lock file if that run is gone;
  there is no takeover flag (deleting the file is the same decision, made where it is visible).
  Takeover moves the stale file aside and checks it is still the one judged stale, so two runs taking
  over at once cannot both win (locally; on object stores a narrow race remains, as above).
- **Released** (deleted, only while it is still ours) when the run ends, fails or is interrupted
  (Ctrl-C unwinds through `with`). A driver killed with SIGKILL leaves its lock, which the next run
  on the same host takes over, saying so.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from . import storage
from .config import ConfigError

logger = logging.getLogger(__name__)
LOCK_FILE = "run.lock"  # in MODEL_DIR
EXPORT_LOCK_SUFFIX = ".lock"  # beside EXPORT_DIR
SAME_START_S = 0.05  # psutil's create_time is exact to a clock tick (10 ms) for one process
ATTEMPTS = 5  # create / judge / take over rounds; each round follows a change another run made
NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV)  # file systems without hard links


class RunLockedError(ConfigError):
    """Another run holds the lock (or may: one on another host, which cannot be checked from here)."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    process_start: float  # psutil create_time of the holder's process
    started_at: str  # the same instant, readable (UTC)
    token: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started_at}"


@dataclass(frozen=True)
class LockSpec:
    path: str  # the lock file
    folder: str  # what it guards
    option: str  # the option that named the folder, for messages


def model_dir_lock(model_dir: str) -> LockSpec:
    return LockSpec(storage.join(model_dir, LOCK_FILE), model_dir, "--model-dir")


def export_dir_lock(export_dir: str) -> LockSpec:
    return LockSpec(export_dir.rstrip("/") + EXPORT_LOCK_SUFFIX, export_dir, "--export-dir")


def this_process() -> Holder:
    import psutil

    start = psutil.Process().create_time()
    return Holder(socket.gethostname(), os.getpid(), start,
                  time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start)), uuid.uuid4().hex,
                  " ".join(sys.argv)[:300])


def read_holder(path: str) -> Holder | None:
    """The lock's holder; None when there is no lock; ConfigError naming the file when it is unreadable."""
    try:
        raw = storage.read_bytes(path)
    except FileNotFoundError:
        return None
    try:
        values: Any = json.loads(raw.decode("utf-8"))
        return Holder(str(values["host"]), int(values["pid"]), float(values["process_start"]),
                      str(values["started_at"]), str(values["token"]), str(values.get("command", "")))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"lock file {path} is not readable ({type(e).__name__}: {e}); if no run is using this "
                          f"folder, delete {path} and run again") from e


def holder_alive(holder: Holder) -> bool | None:
    """True: the holder runs; False: provably gone; None: on another host, which cannot be checked here."""
    import psutil

    if holder.host != socket.gethostname():
        return None
    try:
        process = psutil.Process(holder.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - holder.process_start) < SAME_START_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists, but its start time is not ours to read: not provably gone
        return True


def _refusal(spec: LockSpec, holder: Holder, alive: bool | None) -> RunLockedError:
    if alive is None:
        return RunLockedError(
            f"{spec.option} {spec.folder!r} is locked by a run on host {holder.host} (pid {holder.pid}, started "
            f"{holder.started_at}), which cannot be checked from {socket.gethostname()}; if that run is gone, "
            f"delete {spec.path} and run again, else wait for it or choose another {spec.option}")
    return RunLockedError(
        f"{spec.option} {spec.folder!r} is in use by another run ({holder.describe()}; lock {spec.path}); wait "
        f"for it to end or choose another {spec.option}")


def check_free(spec: LockSpec) -> None:
    """Read-only: raises RunLockedError while a live (or uncheckable) run holds the lock. A stale lock
    passes: acquire() takes it over."""
    holder = read_holder(spec.path)
    if holder is not None:
        alive = holder_alive(holder)
        if alive is not False:
            raise _refusal(spec, holder, alive)


class RunLock:
    """A held lock; `release()` (or leaving `with`) deletes it if it is still ours."""

    def __init__(self, path: str, holder: Holder, taken_over: Holder | None) -> None:
        self.path, self.holder, self.taken_over = path, holder, taken_over
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            current = read_holder(self.path)
            if current is not None and current.token == self.holder.token:
                _remove(self.path)
        except (ConfigError, OSError) as e:  # while unwinding another error: say so, do not replace it
            logger.warning("could not release the lock %s (%s); delete it once no run uses its folder",
                           self.path, e)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(spec: LockSpec) -> RunLock:
    """Takes the lock for this process (see the module docstring for the rules)."""
    me = this_process()
    data = (json.dumps(asdict(me), indent=2, sort_keys=True) + "\n").encode()
    taken_over = None
    for _ in range(ATTEMPTS):
        if _create(spec.path, data, me.token):
            return RunLock(spec.path, me, taken_over)
        holder = read_holder(spec.path)
        if holder is None:  # released between our create and our read: create again
            continue
        alive = holder_alive(holder)
        if alive is not False:
            raise _refusal(spec, holder, alive)
        if _remove_if(spec.path, holder):
            taken_over = holder
    raise RunLockedError(f"{spec.option}: could not take the lock {spec.path}: other runs keep taking it; run "
                         "again once they have ended")


def _create(path: str, data: bytes, token: str) -> bool:
    """Creates the lock file holding `data` unless it exists; True when this call created it."""
    if storage.is_local(path):
        return _create_local(storage.local_path(path), data)
    scheme = storage.require(path)
    fs, key = storage.filesystem(path)
    if scheme.names[0] == "s3":
        try:
            with storage.translated(path, "create the lock"):
                fs.pipe_file(key, data, mode="create")  # If-None-Match: * (AWS and SeaweedFS honour it)
        except OSError:  # s3fs reports a failed precondition as EINVAL: the lock exists if it is there now
            if storage.exists(path):
                return False
            raise
    else:
        if storage.exists(path):
            return False
        with storage.translated(path, "write"):
            fs.pipe_file(key, data)
    current = read_holder(path)  # a store without conditional writes: the last writer won
    return current is not None and current.token == token


def _create_local(path: str, data: bytes) -> bool:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)  # atomic, fails if the lock exists, and the lock appears complete
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in NO_LINKS:
            raise
        return _create_exclusive(path, data)
    finally:
        os.remove(tmp)


def _create_exclusive(path: str, data: bytes) -> bool:
    """Without hard links: O_EXCL (a reader can see the file empty for the moment of the write)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _remove_if(path: str, stale: Holder) -> bool:
    """Deletes the lock if it still is `stale`'s; True when this call deleted it."""
    if storage.is_local(path):
        local = storage.local_path(path)
        aside = f"{local}.tmp-stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(local, aside)  # only one run can move a given file aside
        except FileNotFoundError:
            return False  # another run removed it first
        moved = read_holder(aside)
        if moved is not None and moved.token != stale.token:
            # A run took it over and made its own lock between our read and the rename: put it back.
            try:
                os.link(aside, local)
            except FileExistsError:  # a third run made the lock meanwhile: the moved one cannot go back
                logger.warning("lock %s: a run (%s) lost its lock to a concurrent takeover", local, moved.describe())
            os.remove(aside)
            return False
        os.remove(aside)
        return True
    current = read_holder(path)
    if current is None or current.token != stale.token:
        return False
    _remove(path)
    return True


def _remove(path: str) -> None:
    try:
        storage.remove_file(path)
    except FileNotFoundError:
        return  # already gone: what removing it was for


class RunLocks:
    """Several locks taken together (a run's model and export dirs, every variant's for --variant all):
    all or none; released in reverse order."""

    def __init__(self, specs: list[LockSpec]) -> None:
        self.specs = list(dict.fromkeys(specs))  # each lock once
        self.held: list[RunLock] = []

    def check_free(self) -> None:
        for spec in self.specs:
            check_free(spec)

    def acquire(self) -> RunLocks:
        try:
            for spec in self.specs:
                self.held.append(acquire(spec))
        except BaseException:
            self.release()
            raise
        return self

    def taken_over(self) -> list[tuple[str, Holder]]:
        return [(lock.path, lock.taken_over) for lock in self.held if lock.taken_over is not None]

    def release(self) -> None:
        while self.held:
            self.held.pop().release()

    def __enter__(self) -> RunLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
