"""How many feeding tasks per epoch SPARK mode plans (driver_inputs.feed_partitions)."""

import math

from tfos_facecnn.driver_inputs import ITEMS_PER_FEED_TASK, feed_partitions


def test_one_node_gets_few_large_partitions():
    assert feed_partitions(180, nodes=1, epochs=3, steps_safety=0.9) == 1
    assert feed_partitions(14_000, nodes=1, epochs=50, steps_safety=0.9) == math.ceil(14_000 / ITEMS_PER_FEED_TASK)


def test_several_nodes_keep_one_partition_of_imbalance_within_the_safety_margin():
    for nodes in (2, 3, 8):
        for epochs in (1, 2, 3, 10, 50):
            for images in (36, 180, 14_000):
                partitions = feed_partitions(images, nodes, epochs, steps_safety=0.9)
                assert partitions >= nodes
                share = images * epochs / nodes  # a node's even share of the whole feed
                # one partition less than its share must still cover 0.9 of the share, with room to spare
                assert share - images / partitions >= 0.9 * share + 0.5 * (images / partitions) - 1e-9


def test_long_runs_on_two_nodes_need_only_one_partition_each():
    assert feed_partitions(180, nodes=2, epochs=50, steps_safety=0.9) == 2


def test_a_safety_of_one_does_not_divide_by_zero():
    assert feed_partitions(180, nodes=2, epochs=3, steps_safety=1.0) >= 2
