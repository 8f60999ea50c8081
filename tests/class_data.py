"""Class-data archives (AppCDS) for the JVMs the tests start: written once, mapped by every later JVM.

A JVM started with -XX:ArchiveClassesAtExit=FILE writes the classes it loaded to FILE when it exits;
one started with -XX:SharedArchiveFile=FILE maps them instead of reading, parsing and verifying them
from Spark's jars again. On a tiny job that took the driver JVM's CPU from 11 s to 7 and an executor's
from 6.8 s to 4.3 (local-cluster[2,1,1024] runs: 37 s instead of 43). The archives are keyed by the JDK
and the Spark release, so another one writes new archives; a JVM that cannot use its archive (missing,
or from another build) loads its classes the usual way, and -Xlog:cds=off keeps that silent.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from tfos_facecnn import sample_data_dir

REPO = Path(__file__).resolve().parents[1]
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # no warning for a missing archive or an unarchivable class
# The run whose classes are archived: one executor (two would both write the executor archive at exit)
# training the embedded sample for one epoch at the smallest size a test uses.
ARCHIVING_MASTER = "local-cluster[1,1,1024]"
ARCHIVING_ARGS = ("--input-mode", "spark", "--epochs", "1", "--image-size", "48", "--batch-size", "8", "--no-report")
ARCHIVING_TIMEOUT_S = 300


def _java() -> Path:
    home = os.environ.get("JAVA_HOME")
    found = Path(home, "bin", "java") if home else shutil.which("java")
    return Path(found).resolve() if found else Path("java")


def _key() -> str:
    """The JDK build (its binary's path and time) and the Spark release the archives were written with."""
    java = _java()
    stamp = java.stat().st_mtime_ns if java.exists() else 0
    return hashlib.sha256(f"{java}|{stamp}|{version('pyspark')}".encode()).hexdigest()[:16]


ARCHIVE_DIR = REPO / ".pytest_cache" / "class-data" / _key()
DRIVER_ARCHIVE = ARCHIVE_DIR / "driver.jsa"
EXECUTOR_ARCHIVE = ARCHIVE_DIR / "executor.jsa"


def archive_options(archive: Path) -> str:
    return f"{QUIET} -XX:SharedArchiveFile={archive}"


def write_archives(env: dict[str, str], job_command: Callable[..., list[str]], jvm_options: str) -> None:
    """Runs ARCHIVING_ARGS once with both JVMs writing their archive at exit (under temporary names,
    renamed when complete, so no JVM maps half a file). A failed run leaves no archive and warns: the
    tests then run as they would without archives. Parallel test processes (pytest -n) take a lock: one
    writes; the others do not wait for it (their JVMs load classes from the jars until the archives exist)."""
    if DRIVER_ARCHIVE.exists() and EXECUTOR_ARCHIVE.exists():
        return
    ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    with open(ARCHIVE_DIR / "write.lock", "w") as lock:
        try:  # released when the file closes, also if this process dies
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another test process is writing them
        if not (DRIVER_ARCHIVE.exists() and EXECUTOR_ARCHIVE.exists()):
            _write_archives(env, job_command, jvm_options)


def _write_archives(env: dict[str, str], job_command: Callable[..., list[str]], jvm_options: str) -> None:
    work = ARCHIVE_DIR / f"run-{os.getpid()}"
    partial = {final: final.with_name(f"{final.name}.{os.getpid()}.partial")
               for final in (DRIVER_ARCHIVE, EXECUTOR_ARCHIVE)}
    dumping = {final: f"{jvm_options} {QUIET} -XX:ArchiveClassesAtExit={path}" for final, path in partial.items()}
    command = job_command(
        "train.py", ARCHIVING_MASTER, "--data-dir", sample_data_dir(), "--model-dir", str(work / "model"),
        "--export-dir", str(work / "export"), *ARCHIVING_ARGS,
        conf=(f"spark.driver.defaultJavaOptions={dumping[DRIVER_ARCHIVE]}",
              f"spark.executor.defaultJavaOptions={dumping[EXECUTOR_ARCHIVE]}"))
    try:
        try:
            result = subprocess.run(command, env={**env, "SPARK_SUBMIT_OPTS": dumping[DRIVER_ARCHIVE]}, cwd=REPO,
                                    capture_output=True, text=True, timeout=ARCHIVING_TIMEOUT_S)
            failure = None if result.returncode == 0 else f"exit {result.returncode}: {result.stderr[-800:]}"
        except subprocess.TimeoutExpired:
            failure = f"the archiving run took over {ARCHIVING_TIMEOUT_S} s"
        written = [path for path in partial.values() if path.exists()]
        if failure or len(written) != len(partial):
            warnings.warn(f"no class-data archives ({failure or f'{len(written)} of {len(partial)} written'}); "
                          "the tests' JVMs load their classes from the jars", stacklevel=2)
            return
        for final, path in partial.items():
            os.replace(path, final)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
