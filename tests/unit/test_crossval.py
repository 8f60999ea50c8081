"""Cross-validation without Spark: folds by pair, the fold split, the summary, bad settings."""

from __future__ import annotations

from collections import Counter

import pytest

from tfos_facecnn import sample_data_dir
from tfos_facecnn.config import ConfigError, TrainConfig, resolve_config
from tfos_facecnn.crossvalidation import check_crossval, fold_config, summarize
from tfos_facecnn.data.discover import discover
from tfos_facecnn.data.records import assign_splits
from tfos_facecnn.data.split import TEST, folds_of


def test_folds_are_balanced_and_seeded():
    keys = [f"{i}.jpg" for i in range(35)]
    folds = folds_of(keys, 17, 5)
    assert sorted(Counter(folds.values()).values()) == [7, 7, 7, 7, 7]
    assert folds_of(reversed(keys), 17, 5) == folds
    assert folds_of(keys, 18, 5) != folds
    assert sorted(Counter(folds_of(keys, 1, 4).values()).values()) == [8, 9, 9, 9]


def test_a_fold_never_splits_a_pair_and_every_image_is_tested_once():
    found = discover(sample_data_dir())
    tested: Counter = Counter()
    for fold in range(5):
        records = assign_splits(found, 17, 0.3, 0.2, cv_folds=5, cv_fold=fold)
        by_key: dict[str, set[str]] = {}
        for f, record in zip(found.files, records, strict=True):
            by_key.setdefault(f.key, set()).add(record.split)
        assert all(len(splits) == 1 for splits in by_key.values())  # face and comic of a pair together
        test = [r for r in records if r.split == TEST]
        assert {r.label for r in test} == {0, 1} and len(test) == 14  # 7 pairs
        tested.update(r.path for r in test)
    assert set(tested.values()) == {1} and len(tested) == 70


def test_the_summary_pools_the_folds():
    rows = [{"fold": 1, "images": 14, "correct": 14, "accuracy": 1.0},
            {"fold": 2, "images": 14, "correct": 7, "accuracy": 0.5}]
    summary = summarize(rows)
    assert summary["mean_accuracy"] == 0.75 and summary["min_accuracy"] == 0.5
    assert summary["std_accuracy"] == pytest.approx(0.3536, abs=1e-4)
    assert summary["pooled_accuracy"] == 0.75 and summary["images_tested"] == 28
    assert summary["pooled_interval_95"]["low"] == pytest.approx(0.5663, abs=1e-3)


def test_each_fold_trains_into_its_own_dirs():
    cfg = fold_config(TrainConfig(model_dir="m", export_dir="e"), 3, 1)
    assert (cfg.cv_folds, cfg.cv_fold, cfg.model_dir, cfg.export_dir) == (3, 1, "m/fold-2", "e/fold-2")


@pytest.mark.parametrize("folds,settings,message", [
    (1, {}, "needs 2 or more folds"),
    (3, {"variant": "all"}, "one variant at a time"),
])
def test_bad_crossval_settings_are_refused(folds, settings, message):
    with pytest.raises(ConfigError, match=message):
        check_crossval(resolve_config(settings, {}), folds)


def test_a_fold_outside_the_folds_is_refused():
    with pytest.raises(ConfigError, match="'cv_fold': 3 is not a fold of 3"):
        resolve_config({"cv_folds": 3, "cv_fold": 3}, {})
