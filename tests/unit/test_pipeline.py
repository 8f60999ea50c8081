"""The node-side input pieces without Spark: the executor's chunking of a partition and the node's
tf.data pipeline over the chunks it is fed."""

from itertools import islice

import numpy as np
import pytest

from tfos_facecnn.data.tfrecords import encode_pixels
from tfos_facecnn.modes.spark import epoch_chunks, epoch_pads
from tfos_facecnn.pipeline import feed_dataset, fits_in_memory, predict_examples, tfrecord_dataset


def test_an_epoch_of_a_partition_feeds_each_image_once_plus_its_padding_in_a_new_order():
    partition = list(range(40))
    epochs = [[item for _, chunk in epoch_chunks(16, [0, 5], seed=42, epoch=e)(1, iter(partition)) for item in chunk]
              for e in range(3)]
    keyed = list(epoch_chunks(16, [0, 5], seed=42, epoch=0)(1, iter(partition)))
    assert [(key, len(chunk)) for key, chunk in keyed] == [((0, 1, 0), 16), ((0, 1, 1), 16), ((0, 1, 2), 13)]
    for order in epochs:
        assert len(order) == 45 and set(order) == set(partition)  # every image, and 5 repeats of its own
        assert len(set(order)) == 40
    assert len({tuple(order) for order in epochs}) == 3  # a cached partition must not repeat one order
    arrived = partition[::-1]  # a shuffle read may return the partition in another order
    again = [item for _, chunk in epoch_chunks(16, [0, 5], seed=42, epoch=1)(1, iter(arrived)) for item in chunk]
    assert again == epochs[1]  # seeded: the same run feeds the same epochs


def test_padding_larger_than_a_partition_repeats_its_images():
    fed = [item for _, chunk in epoch_chunks(16, [7], seed=1, epoch=0)(0, iter([1, 2, 3])) for item in chunk]
    assert sorted(set(fed)) == [1, 2, 3] and len(fed) == 10


def test_each_epoch_is_padded_to_whole_global_batches_over_the_partitions_holding_images():
    assert epoch_pads([25, 25], 64) == [7, 7]
    assert epoch_pads([20, 0, 9], 32) == [2, 0, 1]
    assert epoch_pads([32], 32) == [0]
    with pytest.raises(ValueError, match="cannot hold 40"):
        epoch_pads([20, 20], 32)


def _raw_shards(tmp_path, sizes):
    """Shards of 2x2 raw images whose pixels all equal the record's number: identities to count."""
    from tfos_facecnn.data.tfrecords import serialize_example, write_shard

    paths, number = [], 0
    for shard, size in enumerate(sizes):
        records = []
        for _ in range(size):
            records.append(serialize_example(np.full((2, 2, 3), number, np.uint8), number % 2, f"{number}", "raw"))
            number += 1
        paths.append(str(tmp_path / f"part-{shard}.tfrecord"))
        write_shard(paths[-1], records)
    return paths, number


@pytest.mark.parametrize("in_memory", [False, True], ids=["decoded-every-epoch", "decoded-once"])
def test_a_tensorflow_mode_worker_trains_every_record_of_its_shards_in_every_epoch(tmp_path, in_memory):
    paths, total = _raw_shards(tmp_path, [5, 3, 4])
    per_replica, steps = 5, 3  # 12 records: 3 steps of 5, the last 3 places repeats
    dataset = tfrecord_dataset(paths, 2, "raw", per_replica, seed=7, epoch_records=steps * per_replica,
                               in_memory=in_memory)
    seen = [int(x[i, 0, 0, 0]) for x, _ in dataset.take(4 * steps).as_numpy_iterator() for i in range(per_replica)]
    epochs = [seen[e * steps * per_replica:(e + 1) * steps * per_replica] for e in range(4)]
    for epoch in epochs:
        assert set(epoch) == set(range(total))  # every record, whatever the shards' sizes
    assert len({tuple(epoch) for epoch in epochs}) > 1  # reshuffled between epochs


def test_a_worker_whose_share_fits_in_memory_reads_and_decodes_its_shards_once(tmp_path):
    paths, total = _raw_shards(tmp_path, [4, 4])
    per_replica, steps = 4, 2
    dataset = tfrecord_dataset(paths, 2, "raw", per_replica, seed=3, epoch_records=steps * per_replica,
                               in_memory=True)
    batches = dataset.as_numpy_iterator()
    first = [int(x[i, 0, 0, 0]) for x, _ in islice(batches, steps) for i in range(per_replica)]
    for path in paths:  # gone from disk: the epochs that follow come from memory
        (tmp_path / path).unlink()
    later = [int(x[i, 0, 0, 0]) for x, _ in islice(batches, 3 * steps) for i in range(per_replica)]
    assert sorted(first) == list(range(total))
    epochs = [later[e * total:(e + 1) * total] for e in range(3)]
    assert all(sorted(epoch) == list(range(total)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in [first, *epochs]}) > 1  # reshuffled between epochs


def test_a_splits_predictions_stream_its_shards_holding_one_batch_of_images_at_a_time(tmp_path):
    """The test split of a 20,000-image set decoded at once was +400 MB of a TF node (BENCHMARKS.md)."""
    from tfos_facecnn.data.tfrecords import iter_examples

    paths, total = _raw_shards(tmp_path, [5, 3, 4])
    pulled, held_at_predict = [0], []

    def counted(examples):
        for example in examples:
            pulled[0] += 1
            yield example

    class Model:  # P(face) = the record's number / 100: which image each probability belongs to
        predicted = 0

        def predict_on_batch(self, batch):
            held_at_predict.append(pulled[0] - self.predicted)
            self.predicted += len(batch)
            return batch[:, 0, 0, :1] / 100.0

    sources, labels, probabilities = predict_examples(Model(), counted(iter_examples(paths, 2, "raw")), 5)
    assert sources == [str(n) for n in range(total)] and labels == [n % 2 for n in range(total)]
    assert np.allclose(probabilities, np.arange(total) / 100.0)
    assert held_at_predict == [5, 5, 2]  # read as far as the batch predicted, never the whole split
    assert predict_examples(Model(), iter([]), 5)[2].shape == (0,)


def test_a_cache_setting_holds_the_images_that_fit_and_0_holds_none():
    per_image = 350 * 350 * 3  # uint8 RGB at 350 px
    assert fits_in_memory(512 * 2**20 // per_image, 350, 512)
    assert not fits_in_memory(512 * 2**20 // per_image + 1, 350, 512)
    assert not fits_in_memory(10, 350, 0) and not fits_in_memory(0, 350, 512)


def test_the_feed_pipeline_decodes_every_fed_image_into_model_batches():
    import tensorflow as tf

    size = 8
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(12)]
    items = [(encode_pixels(image, "jpeg"), float(i % 2)) for i, image in enumerate(images)]
    chunks = [items[:7], items[7:]]
    dataset = feed_dataset(lambda: iter(chunks), size, per_replica_batch=4, seed=1)
    stream = dataset.as_numpy_iterator()
    batches = list(islice(stream, 3))
    assert [x.shape for x, _ in batches] == [(4, size, size, 3)] * 3  # 12 images
    assert all(x.dtype == np.float32 for x, _ in batches)
    assert sorted(y for _, labels in batches for y in labels) == [0.0] * 6 + [1.0] * 6
    # Declared endless (a node tops up), so tf.distribute hands out no partial or empty batches; a feed
    # that ends anyway is an error, not a short epoch.
    assert dataset.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    with pytest.raises(tf.errors.FailedPreconditionError, match="expected to contain an infinite number"):
        next(stream)
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
    from tfos_facecnn.modes.spark import _FeedCounter

    size = 8
    rng = np.random.default_rng(1)
    items = [(encode_pixels(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "jpeg"), float(i % 2))
             for i in range(10)]
    counter = _FeedCounter(_ShortFeed([((0, 0, 0), items[:6]), ((0, 0, 1), items[6:])]), seed=3)
    dataset = feed_dataset(counter, size, per_replica_batch=4, seed=1)
    batches = list(islice(dataset.as_numpy_iterator(), 8))  # 32 images asked of a feed of 10
    assert [x.shape[0] for x, _ in batches] == [4] * 8  # full batches to the last step, none empty
    assert counter.items == 10 and counter.topped_up >= 22
    fed = {bytes(encoded) for encoded, _ in items}
    assert all(bytes(encoded) in fed for chunk in islice(counter._top_up(), 5) for encoded, _ in chunk)


def test_a_starved_nodes_feed_ends_after_its_first_chunk_and_a_node_fed_nothing_fails_clearly():
    import pytest

    from tfos_facecnn.modes.spark import _FeedCounter

    feed = _ShortFeed([[(b"x", 0.0)] * 2 for _ in range(4)])
    starved = _FeedCounter(feed, seed=0, starve=True)
    stream = starved()
    first = next(stream)
    assert starved.items == len(first) == 2
    next(stream)
    assert starved.topped_up == 2 and len(feed.chunks) == 3  # its feed ended there: the rest is topped up
    with pytest.raises(RuntimeError, match="ended before this TF node received any training image"):
        next(_FeedCounter(_ShortFeed([]), seed=0)())


def test_one_node_trains_on_the_chunks_in_the_planned_order_whatever_order_they_arrive_in():
    from tfos_facecnn.feed_order import chunks_per_partition, feed_keys, in_feed_order
    from tfos_facecnn.modes.spark import _FeedCounter

    chunks = chunks_per_partition([40, 20], 16)
    assert chunks == [3, 2]
    planned = list(feed_keys(1, 2, chunks))  # resumed after epoch 1: epochs 2 and 3 (keys from 0)
    assert planned[0] == (1, 0, 0) and planned[-1] == (2, 1, 1) and len(planned) == 10
    arrived = planned[3:5] + planned[:3] + planned[7:] + planned[5:7]  # two tasks feeding at once
    feed = _ShortFeed([(key, [key]) for key in arrived])
    counter = _FeedCounter(feed, seed=0, order=feed_keys(1, 2, chunks))
    assert [chunk[0] for chunk in islice(counter(), 10)] == planned
    assert list(in_feed_order([((0, 0, 1), "b"), ((0, 0, 0), "a")], iter([(0, 0, 0)]))) == ["a", "b"]
