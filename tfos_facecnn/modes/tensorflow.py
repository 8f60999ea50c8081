"""InputMode.TENSORFLOW: the TF nodes read prepared TFRecord shards from storage themselves.

Driver half: a prepared data set's manifest is checked before Spark starts; raw images are prepared
once, on Spark, into MODEL_DIR/prepared-<size>px and reused while their source and settings match.
Node half: worker i reads train shards i, i+W, ... (disjoint; together every record once an epoch),
fetched to local disk in the background when they are on remote storage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .. import storage
from ..config import ConfigError, TrainConfig
from ..data.prepared import PreparedData, is_prepared, looks_prepared, open_prepared
from ..data.records import check_splits_usable
from ..data.source import RawData, raw_data
from ..data.split import TEST, TRAIN, VAL
from ..data.table import TableSource
from ..pipeline import fits_in_memory, predict_examples, steps_for, tfrecord_dataset, worker_share
from .base import DriverPlan, InputMode, NodeInputs, NodeSetup, Predictions, val_steps

PREPARED_TASKS_PER_CORE = 2  # train shards of an automatic preparation: per core of Spark's parallelism


@dataclass(frozen=True)
class ShardPlan:
    """The node part of a TENSORFLOW-mode plan."""

    prepared_dir: str
    record_format: str
    shards: dict[str, list[dict[str, Any]]]  # the manifest's shards per split: {file, records}

    def files(self, split: str) -> list[tuple[str, int]]:
        """(path or URI, records) of a split's shards."""
        return [(storage.join(self.prepared_dir, s["file"]), s["records"]) for s in self.shards[split]]


# ----------------------------------------------------------------------------------------- driver half

def _auto_prepare(sc, cfg: TrainConfig, data: RawData | TableSource, nodes: int) -> PreparedData:
    """Raw images in TENSORFLOW mode: prepare them once under --model-dir, reused while the source,
    size and split settings are the same. A table is prepared afresh every run (its contents cannot be
    compared cheaply)."""
    from ..preparation import PrepareConfig, prepare_on_spark, prepare_table_on_spark

    target = storage.join(cfg.model_dir, f"prepared-{cfg.image_size}px")
    pcfg = PrepareConfig.from_train_config(cfg, target, overwrite=True)
    if isinstance(data, TableSource):
        shards = _auto_shards(sc, nodes)
        print(f"preparing the table into {target} ({shards} train shards) for --input-mode tensorflow", flush=True)
        return PreparedData(target, prepare_table_on_spark(sc, replace(pcfg, num_shards=shards), data))
    if is_prepared(target):
        prepared = open_prepared(target, cfg.image_size)
        if prepared.source == data.found.root and prepared.manifest["split"] == pcfg.split_settings():
            print(f"using the data prepared earlier in {target}", flush=True)
            return prepared
    shards = _auto_shards(sc, nodes)
    print(f"preparing {cfg.data_dir} into {target} ({shards} train shards) for --input-mode tensorflow",
          flush=True)
    manifest = prepare_on_spark(sc, PrepareConfig.from_train_config(cfg, target, overwrite=True, num_shards=shards))
    return PreparedData(target, manifest)


def _auto_shards(sc, nodes: int) -> int:
    """Train shards of an automatic preparation: a multiple of the node count, so every node reads as many."""
    return nodes * math.ceil(max(2, PREPARED_TASKS_PER_CORE * sc.defaultParallelism) / nodes)


def _plan_shards(sc, cfg: TrainConfig, data: RawData | TableSource | PreparedData, nodes: int) -> DriverPlan:
    """TF nodes read TFRecord shards themselves; Spark only starts them (and prepares raw data)."""
    prepared = data if isinstance(data, PreparedData) else _auto_prepare(sc, cfg, data, nodes)
    train_shards = len(prepared.shards[TRAIN])
    if train_shards < nodes:
        raise ConfigError(
            f"{prepared.path!r} has {train_shards} train shard(s) for {nodes} TF nodes (each node reads its own "
            f"shards); prepare again with jobs/prepare.py --num-shards {nodes} (or a multiple)"
        )
    summary = prepared.summary()
    check_splits_usable(summary["counts"])
    # Every worker runs as many steps as the largest share of records needs (worker i reads train shards
    # i, i+nodes, ...); a smaller share fills its epoch with repeats (pipeline.tfrecord_dataset).
    per_replica = cfg.batch_size // nodes
    shares = [sum(s["records"] for s in prepared.shards[TRAIN][i::nodes]) for i in range(nodes)]
    steps = max(steps_for(share, per_replica) for share in shares)
    return DriverPlan(ShardPlan(prepared.path, prepared.record_format, prepared.shards), summary, steps)


# ------------------------------------------------------------------------------------------- node half

def shard_inputs(setup: NodeSetup, shards: ShardPlan, train: Sequence[str] = ()) -> tuple[NodeInputs, Any]:
    """A node's validation dataset and the chief's test predictions from a plan's val and test shards
    (TENSORFLOW mode's prepared ones; SPARK mode's held-out ones of a table), and the node's ShardCache;
    the returned inputs' `train` is the caller's to set. Shards on storage are fetched to local disk in
    the background, `train` shards first (TF 2.21's TFRecordDataset opens neither s3:// nor hdfs://);
    local shards are read where they are."""
    from ..data.tfrecords import iter_examples
    from ..storage.shard_cache import ShardCache

    cfg, per_replica = setup.plan.config, setup.per_replica_batch
    val_share = worker_share(shards.files(VAL), setup.workers, setup.index)
    tests = [path for path, _ in shards.files(TEST)] if setup.is_chief else []
    cache = ShardCache([*train, *(p for p, _ in val_share), *tests], cfg.shard_cache_mb)
    val = setup.strategy.distribute_datasets_from_function(
        lambda _: tfrecord_dataset([p for p, _ in val_share], cfg.image_size, shards.record_format, per_replica,
                                   cfg.seed, resolve=cache.local)
    )
    steps = val_steps(
        [sum(n for _, n in worker_share(shards.files(VAL), setup.workers, i)) for i in range(setup.workers)],
        setup.node_batch)

    def test_predictions(model: Any) -> Predictions:
        local = (cache.local(path) for path in tests)
        return predict_examples(model, iter_examples(local, cfg.image_size, shards.record_format), cfg.batch_size)

    return NodeInputs(None, val, steps, test_predictions, close=cache.close), cache


def _node_inputs(setup: NodeSetup) -> NodeInputs:
    plan, cfg, per_replica = setup.plan, setup.plan.config, setup.per_replica_batch
    shards: ShardPlan = plan.inputs
    # Sharding by file: worker i reads train shards i, i+W, ...: disjoint, together every record.
    share = shards.files(TRAIN)[setup.index::setup.workers]
    mine = [path for path, _ in share]
    images = sum(records for _, records in share)
    in_memory = fits_in_memory(images, cfg.image_size, cfg.train_cache_mb)
    inputs, cache = shard_inputs(setup, shards, mine)
    inputs.train = setup.strategy.distribute_datasets_from_function(
        lambda _: tfrecord_dataset(mine, cfg.image_size, shards.record_format, per_replica, cfg.seed + setup.index,
                                   epoch_records=plan.steps_per_epoch * setup.node_batch, resolve=cache.local,
                                   in_memory=in_memory)
    )
    root = shards.prepared_dir.rstrip("/")
    inputs.record = {"shards_read": [path[len(root) + 1:] for path in mine], "shard_cache_bytes": cache.bytes,
                     "train_images_in_memory": images if in_memory else 0}
    return inputs


def shard_test_predictions(cfg: TrainConfig, shards: ShardPlan, model: Any) -> Predictions:
    """The test split's predictions from a plan's test shards, read on the driver (a re-export)."""
    from ..data.tfrecords import iter_examples

    def examples():
        for path, _ in shards.files(TEST):
            with storage.local_copy(path) as local:
                yield from iter_examples([local], cfg.image_size, shards.record_format)

    return predict_examples(model, examples(), cfg.batch_size)


class TensorflowMode(InputMode):
    name = "tensorflow"
    feeds_from_spark = False

    def check_data(self, cfg: TrainConfig) -> RawData | PreparedData:
        """A prepared data set's manifest, or a face2comics folder (prepared on Spark when the run starts)."""
        if looks_prepared(cfg.data_dir):
            prepared = open_prepared(cfg.data_dir, cfg.image_size)
            check_splits_usable(prepared.counts)
            return prepared
        return raw_data(cfg)

    def plan(self, sc: Any, cfg: TrainConfig, data: RawData | TableSource | PreparedData, nodes: int,
             epochs_to_train: int) -> DriverPlan:
        return _plan_shards(sc, cfg, data, nodes)

    def node_inputs(self, setup: NodeSetup) -> NodeInputs:
        return _node_inputs(setup)

    def test_predictions(self, cfg: TrainConfig, inputs: ShardPlan, model: Any) -> Predictions:
        return shard_test_predictions(cfg, inputs, model)


MODE = TensorflowMode()
