"""Where a run stands in its MODEL_DIR: fresh, resumable after a crash, trained but not exported, or finished.

`run_state` only reads, so the driver can run it (and every other check) before anything is deleted;
`prepare_model_dir` does the deleting, under the run's lock, right before its training starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from . import storage
from .best_epoch import BEST_WEIGHTS_FILE
from .config import VARIANTS, ConfigError, TrainConfig
from .export import FINAL_DIR, TRAINING_MODEL_FILE, is_complete
from .logs import LOGS_DIR
from .progress import PROGRESS_FILE, fingerprint, read_progress
from .run_lock import EXPORT_LOCK_SUFFIX, LOCK_FILE

BACKUP_DIR = "backup"  # Keras BackupAndRestore's folder in MODEL_DIR
BEST_DIR = "best"  # the best epoch's weights so far (best_epoch.py), for a resumed run
NODES_FILE = "nodes.json"  # the driver's record of the TF nodes of the last finished training
# A run's training state: what --overwrite and a fresh start delete (tensorboard/ and prepared-*px/
# stay: logs of earlier attempts, and shards reused while their settings match).
STATE_NAMES = (BACKUP_DIR, BEST_DIR, FINAL_DIR, PROGRESS_FILE, NODES_FILE)
HELDOUT_DIR = "heldout"  # SPARK mode from a table: its validation and test images as shards (modes/spark.py)
# What a run of this project writes into MODEL_DIR; `.tmp-*` files are those of an interrupted atomic write.
_OWN = re.compile(
    rf"^(?:{'|'.join(re.escape(n) for n in (*STATE_NAMES, 'tensorboard', LOGS_DIR, LOCK_FILE, *VARIANTS))}|fold-\d+"
    rf"|(?:prepared-\d+px|{HELDOUT_DIR})(?:\.(?:staging|old)-[\w-]+)?)(?:\.tmp-[\w-]+)?$"
)
@dataclass
class RunState:
    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    message: str | None = None
    clear: bool = False  # delete the training state in MODEL_DIR before training (after every check)
    reexport: bool = False  # trained, but the export did not finish: export MODEL_DIR/final's weights again
    stopped_early: bool = False
    saving: dict[str, Any] | None = None  # progress.Progress.saving of the epoch after those done


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])


def _entries(folder: str) -> list[str]:
    if not storage.exists(folder):
        return []
    if not storage.isdir(folder):
        raise ConfigError(f"--model-dir {folder!r} is a file, not a folder; choose a folder")
    return storage.listdir(folder)


def _export_inside(model_dir: str, export_dir: str) -> str | None:
    """The export dir's name when it sits directly in the model dir (README: runs/m1 and runs/m1/export)."""
    if storage.is_local(model_dir) != storage.is_local(export_dir):
        return None
    if storage.is_local(export_dir):
        parent, name = os.path.split(os.path.normpath(storage.local_path(export_dir)))
        return name if parent == os.path.normpath(storage.local_path(model_dir)) else None
    parent, _, name = export_dir.rstrip("/").rpartition("/")
    return name if parent == model_dir.rstrip("/") else None


def check_foreign(model_dir: str, export_dir: str) -> None:
    """Refuses a MODEL_DIR holding files that no run of this project wrote (hidden files such as .nfs*
    or .DS_Store aside): training into it could overwrite someone's data. --overwrite skips this check
    (and then deletes only this project's state, never the foreign files)."""
    export_name = _export_inside(model_dir, export_dir)
    # the export dir, its staging and replaced folders, its lock
    export_own = re.compile(rf"^{re.escape(export_name)}(?:\.(?:staging|old)-[\w-]+|"
                            rf"{re.escape(EXPORT_LOCK_SUFFIX)}(?:\.tmp-[\w-]+)?)?$") if export_name else None
    foreign = [entry for entry in _entries(model_dir) if not entry.startswith(".") and not _OWN.match(entry)
               and not (export_own and export_own.match(entry))]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"--model-dir {model_dir!r} holds files that no training run wrote ({shown}); choose an "
                          "empty or new --model-dir, or pass --overwrite to train into it anyway")


def _check_archive(path: str, fix: str) -> None:
    """.keras and .npz files are zips: one cut short by a crash is named here, before Spark starts."""
    import zipfile

    if not storage.exists(path):
        return
    with storage.local_copy(path) as local:
        try:
            with zipfile.ZipFile(local) as archive:
                bad = archive.testzip()
        except zipfile.BadZipFile as e:
            bad = str(e)
    if bad is not None:
        raise ConfigError(f"{path} is corrupt ({bad}); pass --overwrite to train afresh, or delete {path} {fix}")


def run_state(cfg: TrainConfig, nodes: int) -> RunState:
    """What MODEL_DIR holds for this run on `nodes` TF nodes. Reads only; raises ConfigError for a model
    dir holding a run with other settings (the input mode and node count included), foreign files or an
    unreadable state file."""
    model_dir = cfg.model_dir
    if cfg.overwrite:
        held = [name for name in STATE_NAMES if storage.exists(storage.join(model_dir, name))]
        return RunState(clear=True, message=f"--overwrite: deleted the earlier run's {', '.join(held)} in "
                        f"{model_dir}; starting at epoch 1" if held else None)
    check_foreign(model_dir, cfg.export_dir)
    progress = read_progress(model_dir)
    final = storage.join(model_dir, FINAL_DIR, TRAINING_MODEL_FILE)
    if progress is None:
        if storage.exists(final):
            raise ConfigError(f"--model-dir {model_dir!r} holds {final} but no {PROGRESS_FILE}: a model of "
                              "another run; pass --overwrite to replace it or choose another --model-dir")
        partial = [name for name in (*STATE_NAMES, "tensorboard") if storage.exists(storage.join(model_dir, name))]
        if partial:  # an attempt that ended before its first epoch did
            return RunState(clear=True, message=f"no finished epoch yet: starting at epoch 1 ({model_dir} holds "
                            f"{', '.join(partial)} of an attempt that ended before its first epoch)")
        return RunState()
    if progress.fingerprint != fingerprint(cfg, nodes):
        raise ConfigError(
            f"--model-dir {model_dir!r} holds a run with other settings "
            f"({_differences(progress.fingerprint, fingerprint(cfg, nodes))}); "
            "pass --overwrite to start afresh or choose another --model-dir"
        )
    done, history, stopped = progress.epochs_done, progress.history, progress.stopped_early
    trained = done == cfg.epochs or (stopped and done <= cfg.epochs)
    if done > cfg.epochs and is_complete(cfg.export_dir):
        raise ConfigError(
            f"--model-dir {model_dir!r} holds a finished run of {done} epochs, more than --epochs "
            f"{cfg.epochs}; pass --overwrite to train afresh or choose another --model-dir"
        )
    if trained and is_complete(cfg.export_dir):
        note = " (stopped early)" if done < cfg.epochs else ""
        return RunState(done, history, finished=True, stopped_early=stopped,
                        message=f"{cfg.export_dir} already holds this run's model ({done} epochs{note}); "
                        "pass --overwrite to train again")
    best = storage.join(model_dir, BEST_DIR, BEST_WEIGHTS_FILE)
    if trained and storage.exists(final):
        _check_archive(final, "to train this run again")
        _check_archive(best, "(metrics.json then names the last epoch as the chosen one)")
        return RunState(done, history[:done], reexport=True, stopped_early=stopped,
                        message=f"training finished ({done} epochs) but its export did not: exporting the "
                        f"trained weights in {final}")
    if done == 0:  # stopped while epoch 1's state was being saved (progress.py): epoch 1 again, from scratch
        return RunState(clear=True, message="no finished epoch yet: starting at epoch 1")
    backup = storage.join(model_dir, BACKUP_DIR)
    if done >= cfg.epochs or not storage.exists(backup) or not storage.listdir(backup):
        return RunState(clear=True, message=f"no training state to resume in {model_dir}: starting at epoch 1")
    _check_archive(best, "(the best epoch is then sought among the epochs still to run)")
    saving = progress.saving if progress.saving and progress.saving.get("epoch") == done + 1 else None
    return RunState(done, history[:done], saving=saving,
                    message=f"resuming at epoch {done + 1} of {cfg.epochs} from {backup}")


def stale_outputs(cfg: TrainConfig) -> list[str]:
    """What crashed runs left beside their outputs: export staging folders, a replaced export not yet
    deleted, prepared-shard staging, temporary files of interrupted writes. Only safe to delete while
    this run holds the locks of its model and export dirs (run_lock): no other run writes them then."""
    export = cfg.export_dir.rstrip("/")
    found = storage.glob(f"{export}.staging-*") + storage.glob(storage.join(cfg.export_dir, "report.staging-*"))
    # Prepared and held-out shards are a cache, made again when missing: their leftovers always go.
    for written in ("prepared-*px", HELDOUT_DIR):
        found += storage.glob(storage.join(cfg.model_dir, f"{written}.staging-*"))
        found += storage.glob(storage.join(cfg.model_dir, f"{written}.old-*"))
    # Not the locks' own temporary files: a concurrent run, about to be refused, may be writing one.
    for name in (PROGRESS_FILE, NODES_FILE):
        found += storage.glob(storage.join(cfg.model_dir, f"{name}.tmp-*"))
    if is_complete(cfg.export_dir):  # else the .old- folder may hold the only copy of the last export
        found += storage.glob(f"{export}.old-*")
    return sorted(found)


def _delete(path: str) -> None:
    storage.remove_tree(path) if storage.isdir(path) else storage.remove_file(path)


def clear_state(cfg: TrainConfig) -> None:
    for name in STATE_NAMES:
        path = storage.join(cfg.model_dir, name)
        if storage.exists(path):
            _delete(path)


def prepare_model_dir(cfg: TrainConfig, state: RunState) -> list[str]:
    """Deletes what this run replaces, right before it trains (every check has passed, the locks are
    held); returns lines for the console."""
    lines = []
    stale = stale_outputs(cfg)
    for path in stale:
        _delete(path)
    if stale:
        lines.append(f"removed {len(stale)} leftover(s) of an interrupted run: {', '.join(stale[:3])}"
                     + (" ..." if len(stale) > 3 else ""))
    if state.finished:
        return lines
    if state.clear:
        clear_state(cfg)
    elif not state.reexport:
        # A resumed run writes final/ anew when its training ends; an older one must never be taken for it.
        final = storage.join(cfg.model_dir, FINAL_DIR)
        if storage.exists(final):
            _delete(final)
    return lines

