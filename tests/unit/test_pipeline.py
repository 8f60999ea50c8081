"""The node-side input pieces without Spark: the executor's chunking of a partition and the node's
tf.data pipeline over the chunks it is fed."""

import random

import numpy as np

from tfos_facecnn.data.tfrecords import encode_pixels
from tfos_facecnn.driver_inputs import chunked
from tfos_facecnn.pipeline import feed_dataset


def test_chunking_covers_a_partition_once_in_a_new_order_every_epoch():
    random.seed(3)
    partition = list(range(40))
    epochs = [[item for chunk in chunked(16)(iter(partition)) for item in chunk] for _ in range(3)]
    assert [len(chunk) for chunk in chunked(16)(iter(partition))] == [16, 16, 8]
    for order in epochs:
        assert sorted(order) == partition
    assert len({tuple(order) for order in epochs}) == 3  # a cached partition must not repeat one order


def test_the_feed_pipeline_decodes_every_fed_image_into_model_batches():
    size = 8
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(12)]
    items = [(encode_pixels(image, "jpeg"), float(i % 2)) for i, image in enumerate(images)]
    chunks = [items[:7], items[7:]]
    dataset = feed_dataset(lambda: iter(chunks), size, per_replica_batch=4, seed=1)
    batches = list(dataset.as_numpy_iterator())
    assert [x.shape for x, _ in batches] == [(4, size, size, 3)] * 3  # 12 images, drop_remainder
    assert all(x.dtype == np.float32 for x, _ in batches)
    assert sorted(y for _, labels in batches for y in labels) == [0.0] * 6 + [1.0] * 6
    options = dataset.options()
    assert options.autotune.enabled is False  # see pipeline._options: iterator teardown waited ~20 s
    assert options.experimental_distribute.auto_shard_policy.name == "OFF"
