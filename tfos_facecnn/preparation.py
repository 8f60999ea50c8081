"""The prepare job: labelled image folders or a Spark table -> TFRecord shards per split + manifest.json.

Executors read each image once, decode it (with DCT-domain downscaling), resize, encode and write
one shard per Spark task into a staging folder beside the output; the manifest is written last and the staging
folder is swapped into place, so a folder without a manifest is never a finished data set and an
existing one is never partially overwritten. A folder's shards are planned on the driver from its file
list, one task per shard reading its files; a table's rows are decoded where they are (SPARK mode's
decode stage), then the encoded images are shuffled once into the shards planned from their names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import storage
from .config import ConfigError, TrainConfig
from .data.discover import LABEL_NAMES, discover
from .data.prepared import MANIFEST, build_manifest
from .data.records import assign_splits, conflicting_files
from .data.split import SPLITS, TRAIN
from .data.table import TableColumns, TableSource, data_argument, open_table, table_reads, table_source
from .export import staged_output, write_json


@dataclass(frozen=True)
class PrepareConfig:
    data_dir: str
    output_dir: str
    image_size: int
    split_seed: int
    val_fraction: float
    test_fraction_of_val: float
    num_shards: int | None = None  # train shards; None: twice Spark's default parallelism
    record_format: str = "jpeg"
    overwrite: bool = False
    cv_folds: int = 0  # cross-validation: fold cv_fold is the test split (TrainConfig.cv_folds)
    cv_fold: int = 0
    bind_address: str = "auto"  # the job's sockets (TrainConfig.bind_address)
    data_table: str | None = None  # a Spark table instead of data_dir (TrainConfig.data_table, data_format)
    data_format: str = "parquet"
    columns: TableColumns = field(default_factory=TableColumns)  # a table's columns (TrainConfig's *_column)
    # fsspec options per storage scheme (the `storage:` config section); may hold credentials
    storage: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_train_config(cls, cfg: TrainConfig, output_dir: str, **overrides: Any) -> PrepareConfig:
        return cls(data_dir=storage.absolute(cfg.data_dir) if cfg.data_dir else "",
                   output_dir=storage.absolute(output_dir), image_size=cfg.image_size,
                   split_seed=cfg.split_seed, val_fraction=cfg.val_fraction,
                   test_fraction_of_val=cfg.test_fraction_of_val, cv_folds=cfg.cv_folds, cv_fold=cfg.cv_fold,
                   bind_address=cfg.bind_address, storage=cfg.storage,
                   data_table=storage.absolute(cfg.data_table) if cfg.data_table else None,
                   data_format=cfg.data_format, columns=TableColumns.of(cfg), **overrides)

    def split_settings(self) -> dict[str, Any]:
        folds = {"cv_folds": self.cv_folds, "cv_fold": self.cv_fold} if self.cv_folds else {}
        return {"seed": self.split_seed, "val_fraction": self.val_fraction,
                "test_fraction_of_val": self.test_fraction_of_val, **folds}


def _normalized(path: str) -> str:
    import os

    return os.path.realpath(storage.local_path(path)) if storage.is_local(path) else path.rstrip("/")


def check_output_location(data_dir: str, output_dir: str, overwrite: bool) -> None:
    """Refuses an output that would overwrite or sit inside the input, or replace data unasked."""
    source, target = _normalized(data_dir), _normalized(output_dir)
    if target == source or target.startswith(source.rstrip("/") + "/"):
        raise ConfigError(f"--output-dir {output_dir!r} is the data dir or inside it; write the shards elsewhere")
    if source.startswith(target.rstrip("/") + "/"):
        raise ConfigError(f"--output-dir {output_dir!r} contains the data dir; --overwrite would delete the images")
    check_output_free(output_dir, overwrite)


def check_output_free(output_dir: str, overwrite: bool) -> None:
    if storage.exists(output_dir) and not overwrite:
        raise ConfigError(f"--output-dir {output_dir!r} already exists; pass --overwrite to replace it")


def shard_counts(counts: dict[str, int], num_shards: int) -> dict[str, int]:
    """Train gets num_shards; val and test proportionally fewer, at least one each."""
    train = max(counts.get(TRAIN, 0), 1)
    return {split: num_shards if split == TRAIN else max(1, math.ceil(num_shards * counts.get(split, 0) / train))
            for split in SPLITS}


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}/part-{index:05d}-of-{total:05d}.tfrecord"


def plan_shards(items: list[tuple[str, int, str, str]], shards: dict[str, int]) -> list[tuple[int, tuple]]:
    """(path, label, split, source) -> (partition, item): round-robin over a split's shards in source
    order, so shard sizes differ by at most one record and a re-run gives the same shards."""
    offsets, start = {}, 0
    for split in SPLITS:
        offsets[split], start = start, start + shards[split]
    planned, seen = [], {split: 0 for split in SPLITS}
    for item in sorted(items, key=lambda it: it[3]):
        split = item[2]
        planned.append((offsets[split] + seen[split] % shards[split], item))
        seen[split] += 1
    return planned


def shard_names(shards: dict[str, int]) -> list[tuple[str, str]]:
    """(split, shard file name) of every planned shard, in the order of plan_shards' partitions."""
    return [(split, shard_name(split, i, shards[split])) for split in SPLITS for i in range(shards[split])]


def shard_tasks(items: list[tuple[str, int, str, str]], shards: dict[str, int]) -> list[tuple[str, str, list]]:
    """The planned shards as Spark tasks: (split, shard file name, its items in source order)."""
    names = shard_names(shards)
    groups: list[list] = [[] for _ in names]
    for partition, item in plan_shards(items, shards):
        groups[partition].append(item)
    return [(split, name, group) for (split, name), group in zip(names, groups, strict=True)]


def shard_writer(staging: str, image_size: int, record_format: str, storage_options: dict[str, Any]) -> Callable:
    """Executor side: one planned shard -> its file, its summary, and each file's content digest.
    Every image is read once: the digest that finds files duplicated across classes comes from the
    same bytes that are decoded."""

    def write(task: tuple[str, str, list]) -> dict[str, Any]:
        from .data.images import load_image
        from .data.tfrecords import serialize_example, write_shard

        storage.configure(storage_options)
        split, name, items = task
        serialized, classes, skipped, digests = [], {label: 0 for label in LABEL_NAMES.values()}, [], []
        for path, label, _split, source in items:
            pixels, reason, digest = load_image(path, image_size)
            digests.append((path, label, digest))
            if reason is not None:
                skipped.append({"path": path, "reason": reason})
                continue
            serialized.append(serialize_example(pixels, label, source, record_format))
            classes[LABEL_NAMES[label]] += 1
        storage.makedirs(storage.join(staging, split))
        write_shard(storage.join(staging, name), serialized)
        return {"split": split, "file": name, "records": len(serialized), "classes": classes, "skipped": skipped,
                "digests": digests}

    return write


def _shards_for(sc, pcfg: PrepareConfig, items: list[tuple[str, int, str, str]]) -> dict[str, int]:
    per_split = {split: sum(1 for it in items if it[2] == split) for split in SPLITS}
    return shard_counts(per_split, pcfg.num_shards or max(2, 2 * sc.defaultParallelism))


def _write_shards(sc, pcfg: PrepareConfig, items: list[tuple[str, int, str, str]], staging: str) -> list[dict]:
    """One Spark task per shard (no shuffle: the driver plans which images go where)."""
    tasks = shard_tasks(items, _shards_for(sc, pcfg, items))
    storage.makedirs(staging)
    return sc.parallelize(tasks, len(tasks)).map(shard_writer(staging, pcfg.image_size, pcfg.record_format,
                                                                dict(pcfg.storage))).collect()


def prepare_on_spark(sc, pcfg: PrepareConfig) -> dict[str, Any]:
    """Runs the prepare job on an existing SparkContext and publishes the output; returns the manifest."""
    check_output_location(pcfg.data_dir, pcfg.output_dir, pcfg.overwrite)
    found = discover(pcfg.data_dir)
    records = assign_splits(found, pcfg.split_seed, pcfg.val_fraction, pcfg.test_fraction_of_val, pcfg.cv_folds,
                            pcfg.cv_fold)
    root = found.root.rstrip("/") + "/"
    items = [(r.path, r.label, r.split, r.path[len(root):]) for r in records]

    with staged_output(pcfg.output_dir, last=MANIFEST) as staging:
        results = _write_shards(sc, pcfg, items, staging)
        conflicts = conflicting_files([row for result in results for row in result["digests"]])
        if conflicts:
            # Rare: identical bytes under faces/ and comics/. Their shards are already written, so the
            # data set is written again without them (the one case that reads the images twice).
            excluded = {path for path, _ in conflicts}
            storage.remove_tree(staging)
            results = _write_shards(sc, pcfg, [it for it in items if it[0] not in excluded], staging)
        manifest = build_manifest(pcfg.image_size, pcfg.record_format, pcfg.split_settings(), found.root,
                                  sorted(results, key=lambda r: r["file"]), found.ignored,
                                  [{"path": path, "reason": reason} for path, reason in conflicts])
        write_json(storage.join(staging, MANIFEST), manifest)  # last: marks the data set complete
    return manifest


def decoded_shard_writer(staging: str, names: list[tuple[str, str]], storage_options: dict[str, Any]) -> Callable:
    """Executor side: the decoded images (modes.spark.DecodedImage) shuffled into one planned shard -> its
    file, sorted by name (a re-run gives the same shard whatever order the shuffle delivered), and its
    summary."""

    def write(index: int, keyed: Iterator[tuple[int, Any]]) -> Iterator[dict[str, Any]]:
        from .data.tfrecords import serialize_encoded, write_shard

        storage.configure(storage_options)
        split, name = names[index]
        images = sorted((image for _, image in keyed), key=lambda image: (image.path, image.jpeg))
        classes = {label: 0 for label in LABEL_NAMES.values()}
        for image in images:
            classes[LABEL_NAMES[image.label]] += 1
        storage.makedirs(storage.join(staging, split))
        write_shard(storage.join(staging, name), [serialize_encoded(i.jpeg, i.label, i.path) for i in images])
        yield {"split": split, "file": name, "records": len(images), "classes": classes, "skipped": []}

    return write


def write_decoded_shards(decoded: Any, items: list[tuple[str, int, str, str]], shards: dict[str, int],
                         pcfg: PrepareConfig, source: str, skipped: list[tuple[str, str]]) -> dict[str, Any]:
    """Decoded images (an RDD of modes.spark.DecodedImage, each encoded as pcfg.record_format) -> the shards
    planned on the driver from `items` (name, label, split, name): one shuffle of the encoded images, one task
    per shard, into pcfg.output_dir with its manifest last. `skipped` (name, reason) goes into the manifest."""
    names = shard_names(shards)
    partition_of = {item[0]: partition for partition, item in plan_shards(items, shards)}
    with staged_output(pcfg.output_dir, last=MANIFEST) as staging:
        storage.makedirs(staging)
        results = (decoded.filter(lambda image: image.path in partition_of and image.jpeg is not None)
                   .map(lambda image: (partition_of[image.path], image))
                   .partitionBy(len(names), lambda partition: partition)
                   .mapPartitionsWithIndex(decoded_shard_writer(staging, names, dict(pcfg.storage))).collect())
        manifest = build_manifest(pcfg.image_size, pcfg.record_format, pcfg.split_settings(), source,
                                  sorted(results, key=lambda r: r["file"]), [],
                                  [{"path": path, "reason": reason} for path, reason in skipped])
        write_json(storage.join(staging, MANIFEST), manifest)  # last: marks the data set complete
    return manifest


def prepare_table_on_spark(sc, pcfg: PrepareConfig, table: TableSource) -> dict[str, Any]:
    """The prepare job from a checked table: its rows decoded once on the executors (SPARK mode's decode
    stage, cached), the undecodable and contradictory ones listed, the rest written into shards; returns
    the manifest."""
    from .modes.spark import checked_images, decode_table

    check_output_free(pcfg.output_dir, pcfg.overwrite)
    decoded = decode_table(table, pcfg, pcfg.record_format)
    try:
        checked, skipped = checked_images(decoded)
        bad = {path for path, _ in skipped}
        items = [(d.path, d.label, d.split, d.path) for d in checked if d.path not in bad]
        return write_decoded_shards(decoded, items, _shards_for(sc, pcfg, items), pcfg, table.description, skipped)
    finally:
        decoded.unpersist()


def prepare(spark: Any, pcfg: PrepareConfig, data: Any = None) -> dict[str, Any]:
    """The prepare job: checks first, then shards on Spark (`spark`: a SparkSession, or None for the job's
    own, started once the checks pass); returns the manifest. `data`: None (pcfg's data_dir or data_table),
    a folder path or URI, or a Spark DataFrame (its image or path, label and key columns: see data/table.py)."""
    from .session import session_source
    from .storage.access import prepare_storage

    folder, frame = data_argument(data)
    if frame is not None:
        pcfg = replace(pcfg, data_table=None)
    elif folder is not None:
        pcfg = replace(pcfg, data_dir=storage.absolute(folder), data_table=None)
    table = frame is not None or pcfg.data_table is not None
    if not table:
        reads = {"--data-dir": pcfg.data_dir}
    else:  # a table's path is checked here as far as it can be; an in-memory one has none
        reads = table_reads(pcfg.data_table) if pcfg.data_table else {}
    env = prepare_storage(pcfg.storage, reads, {"--output-dir": pcfg.output_dir})
    checked = table_source(frame, pcfg.columns, cv_folds=pcfg.cv_folds) if frame is not None else None
    if table:
        check_output_free(pcfg.output_dir, pcfg.overwrite)
    else:
        check_output_location(pcfg.data_dir, pcfg.output_dir, pcfg.overwrite)
        discover(pcfg.data_dir)  # a missing or malformed data dir stops before Spark starts
    source = session_source(frame.sparkSession if spark is None and frame is not None else spark)
    with source.open("tfos-facecnn-prepare", source.address(pcfg.bind_address), env) as session:
        if not table:
            return prepare_on_spark(session.sparkContext, pcfg)
        if checked is None:
            checked = open_table(session, pcfg.data_table, pcfg.data_format, pcfg.columns, pcfg.cv_folds)
        return prepare_table_on_spark(session.sparkContext, pcfg, checked)
