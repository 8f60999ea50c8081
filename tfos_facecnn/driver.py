"""The training driver: checks, the TFoS cluster, progress lines, and the completion check."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from . import sample_data_dir, storage
from .cluster_run import preload_tfos, run_cluster
from .config import ALL_VARIANTS, VARIANTS, ConfigError, TrainConfig
from .data.split import SPLITS
from .data.table import TableColumns, data_argument, open_table, table_reads, table_source
from .errors import Interrupted, Terminated, interruption_line
from .events import EventServer
from .export import HISTORY_FILE, METRICS_FILE, MODEL_FILE, is_complete, new_run_id, read_json, write_json
from .logs import RunLogs, driver_console, echo_to_terminal, run_log_name, to_terminal
from .modes import mode_for
from .modes.base import DriverPlan, NodePlan
from .reachability import check_executor_hosts, missing_workers
from .reexport import reexport
from .resume import NODES_FILE, RunState, check_foreign, prepare_model_dir, run_state
from .run_lock import RunLocks, export_dir_lock, model_dir_lock
from .session import JobSession, session_source
from .spark_env import Cluster, expected_nodes, node_threads, wait_for_executors
from .tracking import check_tracking, log_run, tracked_location


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced. With --variant all: `variants` holds each variant's result, and
    `export_dir` is the folder above theirs (with the comparison)."""

    export_dir: str
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    nodes: dict[str, dict[str, Any]]
    variants: dict[str, TrainResult] = field(default_factory=dict)

    def each(self) -> list[TrainResult]:
        """The result of every model trained: the variants', or this one."""
        return list(self.variants.values()) or [self]


def train(spark: Any, cfg: TrainConfig, data: Any = None) -> TrainResult:
    """Trains per cfg on Spark with TFoS; `variant: all` trains every variant and compares them.
    `spark`: a SparkSession to use (a notebook's), or None / a session.JobSession for the job's own,
    started once every check has passed (None with a DataFrame: the DataFrame's session). `data`: None
    (cfg's data_dir, or its data_table read once the session is open), a folder path or URI, or a Spark
    DataFrame with an image or path column, a label column and a key column (data/table.py). Raises
    ConfigError before Spark starts for bad settings (a DataFrame's columns and labels: before TF starts),
    and before anything is deleted for any setting Spark's executors decide (--overwrite deletes last)."""
    folder, frame = data_argument(data)
    table = frame is not None or (folder is None and cfg.data_table is not None)
    cfg = replace(
        cfg,
        data_dir=None if table else storage.absolute(folder or cfg.data_dir or sample_data_dir()),
        data_table=storage.absolute(cfg.data_table) if table and frame is None else None,
        model_dir=storage.absolute(cfg.model_dir),
        export_dir=storage.absolute(cfg.export_dir),
    )
    runs = [cfg] if cfg.variant != ALL_VARIANTS else [
        replace(cfg, variant=v, model_dir=storage.join(cfg.model_dir, v), export_dir=storage.join(cfg.export_dir, v))
        for v in VARIANTS
    ]
    from .storage.access import prepare_storage

    # Storage first: an unreachable endpoint, bad credentials or a missing bucket stop here, in seconds.
    reads = {"--data-dir": cfg.data_dir} if cfg.data_dir else table_reads(cfg.data_table) if cfg.data_table else {}
    env = prepare_storage(cfg.storage, reads, {"--model-dir": cfg.model_dir, "--export-dir": cfg.export_dir})
    # One run per model dir and export dir (run_lock.py): each run's, every variant's with --variant all.
    locks = RunLocks([model_dir_lock(run.model_dir) for run in runs]
                     + [export_dir_lock(run.export_dir) for run in runs])
    locks.check_free()  # a live run stops this one here, before Spark; the lock itself is taken below
    if frame is not None:
        data = table_source(frame, TableColumns.of(cfg), cv_folds=cfg.cv_folds)
    else:  # --data-table: read and checked once the session is open
        data = None if table else mode_for(cfg.input_mode).check_data(cfg)
    check_tracking(cfg)
    if cfg.variant == ALL_VARIANTS and not cfg.overwrite:
        check_foreign(cfg.model_dir, cfg.export_dir)
    # reads Spark's settings; no session starts before every check passed
    source = session_source(frame.sparkSession if spark is None and frame is not None else spark)
    nodes = expected_nodes(cfg, source.master, source.conf)
    states = _states(runs, nodes)  # reads only: a foreign or unreadable MODEL_DIR, another run's, stop here
    if all(state.finished for state in states.values()):
        with locks.acquire():  # no Spark, but leftovers may be deleted and the comparison written
            _report_takeovers(locks)
            states = _states(runs, nodes, finished=True)
            return _finish(cfg, {run.variant: _already_finished(run, states[run.variant]) for run in runs})
    if cfg.batch_size % nodes:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not split evenly over {nodes} TF nodes; "
            f"use a multiple of {nodes}"
        )
    cluster = Cluster(source.master, nodes, source.address(cfg.bind_address))
    # The run's logs (logs.py): a folder that cannot be written stops the job here, before Spark starts.
    logs = RunLogs(cfg.model_dir, run_log_name(), echo=echo_to_terminal if cfg.verbose else None)
    whereabouts = _Whereabouts(runs[0], states[runs[0].variant].epochs_done)
    job = _Job(cluster, logs, whereabouts)
    # The job's own process keeps its terminal for the job's lines; a caller's (a notebook's) is left alone.
    console = driver_console(logs, cfg.verbose) if isinstance(source, JobSession) else nullcontext()
    # A local master may start this driver again (loopback.py) as the job's session opens: the lock is
    # taken after it, by the driver that trains, before anything is written, and released last, once
    # Spark has stopped every TF node of this run.
    held = False
    try:
        with console:
            preload_tfos()
            with source.open("tfos-facecnn-train", cluster.address, env) as session:
                locks.acquire()
                held = True
                with _signals_unwind(whereabouts):
                    _report_takeovers(locks)
                    print(f"logs: {logs.target}", flush=True)
                    states = _states(runs, nodes)  # again under the lock: another run may have ended meanwhile
                    if data is None:
                        data = open_table(session, cfg.data_table, cfg.data_format, TableColumns.of(cfg), cfg.cv_folds)
                    return _finish(cfg, _train_all(session.sparkContext, job, runs, states, data))
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM, once Spark and every TF node have stopped
        stopped = (type(e) if isinstance(e, Interrupted) else Interrupted)(_interrupted(runs, nodes))
        stopped.reported = getattr(e, "reported", False)
        if stopped.reported and str(stopped) != str(e):
            # The line printed at once says what the driver had heard; nodes that Spark had not stopped yet may
            # have saved another epoch since. What storage holds now is what the same command resumes from.
            to_terminal(f"note: the TF nodes saved more before they stopped: {stopped}")
        raise stopped from None
    finally:
        if held:
            locks.release()
        logs.close()


@dataclass
class _Whereabouts:
    """Where training stands, for the line an interrupt prints at once: from what the driver has heard (no
    storage is read in a signal handler). The chief records an epoch as done before it reports it."""

    run: TrainConfig
    done_before: int  # epochs done when this run's training started
    events: EventServer | None = None

    def __call__(self) -> str:
        heard = len(self.events.state.epochs) if self.events is not None else 0
        epoch, total = self.done_before + heard + 1, self.run.epochs
        command = "run the same command without --overwrite" if self.run.overwrite and epoch > 1 \
            else "run the same command"
        if epoch > total:
            return f"interrupted after training ({total} epochs); {command} to export the trained weights"
        return f"interrupted during epoch {epoch}/{total}; {command} to resume from epoch {epoch} of {total}"


@dataclass(frozen=True)
class _Job:
    """What every run of one job shares: where its nodes go, its logs, and where training stands."""

    cluster: Cluster
    logs: RunLogs
    whereabouts: _Whereabouts


def _interrupted(runs: list[TrainConfig], nodes: int) -> str:
    """Where an interrupted run stopped, and where the same command starts again."""
    from .blame import resume_hint

    for run in runs:
        try:
            state = run_state(replace(run, overwrite=False), nodes)
        except ConfigError:
            continue
        if state.reexport:
            return f"interrupted after training ({state.epochs_done} epochs); {resume_hint(run, nodes)}"
        if not state.finished:
            return f"interrupted during epoch {state.epochs_done + 1}/{run.epochs}; {resume_hint(run, nodes)}"
    return f"interrupted; {resume_hint(runs[0], nodes)}"


@contextmanager
def _signals_unwind(where: Callable[[], str] = lambda: "") -> Iterator[None]:
    """Ctrl-C and SIGTERM (yarn application -kill, a pod's deletion, kill PID) end the driver the same way:
    the line saying where the run stopped (`where()`) goes to the terminal at once, while spark-submit's
    JVM still relays it, then the exception unwinds through the finally blocks, so Spark stops and the
    locks are released. On the main thread (the one Python delivers signals to), for SIGINT (pyspark's own
    handler, which cancels the jobs and raises KeyboardInterrupt, is set aside: Spark stops while the
    exception unwinds) and for SIGTERM where it still kills outright; a second signal during the
    clean-up acts as before the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = [signal.SIGINT] + ([signal.SIGTERM] if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else [])
    before = {signum: signal.getsignal(signum) for signum in ours}

    def unwind(signum: int, _frame: object) -> None:
        for restored in ours:
            signal.signal(restored, before[restored])
        error = (Terminated if signum == signal.SIGTERM else Interrupted)(where())
        to_terminal(interruption_line(error))
        error.reported = True
        raise error

    for signum in ours:
        signal.signal(signum, unwind)
    try:
        yield
    finally:
        for signum in ours:
            signal.signal(signum, before[signum])


def _states(runs: list[TrainConfig], nodes: int, finished: bool = False) -> dict[str, RunState]:
    states = {run.variant: run_state(run, nodes) for run in runs}
    if finished and not all(state.finished for state in states.values()):
        raise RuntimeError(f"another run changed {', '.join(run.model_dir for run in runs)} while this one "
                           "started; run the command again")
    return states


def _report_takeovers(locks: RunLocks) -> None:
    for path, holder in locks.taken_over():
        print(f"took over {path}: the run that held it ({holder.describe()}) is gone", flush=True)


def _train_all(sc, job: _Job, runs: list[TrainConfig], states: dict[str, RunState], data: Any
               ) -> dict[str, TrainResult]:
    cluster = job.cluster
    timeout_s = runs[0].executor_timeout
    have = wait_for_executors(sc, cluster.nodes, timeout_s)
    if have < cluster.nodes:
        raise RuntimeError(
            f"Spark gave {have} executors but {cluster.nodes} TF nodes were asked for (one per executor) within "
            f"executor_timeout ({timeout_s} s); lower --cluster-size or give Spark more executors "
            "(--num-executors, spark.cores.max)"
            + missing_workers(sc, cluster.master.url)
        )
    check_executor_hosts(sc, cluster.address, cluster.master.url)
    # One plan serves every run (the variants of --variant all share the data and its feed); SPARK mode
    # feeds as many epochs as the run with the fewest left needs.
    to_train = [run.epochs - state.epochs_done for run, state in zip(runs, states.values(), strict=True)
                if not state.finished and not state.reexport]
    cfg = runs[0]
    plan = mode_for(cfg.input_mode).plan(sc, cfg, data, cluster.nodes, min(to_train, default=1))
    try:
        results = {}
        for run in runs:
            if len(runs) > 1:
                print(f"=== variant {run.variant} ===", flush=True)
            results[run.variant] = _train(sc, run, states[run.variant], plan, job)
        return results
    finally:
        plan.release()


def _finish(cfg: TrainConfig, results: dict[str, TrainResult]) -> TrainResult:
    if cfg.variant != ALL_VARIANTS:
        return results[cfg.variant]
    from .compare import write_comparison

    print(f"comparison: {write_comparison(cfg.export_dir, results)}", flush=True)
    return TrainResult(cfg.export_dir, [], {}, {}, variants=results)


def _train(sc, cfg: TrainConfig, state: RunState, plan: DriverPlan, job: _Job) -> TrainResult:
    cluster, logs = job.cluster, job.logs
    if state.finished:
        return _already_finished(cfg, state)
    for line in prepare_model_dir(cfg, state):  # every check has passed: only now is anything deleted
        print(line, flush=True)
    if state.message:
        print(state.message, flush=True)
    _log_counts(plan.summary)
    if state.reexport:
        reexport(cfg, state.history, state.stopped_early, plan.inputs, plan.summary, cluster.nodes)
        return _exported(cfg, {}, plan, cluster.nodes)
    events = EventServer(cluster.address or sc.getConf().get("spark.driver.host"), on_log=logs.write)
    logs.redact.add(events.token)
    job.whereabouts.run, job.whereabouts.done_before, job.whereabouts.events = cfg, state.epochs_done, events
    node_plan = NodePlan(
        config=cfg,
        run_id=new_run_id(),
        steps_per_epoch=plan.steps_per_epoch,
        threads=node_threads(cluster.master, dict(sc.getConf().getAll())),
        history=tuple(state.history),
        data_summary=plan.summary,
        events=events.endpoint,
        inputs=plan.inputs,
        echo_output=cluster.master.kind != "local",  # local[*]'s executor stderr is this terminal
        saving=state.saving,
    )
    print(f"starting {cluster.nodes} TF node(s) on {cluster.master.url} in {cfg.input_mode.upper()} mode: "
          f"{plan.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, global batch {cfg.batch_size}, "
          f"image size {cfg.image_size}", flush=True)
    try:
        # SPARK mode feeds exactly the epochs still to run.
        feed = plan.feed_epochs(state.epochs_done, cfg.epochs - state.epochs_done) if plan.feed_epochs else None
        run_cluster(sc, node_plan, cluster, feed, events, logs)
    finally:
        events.stop()
    if not is_complete(cfg.export_dir):
        raise RuntimeError(
            f"training ended but {cfg.export_dir!r} holds no complete export ({MODEL_FILE} + _SUCCESS); "
            "see the TF node logs in the executor stderr"
        )
    write_json(storage.join(cfg.model_dir, NODES_FILE), dict(events.state.done))
    for line in mode_for(cfg.input_mode).warnings(events.state.done):
        print(f"warning: {line}", flush=True)
    return _exported(cfg, dict(events.state.done), plan, cluster.nodes)


def _exported(cfg: TrainConfig, records: dict[str, Any], plan: DriverPlan, nodes: int) -> TrainResult:
    result = _result(cfg, records)  # reads metrics.json once, for the line below too
    chosen = result.metrics.get("chosen_epoch") or {}
    which = f" (weights of epoch {chosen['epoch']}: {chosen['rule']})" if chosen else ""
    print(f"exported model to {storage.join(cfg.export_dir, MODEL_FILE)}{which}", flush=True)
    if cfg.report:
        # The chief writes it (node._report); a re-export on the driver has no chief, so it is written here.
        report = next((r["report"] for r in records.values() if r.get("report")), None)
        if report is None:
            from .evaluation import training_report

            report = training_report(cfg.export_dir, cfg, plan.summary)
        print(f"report: {report}", flush=True)
    run_id = log_run(cfg, result, nodes)
    if run_id is not None:
        print(f"tracked: {tracked_location(cfg, run_id)}", flush=True)
    return result


def _already_finished(cfg: TrainConfig, state: RunState) -> TrainResult:
    for line in prepare_model_dir(cfg, state):  # the leftovers of interrupted runs only
        print(line, flush=True)
    print(state.message, flush=True)
    return _result(cfg, {})


def _result(cfg: TrainConfig, nodes_record: dict[str, Any]) -> TrainResult:
    return TrainResult(
        cfg.export_dir,
        read_json(storage.join(cfg.export_dir, HISTORY_FILE)),
        read_json(storage.join(cfg.export_dir, METRICS_FILE)),
        nodes_record,
    )


def _log_counts(summary: dict[str, Any]) -> None:
    for split in SPLITS:
        counts = summary["counts"][split]
        print(f"data {split}: {counts['faces']} faces, {counts['comics']} comics", flush=True)
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable file(s), e.g. "
              f"{summary['skipped'][0]['path']}: {summary['skipped'][0]['reason']}", flush=True)
