from collections import Counter

from tfos_facecnn.data.split import split_of


def test_split_is_deterministic_and_ignores_order():
    keys = [f"{i}.jpg" for i in range(500)]
    first = {k: split_of(k, 7, 0.3, 0.2) for k in keys}
    second = {k: split_of(k, 7, 0.3, 0.2) for k in reversed(keys)}
    assert first == second


def test_split_ratios_follow_the_reference():
    counts = Counter(split_of(f"img_{i}.jpg", 42, 0.3, 0.2) for i in range(20_000))
    assert abs(counts["train"] / 20_000 - 0.70) < 0.015
    assert abs(counts["val"] / 20_000 - 0.24) < 0.015  # 30% validation minus the test carve-out
    assert abs(counts["test"] / 20_000 - 0.06) < 0.01  # 20% of the 30%


def test_adding_files_does_not_move_existing_ones():
    old = {f"{i}.jpg": split_of(f"{i}.jpg", 1, 0.3, 0.2) for i in range(1000)}
    for i in range(1000, 3000):
        split_of(f"{i}.jpg", 1, 0.3, 0.2)
    assert old == {k: split_of(k, 1, 0.3, 0.2) for k in old}


def test_seed_changes_the_split():
    keys = [f"{i}.jpg" for i in range(200)]
    assert [split_of(k, 1, 0.3, 0.2) for k in keys] != [split_of(k, 2, 0.3, 0.2) for k in keys]


def test_default_seed_gives_the_sample_every_split():
    from tfos_facecnn.config import TrainConfig

    cfg = TrainConfig()
    counts = Counter(split_of(f"{i}.jpg", cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val)
                     for i in range(35))
    assert counts == {"train": 25, "val": 8, "test": 2}
