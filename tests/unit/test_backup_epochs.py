"""A run stopped between saving an epoch's state and recording it resumes after that epoch, with its row
(backup_epochs.py), against a real tf-keras BackupAndRestore (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from tfos_facecnn.backup_epochs import resumed_history, saved_epochs

pytestmark = pytest.mark.timeout(180)
ROWS = [{"epoch": 1, "val_loss": 0.7}, {"epoch": 2, "val_loss": 0.6}]


class _Stopped(Exception):
    pass


def _fit(backup: str, epochs: int, stop_after_saving: int | None = None) -> list[int]:
    """Fits a tiny model with BackupAndRestore; returns the 0-based epochs Keras began. With
    `stop_after_saving`, the run dies right after that epoch's state is saved (a kill before the record)."""
    from tfos_facecnn.kerasenv import legacy_keras

    keras = legacy_keras()
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    began: list[int] = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            began.append(epoch)

        def on_epoch_end(self, epoch, logs=None):
            if stop_after_saving == epoch + 1:
                raise _Stopped

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(backup, save_freq="epoch"), Watch()])
    return began


def test_saved_epochs_reads_what_keras_will_resume_from(tmp_path):
    backup = str(tmp_path / "backup")
    assert saved_epochs(backup) == 0  # nothing saved yet
    with pytest.raises(_Stopped):
        _fit(backup, epochs=4, stop_after_saving=2)
    assert saved_epochs(backup) == 2
    assert _fit(backup, epochs=4) == [2, 3]  # Keras resumes after the epochs saved_epochs counted


def test_a_backup_one_epoch_ahead_adopts_the_row_being_saved():
    saving = {"epoch": 3, "val_loss": 0.5}
    assert resumed_history(ROWS, None, 2, "s3://b/backup") == ROWS
    assert resumed_history(ROWS, saving, 2, "s3://b/backup") == ROWS  # stopped before the save
    assert resumed_history(ROWS, saving, 3, "s3://b/backup") == [*ROWS, saving]


@pytest.mark.parametrize("saved, saving", [(3, None), (4, {"epoch": 3}), (1, None), (3, {"epoch": 4})])
def test_a_backup_and_a_record_of_different_runs_are_refused_with_the_fix(saved, saving):
    with pytest.raises(RuntimeError, match=rf"the training state in s3://b/backup holds {saved} epoch\(s\) but "
                       r"progress.json records 2.*pass --overwrite to train afresh"):
        resumed_history(ROWS, saving, saved, "s3://b/backup")
