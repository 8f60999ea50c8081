"""Which epochs a resumed run has trained: progress.json's record, reconciled with Keras' backup.

The chief records an epoch in progress.json after BackupAndRestore has saved its training state, so a run
stopped between the two (Ctrl-C, SIGTERM, a lost node) leaves a backup one epoch ahead of the record.
Keras resumes from the backup, whatever the record says; the node must then count that epoch as done,
with the row the chief wrote as `saving` just before the save (progress.py), or it expects one epoch more
than Keras will run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

# Where tf_keras' BackupAndRestore keeps its state (tf_keras/src/distribute/worker_training_state.py): the
# chief's checkpoints in BACKUP/chief, with the last finished epoch's 0-based index as a variable (-1
# before any). Not a public API: tests/unit/test_backup_epochs.py pins both against a real backup.
CHIEF_FOLDER = "chief"
SAVED_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"


def saved_epochs(backup_dir: str) -> int:
    """How many epochs the BackupAndRestore state in local `backup_dir` holds (0 when it holds none)."""
    from .kerasenv import tensorflow

    tf = tensorflow()
    checkpoint = tf.train.latest_checkpoint(os.path.join(backup_dir, CHIEF_FOLDER))
    if checkpoint is None:
        return 0
    return max(0, int(tf.train.load_variable(checkpoint, SAVED_EPOCH_KEY)) + 1)


def resumed_history(history: Sequence[dict[str, Any]], saving: dict[str, Any] | None, saved: int,
                    backup: str) -> list[dict[str, Any]]:
    """The rows of the epochs done when the backup holds `saved` epochs and progress.json records
    `history` (and `saving`, the row of the epoch being saved when the last attempt stopped). RuntimeError
    when they cannot be reconciled: training would then repeat or skip epochs without saying so."""
    done = len(history)
    if saved == done:
        return list(history)
    if saved == done + 1 and saving is not None and saving.get("epoch") == saved:
        return [*history, saving]
    raise RuntimeError(
        f"the training state in {backup} holds {saved} epoch(s) but progress.json records {done}"
        + (f" (and the row of epoch {saving.get('epoch')} being saved)" if saving else "")
        + ": they were not written by one run; pass --overwrite to train afresh")
