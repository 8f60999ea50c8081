"""The exported weights are the best validation epoch's, across a resumed run too (tf-keras, no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from tfos_facecnn.best_epoch import BEST_WEIGHTS_FILE, best_epoch_keeper, best_of, load_weights


class _Mirror:
    def __init__(self, local):
        self.local, self.target, self.pushes = str(local), f"s3://bucket/{local.name}", 0

    def push(self):
        self.pushes += 1


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    return x, y


def _model():
    from tfos_facecnn.kerasenv import legacy_keras

    keras = legacy_keras()
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    return model, keras


def _spike_at(epoch_index: int, keras):
    """A learning-rate spike in one epoch: its validation loss is far worse than the epochs before."""
    return keras.callbacks.LearningRateScheduler(lambda epoch, lr: 500.0 if epoch >= epoch_index else 0.5)


def test_best_of_takes_the_lowest_val_loss_and_the_earliest_of_ties():
    rows = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.3}, {"epoch": 3, "val_loss": 0.3},
            {"epoch": 4, "val_loss": float("nan")}]
    assert best_of(rows)["epoch"] == 2 and best_of([{"epoch": 1}]) is None


def test_a_worse_last_epoch_exports_the_best_epochs_weights(tmp_path):
    x, y = _data()
    model, keras = _model()
    mirror = _Mirror(tmp_path / "best")
    keeper = best_epoch_keeper(True, 0, [], mirror, is_chief=True)
    history = model.fit(x, y, validation_data=(x, y), epochs=4, batch_size=16, verbose=0,
                        callbacks=[_spike_at(3, keras), keeper])
    losses = history.history["val_loss"]
    assert losses[3] > 2 * min(losses[:3])  # the spike made the last epoch the worst
    best = int(np.argmin(losses)) + 1
    assert keeper.chosen_epoch(4) == best < 4
    saved, epoch = load_weights(str(tmp_path / "best" / BEST_WEIGHTS_FILE))
    assert epoch == best and mirror.pushes >= 1
    for restored, kept in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(restored, kept)
    # without keep_best the last epoch's weights stay
    last, _ = _model()
    plain = best_epoch_keeper(False, 0, [], _Mirror(tmp_path / "none"), is_chief=True)
    last.fit(x, y, validation_data=(x, y), epochs=4, batch_size=16, verbose=0, callbacks=[_spike_at(3, keras), plain])
    assert plain.chosen_epoch(4) == 4 and not (tmp_path / "none" / BEST_WEIGHTS_FILE).exists()


def test_a_resumed_run_keeps_the_best_epoch_of_before_the_crash(tmp_path):
    x, y = _data()
    model, keras = _model()
    mirror = _Mirror(tmp_path / "best")
    first = best_epoch_keeper(True, 0, [], mirror, is_chief=True)
    history = model.fit(x, y, validation_data=(x, y), epochs=3, batch_size=16, verbose=0, callbacks=[first])
    rows = [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(history.history["val_loss"])]
    saved, epoch = load_weights(str(tmp_path / "best" / BEST_WEIGHTS_FILE))
    # "crash", then the resumed run trains epoch 4 with a spike: the export is still the best of 1-3
    resumed = best_epoch_keeper(True, 0, rows, mirror, is_chief=True)
    model.fit(x, y, validation_data=(x, y), initial_epoch=3, epochs=4, batch_size=16, verbose=0,
              callbacks=[_spike_at(3, keras), resumed])
    assert resumed.chosen_epoch(4) == epoch == best_of(rows)["epoch"]
    for restored, kept in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(restored, kept)


@pytest.mark.parametrize("patience", [1, 2])
def test_patience_stops_after_that_many_epochs_without_a_better_val_loss(tmp_path, patience):
    x, y = _data()
    model, keras = _model()
    keeper = best_epoch_keeper(True, patience, [], _Mirror(tmp_path / "best"), is_chief=True)
    history = model.fit(x, y, validation_data=(x, y), epochs=10, batch_size=16, verbose=0,
                        callbacks=[_spike_at(3, keras), keeper])
    assert keeper.stopped_epoch > 0 and len(history.history["loss"]) == 3 + patience
