"""Driver side of each input mode: what the TF nodes get (node args) and what Spark feeds them."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import storage
from .config import ConfigError, TrainConfig
from .data.discover import Discovery, discover
from .data.images import load_image
from .data.records import (
    Record,
    assign_splits,
    check_splits_usable,
    conflicting_files,
    data_summary,
)
from .data.split import TEST, TRAIN, VAL
from .data.tfrecords import encode_pixels
from .feed_order import chunks_per_partition
from .pipeline import FEED_CHUNK, steps_for, train_steps_per_epoch
from .prepare import PrepareConfig, is_prepared, load_prepared, looks_prepared, prepare_on_spark

# At most this many images per feeding task. Each Spark task costs the executor ~50-100 ms of CPU that
# the TF node beside it does not get, so the feed uses few, large partitions (see feed_partitions).
ITEMS_PER_FEED_TASK = 1024
DECODE_TASKS_PER_CORE = 2  # the decode stage: enough tasks to keep every core busy to the end


@dataclass
class RawData:
    """A face2comics folder, discovered and split before Spark starts."""

    found: Discovery
    records: list[Record]


@dataclass
class ModeInputs:
    node_args: dict[str, Any]
    summary: dict[str, Any]
    steps_per_epoch: int
    # SPARK mode: (epochs done, epochs to run) -> the RDD of chunks of (JPEG bytes, label) to feed them
    feed_epochs: Callable[[int, int], Any] | None = None
    release: Callable[[], None] = field(default=lambda: None)


def check_data(cfg: TrainConfig) -> RawData | dict[str, Any]:
    """Everything about --data-dir that can fail, checked before Spark starts: a prepared data set's
    manifest (TENSORFLOW mode) or a face2comics folder's files and split."""
    if cfg.input_mode == "tensorflow" and looks_prepared(cfg.data_dir):
        manifest = load_prepared(cfg.data_dir, cfg.image_size)
        check_splits_usable(manifest["counts"])
        return manifest
    found = discover(cfg.data_dir)
    records = assign_splits(found, cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val, cfg.cv_folds,
                            cfg.cv_fold)
    check_splits_usable(data_summary(found.root, records, [], found.ignored)["counts"])
    return RawData(found, records)


def decode_partition(image_size: int, storage_options: dict[str, Any]) -> Callable:
    """Executor side of the decode stage: keeps each training image at the training size, encoded as
    the TFRecords store it (JPEG q95, 4:4:4: ~11x smaller than its pixels in the cache and through the
    TFoS queues; the node decodes it in ~0.4 ms); only validates val/test files."""

    def decode(records):
        storage.configure(storage_options)
        for path, label, split in records:
            pixels, reason, digest = load_image(path, image_size)
            kept = encode_pixels(pixels, "jpeg") if pixels is not None and split == TRAIN else None
            yield split, path, label, kept, reason, digest

    return decode


# A node that Spark feeds one partition less than its share tops that many images up with repeats
# (node_inputs._FeedCounter): with several nodes, enough partitions per epoch that one partition is at
# most this fraction of a node's share of the whole run.
TOP_UP_TOLERANCE = 0.05


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


def spark_mode_inputs(sc, cfg: TrainConfig, data: RawData, nodes: int, epochs: int) -> ModeInputs:
    """Decode every image once on the executors (training images cached for all epochs, val/test only
    checked), list the bad files, and feed the cached training images for `epochs` epochs."""
    from pyspark import StorageLevel

    records = data.records
    decode_tasks = max(1, min(len(records), DECODE_TASKS_PER_CORE * sc.defaultParallelism))
    decoded = sc.parallelize([tuple(r) for r in records], decode_tasks).mapPartitions(
        decode_partition(cfg.image_size, dict(cfg.storage))
    ).persist(StorageLevel.DISK_ONLY)  # read twice (the check below, the feed's shuffle), then dropped
    checked = decoded.map(lambda r: (r[1], r[2], r[4], r[5])).collect()  # decodes every file once, into the cache
    skipped = [(path, error) for path, _, error, _ in checked if error is not None]
    skipped += conflicting_files([(path, label, digest) for path, label, error, digest in checked if error is None])
    summary = data_summary(data.found.root, records, skipped, data.found.ignored)
    check_splits_usable(summary["counts"])
    bad = {path for path, _ in skipped}
    train_images = summary["counts"][TRAIN]["total"]
    steps = train_steps_per_epoch(train_images, cfg.batch_size)
    args = {
        "val": [(r.path, r.label) for r in records if r.split == VAL and r.path not in bad],
        "test": [(r.path, r.label) for r in records if r.split == TEST and r.path not in bad],
    }
    training = decoded.filter(lambda r: r[0] == TRAIN and r[3] is not None and r[1] not in bad)
    partitions = feed_partitions(train_images, nodes, epochs)
    # Balanced partitions: a shuffle of the small encoded images (once, cached) rather than a coalesce
    # of decode tasks that hold different numbers of training images. Chunked after the cache, on every
    # epoch: chunking reshuffles a partition's images each time it is fed.
    feed = training.map(lambda r: (r[3], r[2])).repartition(partitions).persist(StorageLevel.MEMORY_AND_DISK)
    sizes = feed.mapPartitions(lambda items: [sum(1 for _ in items)]).collect()  # caches the feed
    # Only the feed is read from here on. Two copies of the training images in executor memory (the
    # decode stage's and the feed's) ran a 2 GB local[*] driver out of heap at 14,000 images.
    decoded.unpersist()
    pads = epoch_pads(sizes, steps * cfg.batch_size)
    args["feed_chunks"] = chunks_per_partition([n + pad for n, pad in zip(sizes, pads, strict=True)], FEED_CHUNK)
    seed = cfg.seed

    def feed_epochs(first: int, count: int):
        """Epochs first+1 .. first+count, each every training image once plus its padding, in order."""
        return sc.union([feed.mapPartitionsWithIndex(epoch_chunks(FEED_CHUNK, pads, seed, first + e))
                         for e in range(count)])

    def release() -> None:
        feed.unpersist()

    return ModeInputs(args, summary, steps, feed_epochs, release=release)


def _auto_prepare(sc, cfg: TrainConfig, data: RawData, nodes: int) -> tuple[str, dict[str, Any]]:
    """Raw images in TENSORFLOW mode: prepare them once under --model-dir, reused while the source,
    size and split settings are the same."""
    target = storage.join(cfg.model_dir, f"prepared-{cfg.image_size}px")
    pcfg = PrepareConfig.from_train_config(cfg, target, overwrite=True)
    if is_prepared(target):
        manifest = load_prepared(target, cfg.image_size)
        if manifest["source"] == data.found.root and manifest["split"] == pcfg.split_settings():
            print(f"using the data prepared earlier in {target}", flush=True)
            return target, manifest
    shards = nodes * math.ceil(max(2, 2 * sc.defaultParallelism) / nodes)  # a multiple of the node count
    print(f"preparing {cfg.data_dir} into {target} ({shards} train shards) for --input-mode tensorflow",
          flush=True)
    return target, prepare_on_spark(sc, PrepareConfig.from_train_config(cfg, target, overwrite=True,
                                                                        num_shards=shards))


def tensorflow_mode_inputs(sc, cfg: TrainConfig, data: RawData | dict[str, Any], nodes: int) -> ModeInputs:
    """TF nodes read TFRecord shards themselves; Spark only starts them (and prepares raw data)."""
    if isinstance(data, RawData):
        prepared_dir, manifest = _auto_prepare(sc, cfg, data, nodes)
    else:
        prepared_dir, manifest = cfg.data_dir, data
    train_shards = len(manifest["shards"][TRAIN])
    if train_shards < nodes:
        raise ConfigError(
            f"{prepared_dir!r} has {train_shards} train shard(s) for {nodes} TF nodes (each node reads its own "
            f"shards); prepare again with jobs/prepare.py --num-shards {nodes} (or a multiple)"
        )
    summary = {
        "root": manifest["source"],
        "prepared_dir": prepared_dir,
        "counts": manifest["counts"],
        "skipped": manifest["skipped"],
        "ignored": manifest["ignored"],
    }
    check_splits_usable(summary["counts"])
    # Every worker runs as many steps as the largest share of records needs (worker i reads train shards
    # i, i+nodes, ...); a smaller share fills its epoch with repeats (pipeline.tfrecord_dataset).
    per_replica = cfg.batch_size // nodes
    shares = [sum(s["records"] for s in manifest["shards"][TRAIN][i::nodes]) for i in range(nodes)]
    steps = max(steps_for(share, per_replica) for share in shares)
    args = {"prepared_dir": prepared_dir, "record_format": manifest["record_format"], "shards": manifest["shards"]}
    return ModeInputs(args, summary, steps)
