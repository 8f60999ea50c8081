"""Where a run stands in its model dir (resume.py): checks that only read, deletions only when asked, and
the re-export of a run whose export crashed (reexport.py)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLE
from tfos_facecnn.config import ConfigError, TrainConfig
from tfos_facecnn.export import SUCCESS_MARKER, is_complete
from tfos_facecnn.progress import fingerprint
from tfos_facecnn.resume import RunState, prepare_model_dir, run_state

pytestmark = pytest.mark.timeout(120)


def config(tmp_path: Path, **changes) -> TrainConfig:
    return replace(TrainConfig(model_dir=str(tmp_path / "model"), export_dir=str(tmp_path / "export"), epochs=3,
                               image_size=48, batch_size=8), **changes)


def write_progress(cfg: TrainConfig, done: int, **extra) -> Path:
    model = Path(cfg.model_dir)
    model.mkdir(parents=True, exist_ok=True)
    rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.0 + abs(e - 2), "accuracy": 0.5, "val_accuracy": 0.5}
            for e in range(1, done + 1)]
    path = model / "progress.json"
    path.write_text(json.dumps({"epochs": cfg.epochs, "epochs_done": done, "fingerprint": fingerprint(cfg, 1),
                                "history": rows, **extra}))
    return path


def write_final(cfg: TrainConfig, content: bytes | None = None) -> Path:
    final = Path(cfg.model_dir) / "final" / "training_model.keras"
    final.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        with zipfile.ZipFile(final, "w") as archive:
            archive.writestr("config.json", "{}")
    else:
        final.write_bytes(content)
    return final


def test_overwrite_is_only_a_decision_nothing_is_deleted_by_the_check(tmp_path: Path):
    cfg = config(tmp_path, overwrite=True)
    write_progress(cfg, 2)
    (Path(cfg.model_dir) / "backup" / "chief").mkdir(parents=True)
    state = run_state(cfg, 1)
    assert state.clear and "--overwrite: deleted the earlier run's backup, progress.json" in state.message
    assert (Path(cfg.model_dir) / "backup" / "chief").is_dir() and (Path(cfg.model_dir) / "progress.json").exists()
    prepare_model_dir(cfg, state)  # what the driver calls once every check has passed
    assert sorted(p.name for p in Path(cfg.model_dir).iterdir()) == []


@pytest.mark.parametrize("content", ["", "{", "[]", '{"epochs_done": "two", "history": [], "fingerprint": {}}'])
def test_a_corrupt_progress_file_is_named_with_the_fix(tmp_path: Path, content: str):
    cfg = config(tmp_path)
    path = Path(cfg.model_dir) / "progress.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ConfigError, match=rf"^{path} is corrupt \(.*\); pass --overwrite to start afresh, or delete "
                       rf"{path}$"):
        run_state(cfg, 1)
    assert run_state(replace(cfg, overwrite=True), 1).clear


def test_a_crash_before_the_first_epoch_says_so(tmp_path: Path):
    cfg = config(tmp_path)
    assert run_state(cfg, 1) == RunState()  # nothing there: a plain fresh start
    (Path(cfg.model_dir) / "tensorboard" / "train").mkdir(parents=True)
    (Path(cfg.model_dir) / "backup").mkdir()
    state = run_state(cfg, 1)
    assert state.clear and state.message.startswith("no finished epoch yet: starting at epoch 1")


def test_foreign_files_are_refused_unless_overwrite(tmp_path: Path):
    cfg = config(tmp_path)
    model = Path(cfg.model_dir)
    model.mkdir()
    for name in (".nfs0001", "run.lock", "prepared-48px", "prepared-48px.staging-ab12", "progress.json.tmp-1f2e3d4c",
                 "tensorboard", "base"):
        (model / name).mkdir()
    assert run_state(cfg, 1).message.startswith("no finished epoch yet")  # all of those are a run's own
    (model / "thesis.tex").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds files that no training run wrote \(thesis.tex\); choose an empty"):
        run_state(cfg, 1)
    assert run_state(replace(cfg, overwrite=True), 1).clear
    assert (model / "thesis.tex").read_text() == "mine"  # and --overwrite never deletes them


def test_an_export_dir_inside_the_model_dir_is_not_foreign(tmp_path: Path):
    cfg = config(tmp_path, export_dir=str(tmp_path / "model" / "export"))
    for name in ("export", "export.staging-0123abcd", "export.old-0123abcd"):
        (tmp_path / "model" / name).mkdir(parents=True)
    (tmp_path / "model" / "export.lock").write_text("{}")
    assert run_state(cfg, 1) == RunState()


def test_a_model_without_progress_is_another_runs(tmp_path: Path):
    cfg = config(tmp_path)
    write_final(cfg)
    with pytest.raises(ConfigError, match=r"holds .*training_model.keras but no progress.json: a model of another run"):
        run_state(cfg, 1)


def test_a_crash_during_the_export_re_exports_the_trained_weights(tmp_path: Path):
    cfg = config(tmp_path)
    write_progress(cfg, 3)
    final = write_final(cfg)
    state = run_state(cfg, 1)
    assert state.reexport and not state.clear and state.epochs_done == 3 and len(state.history) == 3
    assert f"exporting the trained weights in {final}" in state.message
    prepare_model_dir(cfg, state)
    assert final.exists()  # kept: it is what the export is made from
    final.write_bytes(final.read_bytes()[:20])  # cut short
    with pytest.raises(ConfigError, match=rf"{final} is corrupt .*pass --overwrite to train afresh, or delete {final}"):
        run_state(cfg, 1)


def test_a_resumed_run_never_keeps_an_older_final_model(tmp_path: Path):
    cfg = config(tmp_path)
    write_progress(cfg, 1)
    (Path(cfg.model_dir) / "backup" / "chief").mkdir(parents=True)
    final = write_final(cfg)
    state = run_state(cfg, 1)
    assert state.message.startswith("resuming at epoch 2 of 3")
    prepare_model_dir(cfg, state)
    assert not final.parent.exists() and (Path(cfg.model_dir) / "backup" / "chief").is_dir()


def test_leftovers_of_interrupted_runs_are_cleaned_at_the_next_run(tmp_path: Path):
    cfg = config(tmp_path)
    write_progress(cfg, 1)
    (Path(cfg.model_dir) / "backup").mkdir()
    (Path(cfg.model_dir) / "backup" / "checkpoint").write_text("x")
    leftovers = [tmp_path / "export.staging-0123abcd", Path(cfg.model_dir) / "prepared-48px.staging-99",
                 Path(cfg.model_dir) / "progress.json.tmp-1f2e3d4c"]
    for path in leftovers[:2]:
        (path / "sub").mkdir(parents=True)
    leftovers[2].write_text("{")
    kept = tmp_path / "export.old-0123abcd"  # the export is not complete: this may be the last good one
    kept.mkdir()
    lines = prepare_model_dir(cfg, run_state(cfg, 1))
    assert lines and lines[0].startswith("removed 3 leftover(s) of an interrupted run")
    assert not any(path.exists() for path in leftovers) and kept.exists()
    assert (Path(cfg.model_dir) / "backup" / "checkpoint").exists()


def test_a_finished_run_stays_finished(tmp_path: Path):
    cfg = config(tmp_path)
    write_progress(cfg, 3)
    write_final(cfg)
    export = Path(cfg.export_dir)
    export.mkdir()
    (export / "model.keras").write_text("m")
    (export / SUCCESS_MARKER).write_text("{}")
    state = run_state(cfg, 1)
    assert state.finished and "already holds this run's model (3 epochs)" in state.message
    other = replace(cfg, seed=7)
    with pytest.raises(ConfigError, match=r"holds a run with other settings \(seed: 42 -> 7\)"):
        run_state(other, 1)


def test_another_input_mode_or_node_count_is_another_run_not_a_silent_no_op(tmp_path: Path):
    cfg = config(tmp_path)  # a finished SPARK-mode run on one node
    write_progress(cfg, 3)
    Path(cfg.export_dir).mkdir()
    (Path(cfg.export_dir) / "model.keras").write_text("m")
    (Path(cfg.export_dir) / SUCCESS_MARKER).write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a run with other settings \(input_mode: 'spark' -> 'tensorflow'\);"
                       r" pass --overwrite to start afresh or choose another --model-dir"):
        run_state(replace(cfg, input_mode="tensorflow"), 1)
    with pytest.raises(ConfigError, match=r"holds a run with other settings \(nodes: 1 -> 2\); pass --overwrite"):
        run_state(cfg, 2)
    assert run_state(replace(cfg, input_mode="tensorflow", overwrite=True), 2).clear


@pytest.mark.timeout(300)
def test_reexport_writes_the_export_the_chief_did_not_finish(tmp_path: Path):
    from tfos_facecnn.best_epoch import save_weights
    from tfos_facecnn.model import build_from_config
    from tfos_facecnn.modes.spark import FeedPlan
    from tfos_facecnn.reexport import reexport

    cfg = config(tmp_path)
    write_progress(cfg, 3)
    model = build_from_config(cfg, training=True)
    final = write_final(cfg)
    model.save(str(final))
    # best/ keeps epoch 2's weights, which are the ones final/ holds: epoch 2 is the chosen one
    save_weights(str(Path(cfg.model_dir) / "best" / "weights.npz"), model.get_weights(), 2)
    state = run_state(cfg, 1)
    tests = [(str(SAMPLE / "faces" / "0.jpg"), 1), (str(SAMPLE / "comics" / "0.jpg"), 0)]
    summary = {"counts": {"test": {"total": 2}}, "skipped": []}
    reexport(cfg, state.history, False, FeedPlan(val=(), test=tuple(tests), feed_chunks=()), summary, 1)
    export = Path(cfg.export_dir)
    assert is_complete(str(export)) and not list(tmp_path.glob("export.staging-*"))
    metrics = json.loads((export / "metrics.json").read_text())
    assert metrics["chosen_epoch"]["epoch"] == 2 and metrics["chosen_epoch"]["rule"] == "lowest val_loss"
    assert metrics["test"]["count"] == 2 and metrics["reexported_from"] == str(final)
    assert [row["epoch"] for row in json.loads((export / "history.json").read_text())] == [1, 2, 3]
    assert len(json.loads((export / "test_predictions.json").read_text())) == 2

    from tfos_facecnn.kerasenv import legacy_keras

    loaded = legacy_keras().models.load_model(export / "model.keras")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True))
    assert run_state(cfg, 1).finished


@pytest.mark.timeout(300)
def test_on_s3_leftovers_are_cleaned_and_the_export_is_redone(s3, tmp_path: Path):
    from tfos_facecnn import storage
    from tfos_facecnn.model import build_from_config
    from tfos_facecnn.modes.spark import FeedPlan
    from tfos_facecnn.reexport import reexport

    cfg = config(tmp_path, model_dir=f"{s3.url}/model", export_dir=f"{s3.url}/export")
    local = config(tmp_path)
    write_progress(local, 3)
    model = build_from_config(cfg, training=True)
    model.save(str(write_final(local)))
    s3.upload_tree(Path(local.model_dir), "model")
    storage.write_bytes_atomic(f"{s3.url}/export.staging-0123abcd/model.keras", b"half")
    state = run_state(cfg, 1)
    assert state.reexport
    assert prepare_model_dir(cfg, state)[0].startswith("removed 1 leftover(s)")
    assert not s3.keys("export.staging-0123abcd")
    tests = [(str(SAMPLE / "faces" / "1.jpg"), 1)]
    reexport(cfg, state.history, False, FeedPlan(val=(), test=tuple(tests), feed_chunks=()),
             {"counts": {}, "skipped": []}, 1)
    assert is_complete(cfg.export_dir) and not any(key.startswith("export.staging-") for key in s3.keys())
    metrics = json.loads(storage.read_bytes(f"{cfg.export_dir}/metrics.json"))
    assert metrics["chosen_epoch"]["epoch"] == 3  # no best/ weights: the last epoch's


def test_a_corrupt_best_epoch_file_is_named_before_a_resume(tmp_path: Path):
    cfg = config(tmp_path)
    write_progress(cfg, 1)
    (Path(cfg.model_dir) / "backup" / "chief").mkdir(parents=True)
    best = Path(cfg.model_dir) / "best" / "weights.npz"
    best.parent.mkdir()
    best.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ConfigError, match=rf"^{best} is corrupt .*pass --overwrite to train afresh, or delete {best}"):
        run_state(cfg, 1)
    best.unlink()
    assert run_state(cfg, 1).message.startswith("resuming at epoch 2")


def test_in_tensorflow_mode_the_re_export_scores_the_test_shards(tmp_path: Path):
    import tensorflow as tf

    from tfos_facecnn.data.tfrecords import serialize_example
    from tfos_facecnn.model import build_from_config
    from tfos_facecnn.modes import mode_for
    from tfos_facecnn.modes.tensorflow import ShardPlan

    cfg = config(tmp_path, input_mode="tensorflow")
    shard = tmp_path / "prepared" / "test" / "part-0.tfrecord"
    shard.parent.mkdir(parents=True)
    pixels = np.zeros((48, 48, 3), dtype=np.uint8)
    with tf.io.TFRecordWriter(str(shard)) as writer:
        writer.write(serialize_example(pixels, 1, "faces/a.jpg", "raw"))
        writer.write(serialize_example(pixels + 255, 0, "comics/a.jpg", "raw"))
    shards = ShardPlan(str(tmp_path / "prepared"), "raw", {"test": [{"file": "test/part-0.tfrecord", "records": 2}]})
    names, labels, probabilities = mode_for("tensorflow").test_predictions(cfg, shards,
                                                                            build_from_config(cfg, training=False))
    assert names == ["faces/a.jpg", "comics/a.jpg"] and labels == [1, 0] and len(probabilities) == 2


def test_the_row_of_an_epoch_being_saved_travels_to_the_resumed_run_only_if_it_is_the_next_epoch(tmp_path: Path):
    cfg = config(tmp_path)
    row = {"epoch": 2, "loss": 0.4, "val_loss": 0.6}
    write_progress(cfg, 1, saving=row)
    (Path(cfg.model_dir) / "backup" / "chief").mkdir(parents=True)
    (Path(cfg.model_dir) / "backup" / "chief" / "checkpoint").write_text("x")
    state = run_state(cfg, 1)
    assert state.epochs_done == 1 and state.saving == row and state.message.startswith("resuming at epoch 2 of 3")
    write_progress(cfg, 1, saving={**row, "epoch": 3})  # not the epoch after those done: ignored
    assert run_state(cfg, 1).saving is None


def test_a_malformed_saving_row_is_named_with_the_fix(tmp_path: Path):
    cfg = config(tmp_path)
    path = write_progress(cfg, 1, saving=[1, 2])
    with pytest.raises(ConfigError, match=rf"{path} is corrupt .*pass --overwrite to start afresh"):
        run_state(cfg, 1)


def test_a_run_stopped_while_saving_its_first_epoch_starts_again_from_scratch(tmp_path: Path):
    cfg = config(tmp_path)
    write_progress(cfg, 0, saving={"epoch": 1, "loss": 0.7})
    (Path(cfg.model_dir) / "backup" / "chief").mkdir(parents=True)  # maybe half a checkpoint
    state = run_state(cfg, 1)
    assert state.clear and state.epochs_done == 0 and state.message == "no finished epoch yet: starting at epoch 1"
    prepare_model_dir(cfg, state)
    assert not (Path(cfg.model_dir) / "backup").exists() and not (Path(cfg.model_dir) / "progress.json").exists()
