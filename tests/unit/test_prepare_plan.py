from collections import Counter

import pytest

from tfos_facecnn.config import ConfigError
from tfos_facecnn.preparation import check_output_location, plan_shards, shard_counts, shard_name


def test_shard_counts_follow_the_split_sizes():
    assert shard_counts({"train": 700, "val": 240, "test": 60}, 8) == {"train": 8, "val": 3, "test": 1}
    assert shard_counts({"train": 0, "val": 0, "test": 0}, 4) == {"train": 4, "val": 1, "test": 1}


def test_plan_is_balanced_and_independent_of_input_order():
    items = [(f"/d/faces/{i}.jpg", 1, "train" if i % 5 else "val", f"faces/{i}.jpg") for i in range(100)]
    shards = {"train": 4, "val": 2, "test": 1}
    plan = plan_shards(items, shards)
    assert plan == plan_shards(list(reversed(items)), shards)
    sizes = Counter(partition for partition, _ in plan)
    assert sorted(sizes) == [0, 1, 2, 3, 4, 5]  # 4 train partitions, then 2 val; test empty
    assert max(sizes[p] for p in range(4)) - min(sizes[p] for p in range(4)) <= 1
    assert all(item[2] == "val" for partition, item in plan if partition >= 4)


def test_shard_names_sort_in_order():
    assert shard_name("train", 3, 12) == "train/part-00003-of-00012.tfrecord"


def test_output_may_not_overlap_the_input(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ConfigError, match="is the data dir or inside it"):
        check_output_location(str(data), str(data), overwrite=True)
    with pytest.raises(ConfigError, match="is the data dir or inside it"):
        check_output_location(str(data), str(data / "prepared"), overwrite=True)
    with pytest.raises(ConfigError, match="contains the data dir"):
        check_output_location(str(data), str(tmp_path), overwrite=True)
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        check_output_location(str(data), str(tmp_path / "out"), overwrite=False)
    check_output_location(str(data), str(tmp_path / "out"), overwrite=True)
