"""How many feeding tasks per epoch SPARK mode plans (modes.spark.feed_partitions)."""

import math

from tfos_facecnn.modes.spark import ITEMS_PER_FEED_TASK, TOP_UP_TOLERANCE, feed_partitions
from tfos_facecnn.pipeline import train_steps_per_epoch


def test_one_node_gets_few_large_partitions():
    assert feed_partitions(180, nodes=1, epochs=3) == 1
    assert feed_partitions(14_000, nodes=1, epochs=50) == math.ceil(14_000 / ITEMS_PER_FEED_TASK)


def test_several_nodes_keep_one_partition_of_imbalance_within_the_top_up_tolerance():
    for nodes in (2, 3, 8):
        for epochs in (1, 2, 3, 10, 50):
            for images in (36, 180, 14_000):
                partitions = feed_partitions(images, nodes, epochs)
                assert partitions >= nodes
                share = images * epochs / nodes  # a node's even share of the whole feed
                assert images / partitions <= TOP_UP_TOLERANCE * share + 1e-9


def test_long_runs_on_two_nodes_need_only_one_partition_each():
    assert feed_partitions(180, nodes=2, epochs=50) == 2


def test_every_training_image_fits_in_an_epoch_of_whole_global_batches():
    assert train_steps_per_epoch(50, 32) == 2  # the embedded sample: 50 images, 64 places, 14 repeats
    assert train_steps_per_epoch(64, 32) == 2
    assert train_steps_per_epoch(5, 32) == 1
