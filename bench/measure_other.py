"""The data sets (setup), and the measurements around training: (d) the prepare job, (h) batch inference,
(i) the ceiling. Each measurement returns one figure (a dict with `value`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.common import job_command, median, run_streaming
from bench.dataset import generate, replicate
from bench.measure_train import LOCAL, decode_costs, figure, run_prepare, run_worker
from bench.suite import Suite


def setup(suite: Suite) -> None:
    """N generated full-size JPEGs; prepared once with jobs/prepare.py at the training size; the prepared
    images written back out as a face2comics folder (SPARK mode's input, trivial to decode), and that
    folder replicated memory_factor times (measurement g)."""
    s = suite.settings
    suite.data["generated"] = generate(suite.raw_dir, s.images, s.raw_size)
    result = run_prepare(suite, suite.raw_dir, suite.prepared_dir, "setup-prepare")
    suite.data["prepare_job_wall_s"] = round(result.wall_s, 2)
    manifest = json.loads((suite.prepared_dir / "manifest.json").read_text())
    suite.data["prepared_counts"] = {split: c["total"] for split, c in manifest["counts"].items()}
    out = run_worker(suite, "setup-export-images", "worker_tf.py", "export-images", "--prepared",
                     str(suite.prepared_dir), "--out", str(suite.sized_dir))
    suite.data["sized_images"] = out["images"]
    suite.data["sized_x_images"] = replicate(suite.sized_dir, suite.sized_x_dir, s.memory_factor)


def measure_d(suite: Suite) -> dict[str, Any]:
    """The prepare job at N and at memory_factor x N images (the raw set replicated): the figure is the
    steady state, the extra images over the extra seconds per core, as for training (a job's fixed start
    costs, its Spark jobs and the last task's tail, are reported beside it, not spread over the images)."""
    s = suite.settings
    if not suite.raw_x_dir.exists():
        suite.data["raw_x_images"] = replicate(suite.raw_dir, suite.raw_x_dir, s.memory_factor)
    sets = {"N": suite.raw_dir, f"{s.memory_factor}N": suite.raw_x_dir}
    pairs = [arg for label, data in sets.items()
             for arg in ("--data", str(data), "--out", str(suite.work / f"d-prepared-{label}"))]
    timed = run_worker(suite, "d-prepare", "worker_spark.py", *pairs, "--image-size", str(s.image_size))["runs"]
    runs = dict(zip(sets, timed, strict=True))
    small, large = runs["N"], runs[f"{s.memory_factor}N"]
    t_small, t_large = median(small["seconds"]), median(large["seconds"])
    extra_images, extra_seconds = large["images"] - small["images"], t_large - t_small
    steady_state = extra_seconds > 0
    if not steady_state and not s.quick:
        raise RuntimeError(f"prepare took no longer at {large['images']} images ({t_large:.2f} s) than at "
                           f"{small['images']} ({t_small:.2f} s): too few images to measure; raise --images")
    # --quick proves the suite: at 16 vs 64 small images the difference is within the timer's noise, so
    # the whole larger run's rate stands in (its detail says so).
    value = extra_images / extra_seconds / small["cores"] if steady_state else large["images_per_s_per_core"]
    per_image_s = extra_seconds / extra_images if steady_state else 1 / (value * small["cores"])
    costs = decode_costs(suite)
    return figure(f"prepare job (prepare_on_spark in a warm local[*] session), {s.raw_size} px -> {s.image_size} "
                  f"px, {'steady state' if steady_state else 'whole run (quick: no steady state measurable)'}",
                  value, "images/s/core",
                  naive_pillow_images_per_s_per_core=costs["naive_images_per_s"],
                  naive_ms_per_image=costs["naive_ms"], decode_image_ms_per_image=costs["decode_image_ms"],
                  whole_job_images_per_s_per_core={"N": small["images_per_s_per_core"],
                                                   f"{s.memory_factor}N": large["images_per_s_per_core"]},
                  fixed_overhead_s=t_small - small["images"] * per_image_s,
                  images={"N": small["images"], f"{s.memory_factor}N": large["images"]}, cores=small["cores"],
                  timed_runs_s={label: run["seconds"] for label, run in runs.items()},
                  spark_submit_prepare_wall_s=suite.data.get("prepare_job_wall_s"))


def _exported_model(suite: Suite) -> Path:
    """The model exported by b (else c, c2); trains one (TENSORFLOW mode, 2 epochs) when they all failed."""
    for key in ("b", "c", "c2"):
        for run in suite.runs.get(key, []):
            if (run.export_dir / "model.keras").exists():
                return run.export_dir
    return suite.train("h_model", LOCAL, "tensorflow", suite.prepared_dir, epochs=2).export_dir


def read_event_log(event_dir: Path) -> list[dict[str, Any]]:
    events = []
    for path in sorted(event_dir.rglob("*")):  # Spark 4 writes a folder per application (eventlog_v2_*/events_*)
        if path.is_file() and not path.name.startswith((".", "appstatus")):
            events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def task_timeline(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The first Spark job of the predict run (it predicts every path and writes the output): its span,
    and per task (launch s, duration s, rows written), in launch order; the executor's task slots."""
    jobs = sorted((e for e in events if e.get("Event") == "SparkListenerJobStart"), key=lambda e: e["Job ID"])
    if not jobs:
        raise RuntimeError("no Spark job in the predict job's event log")
    stages = set(jobs[0]["Stage IDs"])
    ends = {e["Job ID"]: e["Completion Time"] for e in events if e.get("Event") == "SparkListenerJobEnd"}
    tasks = sorted(
        ((e["Task Info"]["Launch Time"], e["Task Info"]["Finish Time"] - e["Task Info"]["Launch Time"],
          e["Task Metrics"]["Output Metrics"]["Records Written"])
         for e in events if e.get("Event") == "SparkListenerTaskEnd" and e["Stage ID"] in stages),
    )
    slots = sum(e["Executor Info"]["Total Cores"] for e in events if e.get("Event") == "SparkListenerExecutorAdded")
    return {"span_s": (ends[jobs[0]["Job ID"]] - jobs[0]["Submission Time"]) / 1000.0, "slots": slots,
            "tasks": [(launch / 1000.0, ms / 1000.0, rows) for launch, ms, rows in tasks]}


def measure_h(suite: Suite) -> dict[str, Any]:
    """jobs/predict.py on the N raw images listed enough times for >= 3 tasks per task slot. The first task
    of each slot pays the Python worker's start, TF's import and the model's load; the steady-state rate is
    the later tasks' rows over their busy time, times the slots that run them side by side."""
    s = suite.settings
    model = _exported_model(suite)
    paths = sorted(str(p) for p in suite.raw_dir.rglob("*.jpg"))
    copies = max(1, math.ceil(s.predict_paths / len(paths)))
    root = suite.work / "h"
    root.mkdir(parents=True, exist_ok=True)
    listing, once = root / f"paths-x{copies}.txt", root / "paths.txt"
    listing.write_text("\n".join(paths * copies) + "\n")
    once.write_text("\n".join(paths) + "\n")
    events = root / "events"
    events.mkdir(exist_ok=True)
    conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(), "spark.eventLog.compress": "false"}
    command = job_command("predict.py", LOCAL, "--model", str(model), "--input", str(listing), "--output-dir",
                          str(root / "out"), "--overwrite", conf=conf)
    result = run_streaming(command, s.run_timeout_s, suite.log("h-predict")).check("jobs/predict.py")
    total = len(paths) * copies
    if f"predicted {total} of {total} images" not in result.stdout:
        raise RuntimeError(f"jobs/predict.py did not predict all {total} images:\n{result.tail()}")
    timeline = task_timeline(read_event_log(events))
    slots, tasks = max(1, timeline["slots"]), timeline["tasks"]
    warm = tasks[slots:]
    if not warm or sum(rows for _, _, rows in warm) == 0:
        raise RuntimeError(f"the predict job ran {len(tasks)} task(s) on {slots} slot(s): none after the first "
                           "per slot; raise predict_paths")
    steady_rate = slots * sum(rows for _, _, rows in warm) / sum(seconds for _, seconds, _ in warm)
    single = run_worker(suite, "h-single", "worker_tf.py", "predict", "--model", str(model), "--input", str(once))
    if single["errors"]:
        raise RuntimeError(f"single-process predict had {single['errors']} error rows")
    return figure("batch inference, jobs/predict.py on local[*], steady state (tasks after each slot's first)",
                  steady_rate, "images/s", single_process_images_per_s=single["images_per_s"],
                  paths=total, distinct_images=len(paths), slots=slots,
                  tasks=[{"launch_s": round(t - tasks[0][0], 3), "seconds": d, "rows": r} for t, d, r in tasks],
                  job_span_images_per_s=total / timeline["span_s"],
                  end_to_end_images_per_s=total / result.wall_s, spark_submit_wall_s=round(result.wall_s, 2),
                  model=str(model))


def measure_i(suite: Suite) -> dict[str, Any]:
    s = suite.settings
    measured = {key: suite.figures[key]["value"] for key in ("a", "b", "c", "c2")
                if "value" in suite.figures.get(key, {})}
    if not measured:
        raise RuntimeError("no training throughput measured (a, b, c and c2 all failed)")
    best_key = max(measured, key=measured.get)
    out = run_worker(suite, "i-ceiling", "worker_tf.py", "ceiling", "--image-size", str(s.image_size),
                     "--matmul-size", str(s.matmul_size))
    achieved = out["flops_train"] * measured[best_key]
    return figure("ceiling: training FLOPs/image x best images/s, as a fraction of the fp32 matmul peak",
                  achieved / (out["peak_gflops"] * 1e9), "fraction", best_figure=best_key,
                  best_images_per_s=measured[best_key], achieved_gflops=achieved / 1e9,
                  flops_train_per_image=out["flops_train"], flops_forward_per_image=out["flops_forward"],
                  macs_per_layer=out["macs_per_layer"], parameters=out["parameters"],
                  numpy_matmul_gflops=out["numpy_gflops"], tf_matmul_gflops=out["tf_gflops"],
                  peak_gflops=out["peak_gflops"], matmul_size=out["matmul_size"],
                  ceiling_images_per_s=out["peak_gflops"] * 1e9 / out["flops_train"])
