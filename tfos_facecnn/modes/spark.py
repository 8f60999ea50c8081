"""InputMode.SPARK: Spark's executors decode the images and feed them to the TF nodes through TFoS queues.

Driver half: every image is decoded once on the executors (training images kept at the training size
as JPEG, cached for all epochs; validation and test files only checked), and each epoch's feed is every
training image once plus the repeats that fill its last global batch. Node half: a node pulls chunks
from its TFoS queue into tf.data, and tops its batches up from images it holds if its feed ends first.
A table (data/table.py) is decoded from its rows instead; its validation and test images have no file a
node could read, so the driver writes them once as shards into MODEL_DIR/heldout, read as TENSORFLOW
mode reads its shards.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import storage
from ..config import TrainConfig
from ..data.images import load_image
from ..data.records import Record, Skipped, check_splits_usable, conflicting_files, data_summary
from ..data.source import RawData, raw_data
from ..data.split import SPLITS, TEST, TRAIN, VAL
from ..data.table import TableSource, table_images
from ..data.tfrecords import encode_pixels
from ..feed_order import ChunkKey, chunks_per_partition, feed_keys, in_feed_order
from ..pipeline import (
    FEED_CHUNK,
    FEED_SHUFFLE_BUFFER,
    PREFETCH_BATCHES,
    feed_dataset,
    files_dataset,
    fits_in_memory,
    predict_files,
    train_steps_per_epoch,
    worker_share,
)
from ..resume import HELDOUT_DIR  # MODEL_DIR/heldout: a table's val and test images as shards, replaced each run
from .base import DriverPlan, InputMode, NodeInputs, NodeSetup, Predictions, val_steps
from .tensorflow import ShardPlan, shard_inputs, shard_test_predictions

# At most this many images per feeding task. Each Spark task costs the executor ~50-100 ms of CPU that
# the TF node beside it does not get, so the feed uses few, large partitions (see feed_partitions).
ITEMS_PER_FEED_TASK = 1024
DECODE_TASKS_PER_CORE = 2  # the decode stage: enough tasks to keep every core busy to the end
# A node that Spark feeds one partition less than its share tops that many images up with repeats
# (_FeedCounter): with several nodes, enough partitions per epoch that one partition is at most this
# fraction of a node's share of the whole run.
TOP_UP_TOLERANCE = 0.05
# Images a node keeps of what it was fed, to top up its batches if its feed ends before its last step:
# ~34 KB each at 350 px (JPEG), so ~35 MB; a node that ran dry repeats a random draw from them.
TOP_UP_RESERVE = 1024
DISTRIBUTION_PREFETCH_BATCHES = 2  # batches tf.distribute's per-device iterator holds ahead of the model
FEED_DRAIN_S = 0.5  # an empty queue for this long after 'terminating': no feeder is still putting
HELDOUT_TEST_SHARDS = 1  # the chief alone reads the test split


@dataclass(frozen=True)
class FeedPlan:
    """The node part of a SPARK-mode plan."""

    val: tuple[tuple[str, int], ...]  # (path, label) of every usable validation image
    test: tuple[tuple[str, int], ...]
    feed_chunks: tuple[int, ...]  # chunks each feeding partition sends per epoch (feed_order)
    # A table's validation and test images, written as shards (val/test above are then empty); None for files
    heldout: ShardPlan | None = None


class DecodedImage(NamedTuple):
    """One file after the decode stage."""

    split: str
    path: str
    label: int
    jpeg: bytes | None  # training images only, at the training size
    reason: str | None  # why the file is unusable; None when it decoded
    digest: str | None  # content digest: finds identical files under both classes


# ----------------------------------------------------------------------------------------- driver half

def decode_partition(image_size: int, storage_options: dict[str, Any], keep: tuple[str, ...] = (TRAIN,),
                     record_format: str = "jpeg") -> Callable:
    """Executor side of the decode stage: keeps each image of the `keep` splits at the training size, encoded
    as the TFRecords store it (JPEG q95, 4:4:4: ~11x smaller than its pixels in the cache and through the
    TFoS queues; the node decodes it in ~0.4 ms); only validates the others. Records are (path, label,
    split) of files, or (name, label, split, LoadedImage) of a table's rows (data.table loads them)."""

    def decode(records):
        storage.configure(storage_options)
        for path, label, split, *loaded in records:
            pixels, reason, digest = loaded[0] if loaded else load_image(path, image_size)
            kept = encode_pixels(pixels, record_format) if pixels is not None and split in keep else None
            yield DecodedImage(split, path, label, kept, reason, digest)

    return decode


def decode_table(table: TableSource, settings: Any, record_format: str = "jpeg") -> Any:
    """A table's rows decoded once on the executors, every split kept encoded (its validation and test
    images go into shards), cached on disk for the reads that follow (`settings`: a TrainConfig or
    PrepareConfig)."""
    from pyspark import StorageLevel

    tasks = DECODE_TASKS_PER_CORE * table.frame.sparkSession.sparkContext.defaultParallelism
    print(f"decoding the table's images on the executors ({table.description}; every split kept at "
          f"{settings.image_size} px)", flush=True)
    return table_images(table, settings, tasks).mapPartitions(
        decode_partition(settings.image_size, dict(settings.storage), SPLITS, record_format)
    ).persist(StorageLevel.DISK_ONLY)


def checked_images(decoded: Any) -> tuple[list[DecodedImage], list[Skipped]]:
    """Decodes every image once, into the decode stage's cache; only the small fields come back, with the
    unusable images and those whose identical bytes carry both labels."""
    checked = decoded.map(lambda d: d._replace(jpeg=None)).collect()
    skipped = [Skipped(d.path, d.reason) for d in checked if d.reason is not None]
    skipped += conflicting_files([(d.path, d.label, d.digest) for d in checked if d.reason is None])
    return checked, skipped


def epoch_pads(partition_sizes: list[int], per_epoch: int) -> list[int]:
    """Repeats each feeding partition adds to its images so that an epoch's feed is exactly `per_epoch`
    items (steps x global batch >= the training images): spread over the partitions that hold images."""
    pad = per_epoch - sum(partition_sizes)
    if pad < 0:
        raise ValueError(f"an epoch of {per_epoch} items cannot hold {sum(partition_sizes)} training images")
    holders = [i for i, size in enumerate(partition_sizes) if size > 0]
    pads = [0] * len(partition_sizes)
    for rank, i in enumerate(holders):
        pads[i] = pad // len(holders) + (rank < pad % len(holders))
    return pads


def epoch_chunks(size: int, pads: list[int], seed: int, epoch: int) -> Callable:
    """Executor side, one epoch of one feeding partition: its (JPEG bytes, label) items once each, plus
    its share of the epoch's padding (repeats of its own images), in a new order every epoch (seeded by
    the run's seed, the epoch and the partition) -> (key, list of up to `size` of them); the key
    (epoch, partition, chunk) lets one node restore the planned order (feed_order)."""

    def chunk(index: int, items):
        items = sorted(items)  # the order a shuffle read returns is Spark's; the seeded order below is ours
        rng = random.Random(f"{seed}:{epoch}:{index}")
        extra = pads[index]
        if extra:
            items += rng.sample(items, extra) if extra <= len(items) else rng.choices(items, k=extra)
        rng.shuffle(items)
        for number, start in enumerate(range(0, len(items), size)):
            yield (epoch, index, number), items[start:start + size]

    return chunk


def feed_partitions(train_images: int, nodes: int, epochs: int) -> int:
    """Feeding tasks per epoch: as few as possible (each costs its executor CPU), but with several
    nodes enough of them that the only imbalance Spark's scheduling causes (one partition more for one
    node, one less for another: executors take the next task as their node drains its queue, and
    MultiWorkerMirroredStrategy keeps the nodes in step) stays within TOP_UP_TOLERANCE of a node's
    share of the run."""
    count = math.ceil(train_images / ITEMS_PER_FEED_TASK)
    if nodes > 1:
        count = max(count, nodes, math.ceil(nodes / (TOP_UP_TOLERANCE * max(epochs, 1))))
    return max(1, count)


def _decoded_files(sc, cfg: TrainConfig, data: RawData) -> Any:
    from pyspark import StorageLevel

    records = data.records
    decode_tasks = max(1, min(len(records), DECODE_TASKS_PER_CORE * sc.defaultParallelism))
    print(f"decoding {len(records)} images on the executors ({decode_tasks} tasks; training images kept at "
          f"{cfg.image_size} px for every epoch)", flush=True)
    return sc.parallelize([tuple(r) for r in records], decode_tasks).mapPartitions(
        decode_partition(cfg.image_size, dict(cfg.storage))
    ).persist(StorageLevel.DISK_ONLY)  # read twice (the check below, the feed's shuffle), then dropped


def _write_heldout(cfg: TrainConfig, decoded: Any, checked: list[DecodedImage], bad: set[str], nodes: int,
                   source: str) -> ShardPlan:
    """A table's usable validation and test images, from the decode stage's cache, as shards in
    MODEL_DIR/heldout (one per node for validation, at most one per image; one for the test split)."""
    from ..preparation import PrepareConfig, write_decoded_shards

    items = [(d.path, d.label, d.split, d.path) for d in checked if d.split != TRAIN and d.path not in bad]
    val_images = sum(1 for item in items if item[2] == VAL)
    shards = {TRAIN: 0, VAL: max(1, min(nodes, val_images)), TEST: HELDOUT_TEST_SHARDS}
    pcfg = PrepareConfig.from_train_config(cfg, storage.join(cfg.model_dir, HELDOUT_DIR), overwrite=True)
    manifest = write_decoded_shards(decoded, items, shards, pcfg, source, [])
    return ShardPlan(pcfg.output_dir, pcfg.record_format, manifest["shards"])


# config.FEED_CACHES -> pyspark.StorageLevel's names (pyspark is imported on the driver only)
FEED_STORAGE_LEVELS = {"memory_and_disk": "MEMORY_AND_DISK", "disk_only": "DISK_ONLY"}


def _plan_feed(sc, cfg: TrainConfig, data: RawData | TableSource, nodes: int, epochs: int) -> DriverPlan:
    """Decode every image once on the executors (training images cached for all epochs, val/test only
    checked, or a table's written as shards), list the bad files, and feed the cached training images for
    `epochs` epochs."""
    from pyspark import StorageLevel

    table = isinstance(data, TableSource)
    decoded = decode_table(data, cfg) if table else _decoded_files(sc, cfg, data)
    checked, skipped = checked_images(decoded)
    if table:
        records = [Record(d.path, d.label, d.split) for d in checked]
        summary = data_summary(data.description, records, skipped, [])
    else:
        records = data.records
        summary = data_summary(data.found.root, records, skipped, data.found.ignored)
    check_splits_usable(summary["counts"])
    bad = {s.path for s in skipped}
    heldout = _write_heldout(cfg, decoded, checked, bad, nodes, data.description) if table else None
    if heldout is not None:
        summary["prepared_dir"] = heldout.prepared_dir  # the training report's test images are there
    train_images = summary["counts"][TRAIN]["total"]
    steps = train_steps_per_epoch(train_images, cfg.batch_size)
    training = decoded.filter(lambda d: d.split == TRAIN and d.jpeg is not None and d.path not in bad)
    partitions = feed_partitions(train_images, nodes, epochs)
    # Balanced partitions: a shuffle of the small encoded images (once, cached) rather than a coalesce
    # of decode tasks that hold different numbers of training images. Chunked after the cache, on every
    # epoch: chunking reshuffles a partition's images each time it is fed.
    feed = training.map(lambda d: (d.jpeg, d.label)).repartition(partitions).persist(
        getattr(StorageLevel, FEED_STORAGE_LEVELS[cfg.feed_cache]))
    sizes = feed.mapPartitions(lambda items: [sum(1 for _ in items)]).collect()  # caches the feed
    # Only the feed is read from here on. Two copies of the training images in executor memory (the
    # decode stage's and the feed's) ran a 2 GB local[*] driver out of heap at 14,000 images.
    decoded.unpersist()
    pads = epoch_pads(sizes, steps * cfg.batch_size)
    files = not table  # a table's val/test images are read from the held-out shards
    plan = FeedPlan(
        val=tuple((r.path, r.label) for r in records if files and r.split == VAL and r.path not in bad),
        test=tuple((r.path, r.label) for r in records if files and r.split == TEST and r.path not in bad),
        feed_chunks=tuple(chunks_per_partition([n + pad for n, pad in zip(sizes, pads, strict=True)], FEED_CHUNK)),
        heldout=heldout,
    )
    seed = cfg.seed

    def feed_epochs(first: int, count: int):
        """Epochs first+1 .. first+count, each every training image once plus its padding, in order."""
        return sc.union([feed.mapPartitionsWithIndex(epoch_chunks(FEED_CHUNK, pads, seed, first + e))
                         for e in range(count)])

    return DriverPlan(plan, summary, steps, feed_epochs, release=feed.unpersist)


# ------------------------------------------------------------------------------------------- node half

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
        self._starve = starve  # tests only: the feed ends after one chunk, as a short feed

    def _received(self) -> Iterator[tuple[ChunkKey, list]]:
        while not self.feed.should_stop():
            elements = self.feed.next_batch(1)
            if not elements:
                break
            yield elements[0]
            if self._starve:  # its feed ends here, as a feed that Spark gave few partitions ends early
                break

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


def read_ahead(per_replica: int) -> int:
    """Images a node's pipeline reads ahead of the model (shuffle buffer, prefetched batches,
    tf.distribute's own per-device prefetch, the generator's next chunk): top-ups within that much may
    never have been trained on; beyond it the node did train on repeated images. (A one-node run fed
    exactly its 14,016 images topped up 256: this bound at batch 32.)"""
    return FEED_SHUFFLE_BUFFER + (PREFETCH_BATCHES + 1 + DISTRIBUTION_PREFETCH_BATCHES) * per_replica + 2 * FEED_CHUNK


class SparkMode(InputMode):
    name = "spark"
    feeds_from_spark = True

    def check_data(self, cfg: TrainConfig) -> RawData:
        return raw_data(cfg)

    def plan(self, sc: Any, cfg: TrainConfig, data: RawData, nodes: int, epochs_to_train: int) -> DriverPlan:
        return _plan_feed(sc, cfg, data, nodes, epochs_to_train)

    def node_inputs(self, setup: NodeSetup) -> NodeInputs:
        from ..node_callbacks import starving

        plan, cfg, per_replica = setup.plan, setup.plan.config, setup.per_replica_batch
        feed_plan: FeedPlan = plan.inputs
        done = len(plan.history)
        order = feed_keys(done, cfg.epochs - done, list(feed_plan.feed_chunks)) if setup.workers == 1 else None
        counter = _FeedCounter(setup.ctx.get_data_feed(train_mode=True), cfg.seed + setup.index, order,
                               starve=starving(setup.node))
        train = setup.strategy.distribute_datasets_from_function(
            lambda _: feed_dataset(counter, cfg.image_size, per_replica, cfg.seed + setup.index)
        )

        def finish() -> None:
            inputs.record["items_fed"] = counter.items
            inputs.record["images_topped_up"] = counter.topped_up
            inputs.record["top_up_read_ahead"] = read_ahead(per_replica)
            inputs.record["items_dropped"] = terminate_feed(counter.feed)

        if feed_plan.heldout is not None:  # a table's: validation and test read from the driver's shards
            inputs = shard_inputs(setup, feed_plan.heldout)[0]
            inputs.train, inputs.finish = train, finish
            return inputs
        val_share = worker_share(feed_plan.val, setup.workers, setup.index)
        cache = fits_in_memory(len(val_share), cfg.image_size, cfg.cache_limit_mb)
        val = setup.strategy.distribute_datasets_from_function(
            lambda _: files_dataset(val_share, cfg.image_size, per_replica, cache=cache)
        )
        steps = val_steps([len(worker_share(feed_plan.val, setup.workers, i)) for i in range(setup.workers)],
                          setup.node_batch)
        inputs = NodeInputs(train, val, steps, lambda model: self.test_predictions(cfg, feed_plan, model), finish)
        return inputs

    def test_predictions(self, cfg: TrainConfig, inputs: FeedPlan, model: Any) -> Predictions:
        if inputs.heldout is not None:
            return shard_test_predictions(cfg, inputs.heldout, model)
        paths, labels = [p for p, _ in inputs.test], [y for _, y in inputs.test]
        return paths, labels, predict_files(model, paths, cfg.image_size, cfg.batch_size)

    def warnings(self, records: dict[str, dict[str, Any]]) -> list[str]:
        """Every node tops up its last batches with repeats while its pipeline reads ahead of the model; a
        node that Spark fed less than its share also trained on repeats of images it held (_FeedCounter)
        while a peer's surplus was dropped. Past TOP_UP_TOLERANCE, say so."""
        lines = []
        dropped = sum(r.get("items_dropped", 0) for r in records.values())
        for node, record in sorted(records.items()):
            repeated = record.get("images_topped_up", 0) - record.get("top_up_read_ahead", 0)
            trained = record.get("steps_per_epoch", 0) * record.get("per_replica_batch", 0) * \
                record.get("epochs_run", 0)
            if repeated > TOP_UP_TOLERANCE * trained:
                lines.append(f"Spark fed TF node {node} {record.get('items_fed')} images, fewer than its steps "
                             f"needed; it trained on up to {repeated} repeats of images it already held, while "
                             f"peers dropped {dropped} (the executors took feeding tasks unevenly, e.g. one "
                             "started late or ran other tasks: see nodes.json)")
        return lines


MODE = SparkMode()
