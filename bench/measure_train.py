"""Training measurements: (a) baseline fit, (b) TENSORFLOW mode, (j) TENSORFLOW mode from s3://, (c) SPARK
mode, (c2) SPARK mode from the raw JPEGs, (e) scaling, (f) start-up, (g) memory. Each returns one figure (a
dict with `value`)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import RunResult, job_command, median, run_streaming, steady, worker_command
from bench.suite import Settings, Suite, TrainRun

LOCAL = "local[*]"
ONE_NODE = "local-cluster[1,1,2048]"
TWO_NODES = "local-cluster[2,1,2048]"
TWO_CORES = "local-cluster[1,2,2048]"  # k: one executor with two cores
# Figures compared with another run in turns (b with the plain script, e's two-node with its one-node
# runs) make this many pairs: the ratios are within a few per cent, and single runs in sequence differ
# by more than that on a 2-core machine whose speed drifts
ALTERNATED_PAIRS = 3
PREPARE_SHARDS = 4  # train shards of the prepared sets: a multiple of 1 and 2 nodes (measurement e)


def figure(title: str, value: float, unit: str, **detail: Any) -> dict[str, Any]:
    return {"title": title, "value": float(value), "unit": unit, "detail": detail}


def run_worker(suite: Suite, name: str, script: str, *args: str) -> dict[str, Any]:
    """A bench/worker_*.py subprocess with the suite's timeout; its JSON result line."""
    command = worker_command(script, *args)
    return run_streaming(command, suite.settings.run_timeout_s, suite.log(name)).check(name).last_json()


def run_prepare(suite: Suite, data_dir: Path, out_dir: Path, name: str) -> RunResult:
    """jobs/prepare.py on local[*] at the training size, into PREPARE_SHARDS train shards."""
    command = job_command("prepare.py", LOCAL, "--data-dir", str(data_dir), "--output-dir", str(out_dir),
                          "--image-size", str(suite.settings.image_size), "--num-shards", str(PREPARE_SHARDS),
                          "--overwrite")  # the suite owns its work dir: a rerun prepares it again
    return run_streaming(command, suite.settings.run_timeout_s, suite.log(name)).check(f"jobs/prepare.py ({name})")


def steady_median(runs: list[TrainRun]) -> float:
    """Median images/s over epochs >= 2 of every run (repeats pooled)."""
    return median([rate for run in runs for rate in steady(run.rates)])


def alternated_pairs(s: Settings) -> int:
    """Pairs of runs made in turns: --quick only proves the suite (its repeats, 1)."""
    return s.repeats if s.quick else max(s.repeats, ALTERNATED_PAIRS)


def worker_steady_median(outs: list[dict[str, Any]]) -> float:
    """steady_median of one-process worker results (their per-epoch `images_per_s`)."""
    return median([rate for out in outs for rate in steady(out["images_per_s"])])


def decode_costs(suite: Suite) -> dict[str, Any]:
    """decode_image vs a naive Pillow decode + resize on the raw files (one process: per core); cached."""
    if "decode" not in suite.data:
        suite.data["decode"] = run_worker(suite, "decode", "worker_tf.py", "decode", "--data", str(suite.raw_dir),
                                          "--image-size", str(suite.settings.image_size))
    return suite.data["decode"]


def measure_a(suite: Suite) -> dict[str, Any]:
    s = suite.settings
    per_repeat = []
    for repeat in range(1, s.repeats + 1):
        out = run_worker(suite, f"a-{repeat}", "worker_tf.py", "baseline", "--prepared", str(suite.prepared_dir),
                         "--image-size", str(s.image_size), "--batch-size", str(s.batch_size),
                         "--epochs", str(s.epochs))
        per_repeat.append(out)
    value = worker_steady_median(per_repeat)
    return figure("baseline: one-process tf-keras fit on the prepared TFRecords (no Spark)", value, "images/s",
                  images_per_s=[out["images_per_s"] for out in per_repeat],
                  steps_per_epoch=per_repeat[0]["steps_per_epoch"], tf_threads=per_repeat[0]["threads"])


def _plain_run(suite: Suite, name: str) -> dict[str, Any]:
    """One run of the plain one-process tf.keras script (a0's peer) on the prepared images."""
    s = suite.settings
    return run_worker(suite, name, "worker_tf.py", "plain", "--prepared", str(suite.prepared_dir),
                      "--image-size", str(s.image_size), "--batch-size", str(s.batch_size), "--epochs", str(s.epochs))


def measure_a0(suite: Suite) -> dict[str, Any]:
    s = suite.settings
    per_repeat = [_plain_run(suite, f"a0-{repeat}") for repeat in range(1, s.repeats + 1)]
    value = worker_steady_median(per_repeat)
    return figure("the peer: a plain one-process tf.keras script, TF's defaults, images in memory", value,
                  "images/s", images_per_s=[out["images_per_s"] for out in per_repeat],
                  steps_per_epoch=per_repeat[0]["steps_per_epoch"])


def _mode_figure(suite: Suite, key: str, title: str, mode: str, data_dir, master: str = LOCAL,
                 memory: bool = False, **extra: Any) -> dict[str, Any]:
    runs = [suite.train(f"{key}-{r}", master, mode, data_dir, memory=memory)
            for r in range(1, suite.settings.repeats + 1)]
    return figure(title, steady_median(runs), "images/s", runs=[run.summary() for run in runs], **extra)


def measure_b(suite: Suite) -> dict[str, Any]:
    """b, each run right after a run of the plain script: b/a0 compares runs made in turns, since this
    machine's speed drifts by 10-20% within minutes (BENCHMARKS.md, 2026-12-07)."""
    peers, runs = [], []
    for r in range(1, alternated_pairs(suite.settings) + 1):
        peers.append(_plain_run(suite, f"a0b-{r}"))
        runs.append(suite.train(f"b-{r}", LOCAL, "tensorflow", suite.prepared_dir))
    peer = worker_steady_median(peers)
    return figure("InputMode.TENSORFLOW, 1 node on local[*], prepared TFRecords", steady_median(runs), "images/s",
                  runs=[run.summary() for run in runs], a0_alternated_images_per_s=peer,
                  a0_alternated_runs=[out["images_per_s"] for out in peers],
                  pair_ratios=[round(steady_median([run]) / worker_steady_median([out]), 3)
                               for run, out in zip(runs, peers, strict=True)])


def measure_j(suite: Suite) -> dict[str, Any]:
    """(b) with the prepared shards, model dir and export dir on s3://: a SeaweedFS S3 server on 127.0.0.1
    (tests/s3server.py), started here and stopped in the finally. The TF node downloads its shards into
    its local shard cache in the background (TFRecordDataset cannot open s3://)."""
    from tests.s3server import start_s3_server, stop_s3_server

    s = suite.settings
    local = suite.prepared_dir
    files = sorted(p for p in local.rglob("*") if p.is_file())
    shards = [p for p in files if p.name != "manifest.json"]
    root = suite.work / "s3-j"
    shutil.rmtree(root, ignore_errors=True)  # a kept --work-dir: start from an empty server
    started = time.monotonic()
    server = start_s3_server(root)
    try:
        server_start_s = time.monotonic() - started
        fs = server.filesystem()
        bucket = server.make_bucket("bench-j")
        prepared = f"{bucket}/prepared"
        t0 = time.monotonic()
        fs.put([str(p) for p in files], [f"{prepared}/{p.relative_to(local).as_posix()}" for p in files])
        upload_s = time.monotonic() - t0
        runs, cache_bytes = [], []
        for r in range(1, s.repeats + 1):
            if r > 1:  # the same model/export URLs every repeat: a model dir that holds the run is not retrained
                for folder in ("model", "export"):
                    if fs.exists(f"{bucket}/{folder}"):
                        fs.rm(f"{bucket}/{folder}", recursive=True)
            run = suite.train(f"j-{r}", LOCAL, "tensorflow", prepared, env=server.env(), output_root=bucket, fs=fs)
            runs.append(run)
            try:
                nodes = json.loads(fs.cat_file(f"{bucket}/model/nodes.json"))
                cache_bytes.append(sum(int(node.get("shard_cache_bytes") or 0) for node in nodes.values()))
            except (OSError, ValueError, AttributeError):
                cache_bytes.append(None)
    finally:
        stop_s3_server(server)
    return figure("InputMode.TENSORFLOW, 1 node on local[*], prepared TFRecords, model and export on s3:// "
                  "(S3 server on 127.0.0.1)", steady_median(runs), "images/s", runs=[run.summary() for run in runs],
                  shard_bytes=sum(p.stat().st_size for p in shards), uploaded_files=len(files),
                  uploaded_bytes=sum(p.stat().st_size for p in files), upload_s=round(upload_s, 3),
                  s3_server_start_s=round(server_start_s, 2), shard_cache_bytes=cache_bytes)


def measure_c(suite: Suite) -> dict[str, Any]:
    return _mode_figure(suite, "c", "InputMode.SPARK, 1 node on local[*], the same images at the training size",
                        "spark", suite.sized_dir, memory=_c_is_g(suite.settings))


def _c_is_g(s: Settings) -> bool:
    """--quick proves the suite: c's run (its processes' peak memory taken too) is g's N run, one run fewer.
    A full run keeps them apart: the census would share c's cores, and g trains fewer epochs."""
    return s.quick and s.memory_epochs == s.epochs and s.repeats == 1


def measure_c2(suite: Suite) -> dict[str, Any]:
    costs = decode_costs(suite)
    return _mode_figure(suite, "c2", f"InputMode.SPARK, 1 node on local[*], from the raw {suite.settings.raw_size} "
                        "px JPEGs", "spark", suite.raw_dir,
                        decode_image_ms_per_image=costs["decode_image_ms"], decoded_images=costs["images"])


def _scaling(suite: Suite, mode: str, data_dir) -> dict[str, Any]:
    """Weak scaling, as MultiWorkerMirroredStrategy is meant to be used: every node trains batches of
    batch_size, so the global batch grows with the nodes (TF's multi-worker guide). Halving each node's
    batch instead (global batch fixed) costs a 1-core node ~5% of its throughput by itself. The one-node
    and two-node runs are made in turns (as b with a0): this machine's speed drifts by 10-20% within
    minutes, more than the efficiency being measured."""
    s = suite.settings
    two_node_batch = 2 * s.batch_size
    quick_one = suite.runs.get(QUICK_ONE_NODE[mode]) if s.quick else None  # see QUICK_ONE_NODE
    one: list[TrainRun] = list(quick_one or [])
    two: list[TrainRun] = []
    for r in range(1, alternated_pairs(s) + 1):
        if not quick_one:
            one.append(suite.train(f"e_{mode}-1node-{r}", ONE_NODE, mode, data_dir, epochs=s.scaling_epochs))
        two.append(suite.train(f"e_{mode}-2nodes-{r}", TWO_NODES, mode, data_dir, epochs=s.scaling_epochs,
                               batch_size=two_node_batch))
    rate_one, rate_two = steady_median(one), steady_median(two)
    pair_ratios = [] if quick_one else [round(steady_median([b]) / (2 * steady_median([a])), 3)
                                        for a, b in zip(one, two, strict=True)]
    return figure(f"scaling, InputMode.{mode.upper()}: {TWO_NODES} vs {one[0].master}, batch {s.batch_size} per node "
                  f"(global {s.batch_size} / {two_node_batch}), {suite.data.get('sized_x_images')} images",
                  rate_two / (2 * rate_one), "efficiency", one_node_images_per_s=rate_one,
                  two_nodes_images_per_s=rate_two, pair_ratios=pair_ratios,
                  runs=[run.summary() for run in one + two])


# --quick proves the suite: its one-node sides are the local[*] runs of b and c (other data, another master),
# two runs fewer than local-cluster[1,...] runs of their own; a full run measures them as titled.
QUICK_ONE_NODE = {"tensorflow": "b", "spark": "c"}


def one_node_runs(suite: Suite, mode: str, data_dir) -> list[TrainRun]:
    """The one-node side of e_MODE (and of k, in TENSORFLOW mode): ONE_NODE runs on `data_dir`, made once
    and shared; with --quick, the local[*] runs of b or c when they ran."""
    s = suite.settings
    if s.quick and suite.runs.get(QUICK_ONE_NODE[mode]):
        return suite.runs[QUICK_ONE_NODE[mode]]
    shared = [run for run in suite.runs.get(f"e_{mode}", []) if "-1node-" in run.name]
    return shared or [suite.train(f"e_{mode}-1node-{r}", ONE_NODE, mode, data_dir, epochs=s.scaling_epochs)
                      for r in range(1, s.repeats + 1)]


def _prepared_x(suite: Suite) -> Path:
    """The memory_factor x N set prepared as shards (e_tensorflow and k train on it)."""
    if not (suite.prepared_x_dir / "manifest.json").exists():
        run_prepare(suite, suite.sized_x_dir, suite.prepared_x_dir, "e-prepare")
    return suite.prepared_x_dir


def _peers_run(suite: Suite, name: str, workers: int, independent: bool = False) -> dict[str, Any]:
    s = suite.settings
    return run_worker(suite, name, "worker_tf.py", "peers", "--prepared", str(_prepared_x(suite)),
                      "--image-size", str(s.image_size), "--batch-size", str(s.batch_size),
                      "--epochs", str(s.scaling_epochs), "--workers", str(workers),
                      "--timeout", str(s.run_timeout_s), *(["--independent"] if independent else []))


def measure_e0(suite: Suite) -> dict[str, Any]:
    """e's peer: the plain script's scaling on this machine, without Spark or the job. In turns, each pair
    of one process alone (1-thread pools, as a node on a 1-core executor), two processes under
    MultiWorkerMirroredStrategy over 127.0.0.1 (batch_size each, as e) and two independent processes
    (no communication: what the machine gives two trainings at once, the ceiling of any 2-node
    figure here). The value is the MultiWorkerMirroredStrategy efficiency; e_MODE / e0 is then what the
    job itself costs the scaling."""
    alone, synced, independent = [], [], []
    for r in range(1, alternated_pairs(suite.settings) + 1):
        alone.append(_peers_run(suite, f"e0-alone-{r}", 1))
        synced.append(_peers_run(suite, f"e0-mwms-{r}", 2))
        independent.append(_peers_run(suite, f"e0-independent-{r}", 2, independent=True))
    rate_one = worker_steady_median(alone)
    rate_synced, rate_independent = worker_steady_median(synced), worker_steady_median(independent)
    return figure("scaling of the plain script, no Spark: 2 processes under MultiWorkerMirroredStrategy "
                  f"(127.0.0.1) vs 1, 1-thread pools, batch {suite.settings.batch_size} per process",
                  rate_synced / (2 * rate_one), "efficiency", one_process_images_per_s=rate_one,
                  two_synced_images_per_s=rate_synced,
                  two_independent_images_per_s=rate_independent,
                  independent_efficiency=rate_independent / (2 * rate_one),
                  pair_ratios=[round(worker_steady_median([b]) / (2 * worker_steady_median([a])), 3)
                               for a, b in zip(alone, synced, strict=True)],
                  images_per_s_by_kind={kind: [out["images_per_s"] for out in outs] for kind, outs in
                                        (("alone", alone), ("mwms", synced), ("independent", independent))})


def measure_e_tensorflow(suite: Suite) -> dict[str, Any]:
    return _scaling(suite, "tensorflow", _prepared_x(suite))


def measure_e_spark(suite: Suite) -> dict[str, Any]:
    return _scaling(suite, "spark", suite.sized_x_dir)


def measure_f(suite: Suite) -> dict[str, Any]:
    """From the local[*] runs of (b) and (c): no extra run."""
    def times(key: str, what: str) -> list[float]:
        return [run.startup[what] for run in suite.runs.get(key, []) if run.startup.get(what) is not None]

    first_tf, first_spark = times("b", "to_first_step"), times("c", "to_first_step")
    if not first_tf:
        raise RuntimeError("no start-up time: measurement b has no successful run with an epoch line")
    detail: dict[str, Any] = {
        "tensorflow_to_tf_node_started_s": median(times("b", "to_tf_node_started") or [float("nan")]),
        "tensorflow_to_first_epoch_end_s": median(times("b", "to_first_epoch_end") or [float("nan")]),
        "tensorflow_to_fit_start_s": median(times("b", "to_fit_start") or [float("nan")]),
        "tensorflow_to_first_step_s": median(first_tf),
        "note": "first step done = the first epoch line's arrival minus epoch 1's other steps at the steady "
                "rate (tracing and the wait for the first batch count; an upper bound: the line also waits "
                "for epoch 1's validation); fit start = that line minus all of epoch 1's training time; "
                "SPARK mode includes its decode stage",
    }
    if first_spark:
        detail.update(spark_to_tf_node_started_s=median(times("c", "to_tf_node_started") or [float("nan")]),
                      spark_to_fit_start_s=median(times("c", "to_fit_start") or [float("nan")]),
                      spark_to_first_step_s=median(first_spark))
    return figure("start-up on local[*]: spark-submit to the first training step (InputMode.TENSORFLOW)",
                  median(first_tf), "s", **detail)


def measure_g(suite: Suite) -> dict[str, Any]:
    s = suite.settings
    shared = [run for run in suite.runs.get("c", []) if run.memory_mb] if _c_is_g(s) else []
    n = shared[0] if shared else suite.train("g-N", LOCAL, "spark", suite.sized_dir, epochs=s.memory_epochs,
                                             memory=True)
    x = suite.train(f"g-{s.memory_factor}N", LOCAL, "spark", suite.sized_x_dir, epochs=s.memory_epochs, memory=True)
    growth = {}
    for role in ("tf_node", "python_worker"):
        small, large = n.memory_mb.get(role), x.memory_mb.get(role)
        if not small or not large:
            raise RuntimeError(f"no peak RSS for the {role} (N: {small}, {s.memory_factor}N: {large}); "
                               f"processes seen: {len(n.result.peaks)} and {len(x.result.peaks)}")
        growth[role] = large / small - 1.0
    return figure(f"peak RSS of the TF node at N images (InputMode.SPARK, local[*]); growth at {s.memory_factor}N",
                  n.memory_mb["tf_node"], "MB", growth=growth, images=[suite.data["sized_images"],
                                                                        suite.data["sized_x_images"]],
                  peak_rss_mb={"N": n.memory_mb, f"{s.memory_factor}N": x.memory_mb},
                  runs=[n.summary(), x.summary()])


def measure_k(suite: Suite) -> dict[str, Any]:
    """Executors with several cores: one TF node on a 2-core executor against one on a 1-core executor
    (TENSORFLOW mode, the same shards and batch). The node sizes TF's thread pools from the executor's
    cores; nodes.json records the size it used."""
    s = suite.settings
    data = _prepared_x(suite)
    # The 1-core side is e_tensorflow's one-node run (the same master, shards, batch and epochs).
    one = one_node_runs(suite, "tensorflow", data)
    # TFoS needs one task at a time per executor in TENSORFLOW mode: with a second free slot, its shutdown
    # task once ran beside the node's and found no executor_id ("No executor_id file found").
    whole = {"spark.executor.cores": "2", "spark.task.cpus": "2"}
    two = [suite.train(f"k-2cores-{r}", TWO_CORES, "tensorflow", data, epochs=s.scaling_epochs, conf=whole)
           for r in range(1, s.repeats + 1)]
    threads = [record.get("tf_threads") for run in two for record in
               json.loads((Path(run.export_dir).parent / "model" / "nodes.json").read_text()).values()]
    rate_one, rate_two = steady_median(one), steady_median(two)
    return figure(f"cores: InputMode.TENSORFLOW on {TWO_CORES} vs {one[0].master} (1 node each)", rate_two / rate_one,
                  "speed-up", one_core_images_per_s=rate_one, two_cores_images_per_s=rate_two,
                  tf_threads_on_two_cores=threads, runs=[run.summary() for run in one + two])
