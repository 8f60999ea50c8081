"""The contract between the driver and the TF nodes, and what every input mode provides.

`NodePlan` is everything a TF node is told: built once on the driver, read once on the node, plain
values only (it travels pickled inside TFoS's arguments). Each mode adds its own frozen part
(`NodePlan.inputs`). An `InputMode` has a driver half (check the data before Spark starts, plan the
run and the feed on Spark) and a node half (the datasets a node trains, validates and tests on).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ..config import TrainConfig
from ..events import EventsEndpoint
from ..pipeline import steps_for


@dataclass(frozen=True)
class NodePlan:
    """What the driver tells every TF node of a run."""

    config: TrainConfig
    run_id: str
    steps_per_epoch: int  # the same on every node: MultiWorkerMirroredStrategy steps them together
    threads: int  # the TF thread pools' size; 0: TF's default
    history: tuple[dict[str, Any], ...]  # the rows of the epochs done before (a resumed run)
    data_summary: dict[str, Any]  # counts and skipped files, for the export
    events: EventsEndpoint
    inputs: Any  # the mode's own frozen plan (modes.spark.FeedPlan, modes.tensorflow.ShardPlan)
    # the node's output also goes to its executor's stderr (a cluster's executor logs); not on a local
    # master, where that stderr is the driver's terminal
    echo_output: bool = False
    # the row of the epoch after `history` if the last attempt stopped while saving its state (progress.py):
    # the backup may hold that epoch (backup_epochs.py)
    saving: dict[str, Any] | None = None

    @property
    def mode(self) -> InputMode:
        from . import mode_for

        return mode_for(self.config.input_mode)

    def __contains__(self, name: str) -> bool:
        """TFoS asks `'num_gpus' in tf_args` of the arguments it hands to every node (TFSparkNode.run)."""
        return name in {f.name for f in fields(self)}


@dataclass
class DriverPlan:
    """A mode's plan on the driver: the node part, the data summary, and (SPARK mode) the feed."""

    inputs: Any
    summary: dict[str, Any]
    steps_per_epoch: int
    # (epochs done, epochs to run) -> the RDD Spark feeds the nodes; None: the nodes read by themselves
    feed_epochs: Callable[[int, int], Any] | None = None
    release: Callable[[], None] = field(default=lambda: None)  # once every run of the plan has trained


@dataclass(frozen=True)
class NodeSetup:
    """A TF node's place in its cluster, as its input pipelines need it."""

    plan: NodePlan
    ctx: Any  # TFoS's TFNodeContext: the node's name, its feed (SPARK mode)
    strategy: Any  # the MultiWorkerMirroredStrategy
    per_replica_batch: int
    index: int  # this node's worker index (the chief is 0)
    workers: int

    @property
    def node(self) -> str:
        return f"{self.ctx.job_name}:{self.ctx.task_index}"

    @property
    def is_chief(self) -> bool:
        return self.ctx.job_name == "chief"

    @property
    def node_batch(self) -> int:
        """Images this node trains on per step: a per-replica batch for each of its replicas (one per GPU
        Spark gave it, one on a CPU node): the global batch / the node count."""
        return self.per_replica_batch * max(1, self.strategy.num_replicas_in_sync // self.workers)


def val_steps(sizes_per_worker: list[int], per_replica: int) -> int:
    """Every worker runs the same number of validation steps (a collective each): enough for the
    largest share; smaller shares repeat a few images in their last batch."""
    return max(steps_for(size, per_replica) for size in sizes_per_worker)


Predictions = tuple[list[str], list[int], Any]  # names, true labels, P(face) of the test split


@dataclass
class NodeInputs:
    """What one TF node trains, validates and tests on (all built inside the TF process)."""

    train: Any  # a distributed dataset for model.fit
    val: Any
    val_steps: int
    test_predictions: Callable[[Any], Predictions]  # model -> the test split's predictions (the chief's export)
    finish: Callable[[], None] = lambda: None  # called once fit returns
    close: Callable[[], None] = lambda: None  # called when the node is done, whatever happened
    record: dict[str, Any] = field(default_factory=dict)  # facts for the node's record (nodes.json)


class InputMode(ABC):
    """Both halves of one input mode."""

    name: ClassVar[str]
    feeds_from_spark: ClassVar[bool]  # InputMode.SPARK: the driver feeds the nodes RDD partitions

    @abstractmethod
    def check_data(self, cfg: TrainConfig) -> Any:
        """Driver, before Spark starts: everything about --data-dir that can fail (ConfigError)."""

    @abstractmethod
    def plan(self, sc: Any, cfg: TrainConfig, data: Any, nodes: int, epochs_to_train: int) -> DriverPlan:
        """Driver, on Spark: what the nodes read and how many steps an epoch is."""

    @abstractmethod
    def node_inputs(self, setup: NodeSetup) -> NodeInputs:
        """TF node: its datasets."""

    @abstractmethod
    def test_predictions(self, cfg: TrainConfig, inputs: Any, model: Any) -> Predictions:
        """Driver: the test split's predictions as the chief computes them (a re-export after a crash)."""

    def warnings(self, records: dict[str, dict[str, Any]]) -> list[str]:
        """Driver, after training: what the nodes' records (nodes.json) show a user should know."""
        return []
