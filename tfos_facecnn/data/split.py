"""The one function that decides which split a file is in, shared by every input mode."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = (TRAIN, VAL, TEST)


def split_of(key: str, seed: int, val_fraction: float, test_fraction_of_val: float) -> str:
    """Deterministic split from a hash of (seed, key).

    `key` is the path inside the class folder, so a face and its comic version share a split (no
    near-duplicate leaks from train into test), and a file keeps its split when others are added
    or the job runs on another machine. The test set is carved out of the validation share.
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    train_share = 1.0 - val_fraction
    if position < train_share:
        return TRAIN
    within_val = (position - train_share) / val_fraction
    return TEST if within_val < test_fraction_of_val else VAL


def folds_of(keys: Iterable[str], seed: int, folds: int) -> dict[str, int]:
    """Cross-validation folds of the keys (paths inside the class folders, so a face and its comic
    version always share a fold): ranked by a hash of (seed, key) and dealt out in turn, so fold sizes
    differ by at most one key, whatever the data set's size."""
    ranked = sorted(set(keys), key=lambda key: hashlib.sha256(f"{seed}:fold:{key}".encode()).digest())
    return {key: rank % folds for rank, key in enumerate(ranked)}
