"""Per input mode, what a TF node trains, validates and tests on (all built inside the TF process)."""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import storage
from .config import TrainConfig
from .feed_order import ChunkKey, feed_keys, in_feed_order
from .node_callbacks import starving
from .pipeline import (
    FEED_CHUNK,
    FEED_SHUFFLE_BUFFER,
    PREFETCH_BATCHES,
    feed_dataset,
    files_dataset,
    predict_arrays,
    predict_files,
    steps_for,
    tfrecord_dataset,
    worker_share,
)

DISTRIBUTION_PREFETCH_BATCHES = 2  # batches tf.distribute's per-device iterator holds ahead of the model
FEED_DRAIN_S = 0.5  # an empty queue for this long after 'terminating': no feeder is still putting


@dataclass
class NodeInputs:
    train: Any  # a distributed dataset for model.fit
    val: Any
    val_steps: int
    # model -> (names, labels, P(face)) of the whole test split (the chief calls it after export)
    test_predictions: Callable[[Any], tuple[list[str], list[int], Any]]
    finish: Callable[[], None] = lambda: None  # called once fit returns
    close: Callable[[], None] = lambda: None  # called when the node is done, whatever happened
    record: dict[str, Any] = field(default_factory=dict)  # facts for the node's record


# Images a node keeps of what it was fed, to top up its batches if its feed ends before its last step:
# ~34 KB each at 350 px (JPEG), so ~35 MB; a node that ran dry repeats a random draw from them.
TOP_UP_RESERVE = 1024


class _FeedCounter:
    """Pulls chunks of (JPEG bytes, label) items from the TFoS queue (the driver feeds lists of them:
    one IPC round trip per chunk, not per image) and counts the images for the node record.

    The guard against empty batches lives here. When Spark has fed this node fewer images than its
    steps need (partitions go to executors unevenly) and the feed ends, MultiWorkerMirroredStrategy
    would hand this worker empty batches while its peers still train: TF 2.21's oneDNN Conv2D returns
    its input for a 0-sized batch, e.g. tf.nn.conv2d(tf.zeros((0, 48, 48, 3)), tf.zeros((5, 5, 3, 32)),
    2, "VALID") has shape (0, 48, 48, 3), not (0, 22, 22, 32), so conv2 fails with "input depth must be
    evenly divisible by filter depth: 3 vs 32"; with oneDNN off those steps train on nothing. So a
    node whose feed has ended tops its stream up from the images it already holds, and counts them."""

    def __init__(self, feed, seed: int, order: Iterator[ChunkKey] | None = None, starve: bool = False) -> None:
        self.feed = feed
        self.items = 0
        self.topped_up = 0
        self.held: collections.deque = collections.deque(maxlen=TOP_UP_RESERVE)
        self._rng = random.Random(seed)
        self._order = order  # one node: train on the chunks in the driver's order (feed_order)
        self._starve = starve  # tests only: keep every other chunk, as a node Spark feeds short

    def _received(self) -> Iterator[tuple[ChunkKey, list]]:
        received = 0
        while not self.feed.should_stop():
            elements = self.feed.next_batch(1)
            if not elements:
                break
            received += 1
            if self._starve and received % 2 == 0:
                continue
            yield elements[0]

    def __call__(self):
        received = self._received()
        chunks = in_feed_order(received, self._order) if self._order is not None else (c for _, c in received)
        for chunk in chunks:
            self.items += len(chunk)
            self.held.extend(chunk)
            yield chunk
        yield from self._top_up()

    def _top_up(self):
        if not self.held:
            raise RuntimeError("the Spark feed ended before this TF node received any training image")
        held = list(self.held)
        while True:  # Keras stops pulling at the last step
            chunk = self._rng.sample(held, min(FEED_CHUNK, len(held)))
            self.topped_up += len(chunk)
            yield chunk


def terminate_feed(feed) -> int:
    """Tells this executor's feeding tasks to skip what is left of the feed (so Spark's feeding job ends
    now) and empties the queue; returns the images dropped (fed, never trained on). TFoS's
    DataFeed.terminate does the same but waits 5 s on the empty queue; our feeders
    (tfos_compat.partition_feeder) see the state at their next state check (TERMINATION_CHECK_S)."""
    from queue import Empty

    feed.mgr.set("state", "terminating")
    dropped = 0
    while True:
        try:
            item = feed.queue_in.get(block=True, timeout=FEED_DRAIN_S)
        except Empty:
            return dropped
        feed.queue_in.task_done()
        dropped += len(item[1]) if isinstance(item, tuple) else 0  # (key, chunk); TFoS's end markers are None


def _val_steps(sizes_per_worker: list[int], per_replica: int) -> int:
    """Every worker runs the same number of validation steps (a collective each): enough for the
    largest share; smaller shares repeat a few images in their last batch."""
    return max(steps_for(size, per_replica) for size in sizes_per_worker)


def spark_inputs(args: dict[str, Any], cfg: TrainConfig, ctx, strategy, per_replica: int, index: int,
                 workers: int) -> NodeInputs:
    done = len(args["history"])
    order = feed_keys(done, cfg.epochs - done, args["feed_chunks"]) if workers == 1 else None
    counter = _FeedCounter(ctx.get_data_feed(train_mode=True), cfg.seed + index, order,
                           starve=starving(f"{ctx.job_name}:{ctx.task_index}"))
    train = strategy.distribute_datasets_from_function(
        lambda _: feed_dataset(counter, cfg.image_size, per_replica, cfg.seed + index)
    )
    val_share = worker_share(args["val"], workers, index)
    cache = 0 < len(val_share) * cfg.image_size**2 * 3 <= cfg.cache_limit_mb * 2**20
    val = strategy.distribute_datasets_from_function(
        lambda _: files_dataset(val_share, cfg.image_size, per_replica, cache=cache)
    )
    val_steps = _val_steps([len(worker_share(args["val"], workers, i)) for i in range(workers)], per_replica)

    def test_predictions(model):
        paths, labels = [p for p, _ in args["test"]], [y for _, y in args["test"]]
        return paths, labels, predict_files(model, paths, cfg.image_size, cfg.batch_size)

    def finish():
        inputs.record["items_fed"] = counter.items
        inputs.record["images_topped_up"] = counter.topped_up
        # The pipeline reads ahead of the model (shuffle buffer, prefetched batches, tf.distribute's own
        # per-device prefetch, the generator's next chunk): top-ups within that much may never have been
        # trained on; beyond it the node did train on repeated images. (A one-node run fed exactly its
        # 14,016 images topped up 256: this bound at batch 32.)
        inputs.record["top_up_read_ahead"] = FEED_SHUFFLE_BUFFER + \
            (PREFETCH_BATCHES + 1 + DISTRIBUTION_PREFETCH_BATCHES) * per_replica + 2 * FEED_CHUNK
        inputs.record["items_dropped"] = terminate_feed(counter.feed)

    inputs = NodeInputs(train, val, val_steps, test_predictions, finish)
    return inputs


def tensorflow_inputs(args: dict[str, Any], cfg: TrainConfig, strategy, per_replica: int, index: int,
                      workers: int, is_chief: bool) -> NodeInputs:
    from .data.tfrecords import read_examples
    from .storage.shard_cache import ShardCache

    root, fmt, shards = args["prepared_dir"], args["record_format"], args["shards"]

    def files(split: str) -> list[tuple[str, int]]:
        return [(storage.join(root, s["file"]), s["records"]) for s in shards[split]]

    # Sharding by file: worker i reads train shards i, i+W, ...: disjoint, together every record.
    mine = [path for path, _ in files("train")[index::workers]]
    val_share = worker_share(files("val"), workers, index)
    tests = [path for path, _ in files("test")] if is_chief else []
    # Shards on storage are fetched to local disk in the background, train shards first (TF 2.21's
    # TFRecordDataset opens neither s3:// nor hdfs://); local shards are read where they are.
    cache = ShardCache([*mine, *(p for p, _ in val_share), *tests], cfg.shard_cache_mb)
    train = strategy.distribute_datasets_from_function(
        lambda _: tfrecord_dataset(mine, cfg.image_size, fmt, per_replica, cfg.seed + index,
                                   epoch_records=args["steps_per_epoch"] * per_replica, resolve=cache.local)
    )
    val = strategy.distribute_datasets_from_function(
        lambda _: tfrecord_dataset([p for p, _ in val_share], cfg.image_size, fmt, per_replica, cfg.seed,
                                   resolve=cache.local)
    )
    val_steps = _val_steps(
        [sum(n for _, n in worker_share(files("val"), workers, i)) for i in range(workers)], per_replica
    )

    def test_predictions(model):
        examples = [example for path in tests for example in read_examples(cache.local(path), cfg.image_size, fmt)]
        probabilities = predict_arrays(model, [pixels for pixels, _, _ in examples], cfg.batch_size)
        return [source for _, _, source in examples], [label for _, label, _ in examples], probabilities

    record = {"shards_read": [path[len(root.rstrip("/")) + 1:] for path in mine], "shard_cache_bytes": cache.bytes}
    return NodeInputs(train, val, val_steps, test_predictions, close=cache.close, record=record)
