"""Where a run stands in its MODEL_DIR: fresh, resumable after a crash, or finished."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import storage
from .config import ConfigError, TrainConfig
from .export import is_complete, read_json
from .node_callbacks import PROGRESS_FILE

BACKUP_DIR = "backup"  # Keras BackupAndRestore's folder in MODEL_DIR
BEST_DIR = "best"  # the best epoch's weights so far (best_epoch.py), for a resumed run
# Settings that do not change what is trained: a run may resume with other values of these.
NOT_IN_FINGERPRINT = {
    "epochs", "model_dir", "export_dir", "cluster_size", "bind_address", "reservation_timeout", "feed_timeout",
    "finish_timeout", "node_timeout", "collective_timeout", "cache_limit_mb", "report", "overwrite", "input_mode",
    "shard_cache_mb", "storage",  # storage options may hold credentials: never written into progress.json
}


@dataclass
class RunState:
    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    message: str | None = None


def fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_FINGERPRINT}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])


def clear_state(cfg: TrainConfig) -> None:
    for name in (BACKUP_DIR, BEST_DIR, PROGRESS_FILE):
        path = storage.join(cfg.model_dir, name)
        if storage.exists(path):
            storage.remove_tree(path) if storage.isdir(path) else storage.remove_file(path)


def run_state(cfg: TrainConfig) -> RunState:
    """Reads MODEL_DIR/progress.json; raises ConfigError when it belongs to a run with other settings."""
    path = storage.join(cfg.model_dir, PROGRESS_FILE)
    if cfg.overwrite:
        clear_state(cfg)
        return RunState()
    if not storage.exists(path):
        return RunState()
    progress = read_json(path)
    if progress.get("fingerprint") != fingerprint(cfg):
        raise ConfigError(
            f"--model-dir {cfg.model_dir!r} holds a run with other settings "
            f"({_differences(progress.get('fingerprint') or {}, fingerprint(cfg))}); "
            "pass --overwrite to start afresh or choose another --model-dir"
        )
    done = int(progress.get("epochs_done", 0))
    if done > cfg.epochs and is_complete(cfg.export_dir):
        raise ConfigError(
            f"--model-dir {cfg.model_dir!r} holds a finished run of {done} epochs, more than --epochs "
            f"{cfg.epochs}; pass --overwrite to train afresh or choose another --model-dir"
        )
    if (done == cfg.epochs or progress.get("stopped_early")) and is_complete(cfg.export_dir):
        stopped = " (stopped early)" if done < cfg.epochs else ""
        return RunState(done, progress["history"], finished=True,
                        message=f"{cfg.export_dir} already holds this run's model ({done} epochs{stopped}); "
                        "pass --overwrite to train again")
    backup = storage.join(cfg.model_dir, BACKUP_DIR)
    if done >= cfg.epochs or not storage.exists(backup) or not storage.listdir(backup):
        clear_state(cfg)
        return RunState(message=f"no training state to resume in {cfg.model_dir}: starting at epoch 1")
    return RunState(done, progress["history"][:done],
                    message=f"resuming at epoch {done + 1} of {cfg.epochs} from {backup}")
