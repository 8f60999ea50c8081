"""The run lock (run_lock.py): one run per model dir, the holder named, takeover only when it is provably gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO
from tfos_facecnn.config import ConfigError
from tfos_facecnn.run_lock import (
    LOCK_FILE,
    RunLockedError,
    RunLocks,
    acquire,
    check_free,
    export_dir_lock,
    model_dir_lock,
    read_holder,
    this_process,
)

pytestmark = pytest.mark.timeout(120)


def write_lock(path: Path, **changes) -> None:
    holder = replace(this_process(), **changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(holder)))


def finished_pid() -> int:
    """The pid of a process that has ended (and been reaped): provably gone."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_acquire_is_refused_while_the_holder_lives_and_names_it(tmp_path: Path):
    spec = model_dir_lock(str(tmp_path / "model"))
    with acquire(spec) as lock:
        holder = read_holder(spec.path)
        assert holder == lock.holder and holder.pid == os.getpid() and holder.host == socket.gethostname()
        assert abs(holder.process_start - psutil.Process().create_time()) < 0.05 and "UTC" in holder.started_at
        for attempt in (acquire, check_free):
            with pytest.raises(RunLockedError, match=rf"--model-dir '.*model' is in use by another run \(pid "
                               rf"{os.getpid()} on {socket.gethostname()}, started .*; lock .*{LOCK_FILE}\)"):
                attempt(spec)
    assert not Path(spec.path).exists()  # released on leaving the block
    acquire(spec).release()  # and free again


def test_a_lock_held_by_another_live_process_is_refused(tmp_path: Path):
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        spec = model_dir_lock(str(tmp_path))
        write_lock(Path(spec.path), pid=child.pid, process_start=psutil.Process(child.pid).create_time())
        with pytest.raises(RunLockedError, match=f"pid {child.pid} on"):
            acquire(spec)
    finally:
        child.communicate(b"")
    assert Path(spec.path).exists()  # a refused run leaves the holder's lock alone


def test_a_dead_holder_on_this_host_is_taken_over(tmp_path: Path):
    spec = model_dir_lock(str(tmp_path))
    pid = finished_pid()
    write_lock(Path(spec.path), pid=pid, token="stale")
    check_free(spec)  # a stale lock does not stop the read-only check
    with acquire(spec) as lock:
        assert lock.taken_over is not None and lock.taken_over.pid == pid
        assert read_holder(spec.path).token == lock.holder.token
    assert sorted(os.listdir(tmp_path)) == []  # no temporary or moved-aside file is left


def test_a_recycled_pid_is_not_taken_for_the_holder(tmp_path: Path):
    """The holder's pid runs, but a process started at another time: the holder is gone."""
    spec = model_dir_lock(str(tmp_path))
    write_lock(Path(spec.path), pid=os.getpid(), process_start=psutil.Process().create_time() - 3600, token="old")
    with acquire(spec) as lock:
        assert lock.taken_over.token == "old"


def test_a_holder_on_another_host_is_refused_with_how_to_go_on(tmp_path: Path):
    spec = export_dir_lock(str(tmp_path / "export"))
    write_lock(Path(spec.path), host="elsewhere.example", pid=finished_pid())
    message = rf"--export-dir '.*export' is locked by a run on host elsewhere.example .*if that run is gone, " \
              rf"delete {spec.path} and run again"
    for attempt in (acquire, check_free):
        with pytest.raises(RunLockedError, match=message):
            attempt(spec)
    assert spec.path == str(tmp_path / "export.lock")  # beside the export dir, which a publish replaces


@pytest.mark.parametrize("content", ["", "{not json", '{"host": "h"}', "[1, 2]"])
def test_an_unreadable_lock_is_named_with_the_fix(tmp_path: Path, content: str):
    spec = model_dir_lock(str(tmp_path))
    Path(spec.path).write_text(content)
    with pytest.raises(ConfigError, match=rf"lock file {spec.path} is not readable .*delete {spec.path} and run again"):
        acquire(spec)


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path: Path):
    spec = model_dir_lock(str(tmp_path))
    lock = acquire(spec)
    write_lock(Path(spec.path), token="someone-else")
    lock.release()
    assert read_holder(spec.path).token == "someone-else"


def test_locks_are_taken_all_or_none(tmp_path: Path):
    first, second = model_dir_lock(str(tmp_path / "a")), model_dir_lock(str(tmp_path / "b"))
    with acquire(second), pytest.raises(RunLockedError):
        RunLocks([first, second]).acquire()
    assert not Path(first.path).exists()  # the one it had taken is released again
    with RunLocks([first, second, first]).acquire() as locks:
        assert len(locks.held) == 2
    assert not Path(first.path).exists() and not Path(second.path).exists()


def test_ctrl_c_releases_the_lock(tmp_path: Path):
    spec = model_dir_lock(str(tmp_path))
    script = ("import sys\nfrom tfos_facecnn.run_lock import acquire, model_dir_lock\n"
              f"with acquire(model_dir_lock({str(tmp_path)!r})):\n"
              "    print('held', flush=True)\n    sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert read_holder(spec.path).pid == child.pid
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert "KeyboardInterrupt" in err
    assert not Path(spec.path).exists()


def test_on_s3_the_lock_is_an_object_created_only_once(s3):
    spec = model_dir_lock(f"{s3.url}/model")
    with acquire(spec) as lock:
        assert s3.keys("model") == [LOCK_FILE]
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            acquire(spec)
        assert read_holder(spec.path).token == lock.holder.token  # the refused create did not overwrite it
    assert s3.keys("model") == []
    stale = replace(this_process(), pid=finished_pid(), token="stale")
    s3.fs.pipe_file(f"{s3.url[5:]}/model/{LOCK_FILE}", json.dumps(asdict(stale)).encode())
    with acquire(spec) as lock:
        assert lock.taken_over.token == "stale"


def test_sigterm_unwinds_the_driver_like_ctrl_c_so_its_locks_go(tmp_path: Path):
    from tfos_facecnn.driver import Terminated, _signals_unwind

    spec = model_dir_lock(str(tmp_path))
    with pytest.raises(Terminated):
        with acquire(spec), _signals_unwind():
            os.kill(os.getpid(), signal.SIGTERM)
    assert not Path(spec.path).exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the default is back afterwards
