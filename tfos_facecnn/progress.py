"""MODEL_DIR/progress.json, the record of a run's finished epochs: its one writer and its one reader.

The chief writes it twice per epoch: before BackupAndRestore saves the epoch's state, with the epoch's row
as `saving`, then once the state is saved, with the epoch done; and when early stopping ends the run. A run
stopped between the two resumes from whichever state the backup holds (backup_epochs.py). The driver reads
it to decide whether a run is fresh, resumable, trained but not exported, or finished (resume.py), and to
say where a failed run resumes (blame.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import storage
from .config import ConfigError, TrainConfig
from .export import read_json, write_json

PROGRESS_FILE = "progress.json"  # in MODEL_DIR
# Settings that do not change what is trained: a run may resume with other values of these. The input
# mode is in the fingerprint (the two modes order and pad their batches differently), and so is the node
# count (it splits the global batch and the data): either changes what the epochs trained on.
NOT_IN_FINGERPRINT = {
    "epochs", "model_dir", "export_dir", "cluster_size", "bind_address", "executor_timeout",
    "reservation_timeout", "feed_timeout",
    "finish_timeout", "node_timeout", "collective_timeout", "cache_limit_mb", "report", "overwrite", "verbose",
    "tracking",
    "feed_cache",  # where Spark keeps the fed images: the same images in the same order
    "train_cache_mb",  # decoded once or every epoch: the same images, only the shuffle's order differs
    "shard_cache_mb", "storage",  # storage options may hold credentials: never written into progress.json
}


def fingerprint(cfg: TrainConfig, nodes: int) -> dict[str, Any]:
    """What decides what a run trains, on `nodes` TF nodes: a run resumes only where this matches."""
    return {**{k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_FINGERPRINT}, "nodes": nodes}


@dataclass(frozen=True)
class Progress:
    epochs: int  # the epochs the run was asked for when this was written
    epochs_done: int
    fingerprint: dict[str, Any]  # resume.fingerprint of the run's settings
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    stopped_early: bool = False
    # the row of epoch epochs_done + 1 while its training state is being saved: a run stopped before the
    # epoch was recorded as done may still have saved it, and then resumes after it with this row
    saving: dict[str, Any] | None = None


def progress_path(model_dir: str) -> str:
    return storage.join(model_dir, PROGRESS_FILE)


def write_progress(model_dir: str, progress: Progress) -> None:
    record: dict[str, Any] = {"epochs": progress.epochs, "epochs_done": progress.epochs_done,
                              "fingerprint": progress.fingerprint, "history": progress.history}
    if progress.stopped_early:
        record["stopped_early"] = True
    if progress.saving is not None:
        record["saving"] = progress.saving
    write_json(progress_path(model_dir), record)


def read_progress(model_dir: str) -> Progress | None:
    """The run's progress; None without a progress file; ConfigError naming the file and the fix when it
    is unreadable or malformed."""
    path = progress_path(model_dir)
    if not storage.exists(path):
        return None
    try:
        raw = read_json(path)
        history, done, fingerprint = raw["history"], raw["epochs_done"], raw.get("fingerprint")
        saving = raw.get("saving")
        if not isinstance(fingerprint, dict) or not isinstance(history, list) or not isinstance(done, int) \
                or isinstance(done, bool) or done < 0 or not all(isinstance(r, dict) for r in history) \
                or not (saving is None or isinstance(saving, dict)):
            raise ValueError("unexpected content")
        return Progress(int(raw.get("epochs", done)), done, fingerprint, history, bool(raw.get("stopped_early")),
                        saving)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is corrupt ({type(e).__name__}: {e}); pass --overwrite to start afresh, "
                          f"or delete {path}") from e
