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


class _ShortFeed:
    """A TFoS DataFeed stand-in whose feed ends after the given chunks."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def should_stop(self):
        return False

    def next_batch(self, _count):
        return [self.chunks.pop(0)] if self.chunks else []


def test_a_node_whose_feed_ends_tops_up_from_what_it_holds_and_never_gets_an_empty_batch():
    from itertools import islice

    from tfos_facecnn.node_inputs import _FeedCounter

    size = 8
    rng = np.random.default_rng(1)
    items = [(encode_pixels(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "jpeg"), float(i % 2))
             for i in range(10)]
    counter = _FeedCounter(_ShortFeed([items[:6], items[6:]]), seed=3)
    dataset = feed_dataset(counter, size, per_replica_batch=4, seed=1)
    batches = list(islice(dataset.as_numpy_iterator(), 8))  # 32 images asked of a feed of 10
    assert [x.shape[0] for x, _ in batches] == [4] * 8  # full batches to the last step, none empty
    assert counter.items == 10 and counter.topped_up >= 22
    fed = {bytes(encoded) for encoded, _ in items}
    assert all(bytes(encoded) in fed for chunk in islice(counter._top_up(), 5) for encoded, _ in chunk)


def test_a_starved_node_keeps_every_other_chunk_and_a_node_fed_nothing_fails_clearly():
    import pytest

    from tfos_facecnn.node_inputs import _FeedCounter

    chunks = [[(b"x", 0.0)] * 2 for _ in range(4)]
    starved = _FeedCounter(_ShortFeed(chunks), seed=0, starve=True)
    stream = starved()
    kept = [next(stream) for _ in range(2)]
    assert starved.items == 4 and len(kept) == 2
    next(stream)
    assert starved.topped_up == 4  # the feed ended: the rest is topped up
    with pytest.raises(RuntimeError, match="ended before this TF node received any training image"):
        next(_FeedCounter(_ShortFeed([]), seed=0)())
