"""The order of SPARK mode's feed: each chunk carries its key (epoch, partition, chunk), so a single node
can train on the chunks in the order the driver planned, whatever order Spark's feeding tasks queued
them in (on local[*] two tasks may feed at once: the next epoch's task starts while the last one waits
for room in the queue). With the seeded shuffles that makes a one-node run reproducible. With several
nodes a node gets only some of the chunks, and which ones is Spark's scheduling: no order is imposed."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

ChunkKey = tuple[int, int, int]  # (epoch from 0, feeding partition, chunk within the partition)


def chunks_per_partition(partition_items: list[int], chunk_size: int) -> list[int]:
    """Chunks each feeding partition yields per epoch (its images plus its padding)."""
    return [math.ceil(items / chunk_size) for items in partition_items]


def feed_keys(first_epoch: int, epochs: int, chunks: list[int]) -> Iterator[ChunkKey]:
    """Every chunk's key, in the planned order: epoch by epoch, partition by partition."""
    for epoch in range(first_epoch, first_epoch + epochs):
        for partition, count in enumerate(chunks):
            for chunk in range(count):
                yield epoch, partition, chunk


def in_feed_order(received: Iterable[tuple[ChunkKey, Any]], keys: Iterator[ChunkKey]) -> Iterator[Any]:
    """Chunks as they arrive -> the same chunks in `keys` order. A chunk that arrives early waits (at
    most what concurrent feeding tasks queue ahead: about one partition); what is left when the feed
    ends (a key never came) follows in key order."""
    waiting: dict[ChunkKey, Any] = {}
    wanted = next(keys, None)
    for key, chunk in received:
        waiting[key] = chunk
        while wanted in waiting:
            yield waiting.pop(wanted)
            wanted = next(keys, None)
    for key in sorted(waiting):
        yield waiting[key]
