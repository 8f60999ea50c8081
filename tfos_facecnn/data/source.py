"""A face2comics folder as a run's input: its files discovered and split before Spark starts."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import TrainConfig
from .discover import Discovery, discover
from .records import Record, assign_splits, check_splits_usable, data_summary


@dataclass(frozen=True)
class RawData:
    """A face2comics folder, discovered and split."""

    found: Discovery
    records: list[Record]


def raw_data(cfg: TrainConfig) -> RawData:
    """--data-dir's files and their splits; ConfigError for a missing or malformed folder or an empty split."""
    found = discover(cfg.data_dir)
    records = assign_splits(found, cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val, cfg.cv_folds,
                            cfg.cv_fold)
    check_splits_usable(data_summary(found.root, records, [], found.ignored)["counts"])
    return RawData(found, records)
