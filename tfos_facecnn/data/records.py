"""Labelled files -> (path, label, split) records, and the counts that are logged and saved."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from ..config import ConfigError
from .discover import LABEL_NAMES, Discovery
from .split import SPLITS, TEST, folds_of, split_of


class Record(NamedTuple):
    path: str
    label: int
    split: str


class Skipped(NamedTuple):
    """A file left out of a run, and why (data.json's and the manifest's `skipped`)."""

    path: str
    reason: str


def assign_splits(found: Discovery, seed: int, val_fraction: float, test_fraction_of_val: float,
                  cv_folds: int = 0, cv_fold: int = 0) -> list[Record]:
    """Each file's split. With cv_folds, the pairs of fold cv_fold are the test set and the others
    split into train and validation by val_fraction (cross-validation, jobs/crossval.py)."""
    if not cv_folds:
        return [Record(f.path, f.label, split_of(f.key, seed, val_fraction, test_fraction_of_val))
                for f in found.files]
    fold = folds_of((f.key for f in found.files), seed, cv_folds)
    return [Record(f.path, f.label, TEST if fold[f.key] == cv_fold else split_of(f.key, seed, val_fraction, 0.0))
            for f in found.files]


def count_by_split(records: Iterable[Record]) -> dict[str, dict[str, int]]:
    counts = {split: {name: 0 for name in LABEL_NAMES.values()} for split in SPLITS}
    for record in records:
        counts[record.split][LABEL_NAMES[record.label]] += 1
    for split in SPLITS:
        counts[split]["total"] = sum(counts[split].values())
    return counts


def data_summary(
    root: str, records: list[Record], skipped: list[tuple[str, str]], ignored: Iterable[str]
) -> dict[str, Any]:
    """What the run trained on: counts per split and class of usable files, and every skipped file."""
    bad = {path for path, _ in skipped}
    return {
        "root": root,
        "counts": count_by_split(r for r in records if r.path not in bad),
        "skipped": [{"path": path, "reason": reason} for path, reason in sorted(skipped)],
        "ignored": sorted(ignored),
    }


def conflicting_files(rows: Iterable[tuple[str, int, str | None]]) -> list[Skipped]:
    """(path, label, content digest) -> the files whose identical bytes sit under both classes: their
    label is contradictory, so they are skipped rather than taught both ways."""
    labels: dict[str, set[int]] = {}
    for _, label, digest in rows:
        if digest is not None:
            labels.setdefault(digest, set()).add(label)
    both = {digest for digest, seen in labels.items() if len(seen) > 1}
    return [Skipped(path, "identical file in faces/ and comics/: contradictory labels")
            for path, _, digest in rows if digest in both]


def check_splits_usable(counts: dict[str, dict[str, int]]) -> None:
    """A split without a usable image is the user's data or settings, not a failure of the job."""
    for split in SPLITS:
        if counts[split]["total"] == 0:
            raise ConfigError(
                f"the {split} split holds no usable image; add images or change val_fraction/"
                "test_fraction_of_val in the config"
            )
