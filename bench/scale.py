"""The real data set's size: N generated 1024 px JPEGs (face2comics: 20,000), prepared, then one epoch in
each input mode on local[*], against the same at a tenth of the size.

    python bench/scale.py [--images 20000] [--small 2000] [--work-dir DIR] [--out bench/scale.json]

Per size it reports: the prepare job's wall time and the disk its shards take; per input mode the epoch's
training time per image (after the epoch's first step, which traces the graph) and the job's wall time;
the peak RSS (VmHWM) of the driver's Python, the JVM (driver and executor in one on local[*]), the
executor's Python workers and the TF node. The ratios compare the large set with the small one: time
per image within 10% (<= 1.10) and every peak within 10% growth. Not in CI: ~25 min and ~4 GB of disk
at 20,000 images on 2 cores. Timings are single runs; the machine's noise is about 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import job_command, run_streaming  # noqa: E402
from bench.dataset import generate  # noqa: E402
from bench.measure_train import LOCAL  # noqa: E402
from bench.suite import MB, Settings, Suite  # noqa: E402

TARGET_TIME_GROWTH = 0.10  # the bar: time per image at N within 10% of that at N/10
TARGET_MEMORY_GROWTH = 0.10  # and every process's peak RSS within 10% growth
# name -> (input mode, settings over the shipped ones): each input mode as shipped, and with the setting
# that keeps its memory flat when the shipped one trades memory for speed (bounded by design)
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "tensorflow": ("tensorflow", {}),
    "tensorflow, train_cache_mb 0": ("tensorflow", {"train_cache_mb": 0}),
    "spark": ("spark", {}),
    "spark, feed_cache disk_only": ("spark", {"feed_cache": "disk_only"}),
}


def _disk_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def _is_jvm(cmd: str) -> bool:
    """spark-submit (a bash script: 'bash .../spark-submit ...') execs spark-class, which execs the JVM in
    the same process, and the census keeps a process's first-seen command line: the launcher's."""
    launcher = {os.path.basename(token) for token in cmd.split(" ")[:2]}
    return bool(launcher & {"java", "spark-submit", "spark-class"}) or "org.apache.spark" in cmd


def _jvm_peak_mb(peaks: dict[int, tuple[int, str]]) -> float | None:
    jvm = [rss / MB for rss, cmd in peaks.values() if _is_jvm(cmd)]
    return max(jvm) if jvm else None


def measure_size(suite: Suite, images: int, processes: int) -> dict[str, Any]:
    s, work = suite.settings, suite.work / f"n{images}"
    raw, prepared = work / "raw", work / "prepared"
    started = time.time()
    generated = generate(raw, images, s.raw_size, processes=processes)
    out: dict[str, Any] = {"images": generated["images"], "raw_bytes": generated["bytes"],
                           "generate_s": round(time.time() - started, 1)}
    command = job_command("prepare.py", LOCAL, "--data-dir", str(raw), "--output-dir", str(prepared),
                          "--image-size", str(s.image_size), "--overwrite")
    result = run_streaming(command, s.run_timeout_s, suite.log(f"prepare-{images}"), memory=True)
    result.check(f"jobs/prepare.py on {images} images")
    out["prepare"] = {"wall_s": round(result.wall_s, 1), "images_per_s": round(generated["images"] / result.wall_s, 1),
                      "shards_bytes": _disk_bytes(prepared), "peak_jvm_mb": _jvm_peak_mb(result.peaks)}
    for name, (mode, settings) in RUNS.items():
        data = prepared if mode == "tensorflow" else raw  # SPARK mode: the executors decode the 1024 px JPEGs
        config = work / f"{name.replace(' ', '_').replace(',', '')}.yaml"  # a --config file: YAML is JSON's superset
        config.write_text(json.dumps(settings))
        run = suite.train(f"{config.stem}-{images}", LOCAL, mode, data, epochs=1, memory=True,
                          job_args=("--config", str(config)))
        rows = json.loads((Path(run.export_dir) / "history.json").read_text())
        steady = rows[0].get("steady_images_per_s") or rows[0]["images_per_s"]
        out[name] = {"wall_s": round(run.result.wall_s, 1), "images_per_s": round(rows[0]["images_per_s"], 1),
                     "steady_images_per_s": round(steady, 1), "ms_per_image": round(1000.0 / steady, 2),
                     "steps_per_epoch": run.steps_per_epoch,
                     "peak_rss_mb": {**{k: v for k, v in run.memory_mb.items() if k != "tf_node_pid"},
                                     "jvm": _jvm_peak_mb(run.result.peaks)}}
        shutil.rmtree(Path(run.export_dir).parent, ignore_errors=True)
        print(f"[scale] {images} images, {name}: {json.dumps(out[name])}", flush=True)  # kept if a later run fails
    return out


def compare(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """Large over small, minus 1: time per image and each peak RSS."""
    ratios: dict[str, Any] = {}
    for name in RUNS:
        time_growth = large[name]["ms_per_image"] / small[name]["ms_per_image"] - 1.0
        memory = {role: (large[name]["peak_rss_mb"][role] / small[name]["peak_rss_mb"][role] - 1.0)
                  for role in small[name]["peak_rss_mb"]
                  if small[name]["peak_rss_mb"][role] and large[name]["peak_rss_mb"].get(role)}
        ratios[name] = {"time_per_image_growth": round(time_growth, 3),
                        "time_passed": time_growth <= TARGET_TIME_GROWTH,
                        "peak_rss_growth": {role: round(g, 3) for role, g in memory.items()},
                        "memory_passed": all(g <= TARGET_MEMORY_GROWTH for g in memory.values())}
    return ratios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20000, help="the large set (default 20000, face2comics' size)")
    p.add_argument("--small", type=int, default=2000, help="the set it is compared with (default 2000)")
    p.add_argument("--image-size", type=int, default=350, dest="image_size", help="training size (default 350)")
    p.add_argument("--work-dir", default=None, help="data and logs (default: a temp dir, removed)")
    p.add_argument("--out", default=str(Path(__file__).with_name("scale.json")), help="results file")
    args = p.parse_args(argv)
    if args.small < 6 or args.images <= args.small:
        p.error("--small must be at least 6 and --images larger than --small")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tempfile

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="facecnn-scale-")).resolve()
    settings = Settings(image_size=args.image_size, run_timeout_s=3600)
    suite = Suite(settings, work)
    processes = os.cpu_count() or 1
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "cores": processes, "sizes": {}}
    try:
        for images in (args.small, args.images):
            print(f"[scale] {images} images ...", flush=True)
            results["sizes"][str(images)] = measure_size(suite, images, processes)
            print(f"[scale] {images}: {json.dumps(results['sizes'][str(images)])}", flush=True)
            shutil.rmtree(work / f"n{images}", ignore_errors=True)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    results["growth"] = compare(results["sizes"][str(args.small)], results["sizes"][str(args.images)])
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"[scale] growth: {json.dumps(results['growth'])}\n[scale] results: {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
